"""Providers by name; config picks one, and each app keeps one instance per provider."""
from flask import current_app

from backend.errors import BadRequest
from backend.llm.demo_provider import DemoProvider
from backend.llm.openai_provider import OpenAIProvider

PROVIDERS = {cls.name: cls for cls in (OpenAIProvider, DemoProvider)}


def configured_providers(config):
    return [config["LLM_PROVIDER"]]


def get_provider(name=None, app=None):
    app = app or current_app
    name = name or app.config["LLM_PROVIDER"]
    if name not in configured_providers(app.config):
        raise BadRequest(f"Provider {name!r} is not configured on this server")
    instances = app.extensions.setdefault("llm_providers", {})
    if name not in instances:
        instances[name] = PROVIDERS[name].from_config(app.config)
    return instances[name]

