"""Organizations and teams: every user belongs to one organization (at most one team in it)."""
