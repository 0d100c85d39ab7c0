"""Configuration: the only module that reads the environment.

`load_config(environ)` turns environment variables into a validated dict for
`app.config`. A bad value raises ConfigError with one line saying which
setting is wrong, so start-up fails clearly instead of with a traceback.
"""
import os
import secrets
import tempfile
from datetime import timedelta
from urllib.parse import urlparse

LLM_PROVIDERS = ("openai", "demo")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MIN_JWT_SECRET_LENGTH = 32


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it."""


def _text(env, name, default=None):
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _boolean(env, name, default):
    value = _text(env, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _integer(env, name, default, minimum, maximum):
    value = _text(env, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {number}")
    return number


def _mongo_uri(env):
    uri = _text(env, "MONGO_URI")
    if uri is not None and not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("MONGO_URI must start with mongodb:// or mongodb+srv://")
    return uri


def _http_url(env, name):
    url = _text(env, name)
    if url is None:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {url!r}")
    return url


def load_config(environ=None):
    """Read and validate every setting; returns (config dict, start-up warnings)."""
    env = os.environ if environ is None else environ
    warnings = []

    mongo_uri = _mongo_uri(env)
    if mongo_uri is None:
        warnings.append(
            "MONGO_URI is not set: using the embedded in-memory store. "
            "NOTHING IS PERSISTED; every record is lost when the process stops."
        )

    jwt_secret = _text(env, "JWT_SECRET_KEY")
    if jwt_secret is None:
        if mongo_uri is not None:
            raise ConfigError("JWT_SECRET_KEY is required when MONGO_URI is set")
        jwt_secret = secrets.token_urlsafe(48)
        warnings.append(
            "JWT_SECRET_KEY is not set: using a random key for this process; "
            "tokens stop working when it restarts."
        )
    elif len(jwt_secret) < MIN_JWT_SECRET_LENGTH:
        raise ConfigError(f"JWT_SECRET_KEY must be at least {MIN_JWT_SECRET_LENGTH} characters")

    admin_email = _text(env, "ADMIN_EMAIL")
    admin_password = _text(env, "ADMIN_PASSWORD")
    if (admin_email is None) != (admin_password is None):
        raise ConfigError("ADMIN_EMAIL and ADMIN_PASSWORD must be set together")
    if admin_password is not None and len(admin_password) < 8:
        raise ConfigError("ADMIN_PASSWORD must be at least 8 characters")

    openai_api_key = _text(env, "OPENAI_API_KEY")
    provider = _text(env, "LLM_PROVIDER")
    if provider is None:
        provider = "openai" if openai_api_key else "demo"
        if provider == "demo":
            warnings.append(
                "LLM_PROVIDER is not set and OPENAI_API_KEY is missing: using the offline "
                "demo provider; its test cases are canned and its records cost nothing."
            )
    provider = provider.lower()
    if provider not in LLM_PROVIDERS:
        raise ConfigError(f"LLM_PROVIDER must be one of {', '.join(LLM_PROVIDERS)}, got {provider!r}")
    if provider == "openai" and not openai_api_key:
        raise ConfigError("OPENAI_API_KEY is required when LLM_PROVIDER is openai")

    log_level = (_text(env, "LOG_LEVEL", "INFO")).upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")

    cors_origins = [o.strip() for o in _text(env, "CORS_ORIGINS", "").split(",") if o.strip()]

    # Where tiktoken itself looks for its cache (same precedence as tiktoken.load).
    tiktoken_cache_dir = (
        _text(env, "TIKTOKEN_CACHE_DIR")
        or _text(env, "DATA_GYM_CACHE_DIR")
        or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    )

    config = {
        "HOST": _text(env, "HOST", "127.0.0.1"),
        "PORT": _integer(env, "PORT", 5000, 1, 65535),
        "MONGO_URI": mongo_uri,
        "MONGO_DB_NAME": _text(env, "MONGO_DB_NAME", "tokenledger"),
        "MONGO_TIMEOUT_MS": _integer(env, "MONGO_TIMEOUT_MS", 5000, 100, 120_000),
        "AUTO_CREATE_INDEXES": _boolean(env, "AUTO_CREATE_INDEXES", True),
        "JWT_SECRET_KEY": jwt_secret,
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(
            minutes=_integer(env, "JWT_ACCESS_TOKEN_MINUTES", 60, 1, 7 * 24 * 60)
        ),
        "JWT_REFRESH_TOKEN_EXPIRES": timedelta(
            days=_integer(env, "JWT_REFRESH_TOKEN_DAYS", 30, 1, 365)
        ),
        "ADMIN_EMAIL": admin_email.lower() if admin_email else None,
        "ADMIN_PASSWORD": admin_password,
        "ALLOW_REGISTRATION": _boolean(env, "ALLOW_REGISTRATION", True),
        "CORS_ORIGINS": cors_origins,
        "LOG_LEVEL": log_level,
        "LLM_PROVIDER": provider,
        "LLM_MODEL": _text(env, "LLM_MODEL", "gpt-4o-mini"),
        "LLM_TIMEOUT_SECONDS": _integer(env, "LLM_TIMEOUT_SECONDS", 60, 1, 600),
        "LLM_MAX_RETRIES": _integer(env, "LLM_MAX_RETRIES", 2, 0, 10),
        "LLM_MAX_OUTPUT_TOKENS": _integer(env, "LLM_MAX_OUTPUT_TOKENS", 4096, 64, 200_000),
        "OPENAI_API_KEY": openai_api_key,
        "OPENAI_BASE_URL": _http_url(env, "OPENAI_BASE_URL"),
        "TIKTOKEN_CACHE_DIR": tiktoken_cache_dir,
    }
    return config, warnings
