"""Providers by name, as backend/llm/specs.py declares them; config picks the default and
which ones a request may choose.

Each provider's module (and so its SDK, the heaviest imports of the service) is imported
the first time that provider is used, so a process loads only the SDKs it needs.
"""
from importlib import import_module

from flask import current_app

from backend.clock import now
from backend.errors import BadRequest, UnprocessableEntity
from backend.llm.specs import PROVIDERS, embedding_choice
from backend.pricing.services import price_sheet


def provider_class(name):
    module, _, cls = PROVIDERS[name].provider_class.partition(":")
    return getattr(import_module(module), cls)


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
    return _instance(name, app)


def _instance(name, app):
    instances = app.extensions.setdefault("llm_providers", {})
    if name not in instances:
        instances[name] = provider_class(name).from_config(app.config)
    return instances[name]


def get_embedder(app=None):
    """(provider, model) of this server's embeddings (EMBEDDING_PROVIDER, EMBEDDING_MODEL)."""
    app = app or current_app
    name, model = embedding_choice(app.config)
    return _instance(name, app), model


def _allowed(provider, model, config):
    allowed = config["LLM_ALLOWED_MODELS"].get(provider.name)
    if model == provider.default_model or allowed == "*":
        return True
    if allowed is not None:
        return model in allowed
    if (provider.name, model) in config["PRICE_OVERRIDES"]:
        return True
    # By default a priced provider allows what the price table prices; a free one only its own model.
    return provider.price_provider is not None and price_sheet(provider, [model], now(), {}).priced


def resolve_model(provider, requested, app=None):
    """The model a request uses: the one it names, when this server allows it for the provider
    (<PROVIDER>_ALLOWED_MODELS), else a 422; the provider's default when it names none."""
    config = (app or current_app).config
    model = requested or provider.default_model
    if not _allowed(provider, model, config):
        raise UnprocessableEntity(
            f"Model {model!r} is not available for {provider.name} on this server (allowed: "
            f"{_allowed_description(provider)})",
            errors={"model": [f"Not allowed for {provider.name}."]},
        )
    return model


def _allowed_description(provider):
    if provider.is_demo:
        return f"only its own model {provider.default_model!r}"
    setting = provider.spec.allowed_models_setting
    priced = "models the price table or PRICING_FILE prices" if provider.price_provider else "models PRICING_FILE prices"
    return f"its default {provider.default_model!r}, {priced}, or those {setting} lists"
