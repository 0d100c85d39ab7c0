"""Providers by name; config picks the default and which ones a request may choose."""
from flask import current_app

from backend.errors import BadRequest
from backend.llm.anthropic_provider import AnthropicProvider
from backend.llm.demo_provider import DemoProvider
from backend.llm.gemini_provider import GeminiProvider
from backend.llm.ollama_provider import OllamaProvider
from backend.llm.openai_provider import OpenAIProvider

PROVIDERS = {cls.name: cls for cls in (OpenAIProvider, GeminiProvider, AnthropicProvider, OllamaProvider, DemoProvider)}


def get_provider(name=None, app=None):
    """The app's instance of a configured provider; an unconfigured name is a 400."""
    app = app or current_app
    name = name or app.config["LLM_PROVIDER"]
    if name not in app.config["LLM_PROVIDERS"]:
        enabled = ", ".join(app.config["LLM_PROVIDERS"])
        raise BadRequest(
            f"Provider {name!r} is not configured on this server (available: {enabled})",
            errors={"provider": [f"Must be one of: {enabled}."]},
        )
    instances = app.extensions.setdefault("llm_providers", {})
    if name not in instances:
        instances[name] = PROVIDERS[name].from_config(app.config)
    return instances[name]
