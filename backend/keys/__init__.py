"""API keys: long-lived credentials for services and CI, attributed to their owner, team and organization."""
