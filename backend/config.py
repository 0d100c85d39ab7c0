"""Configuration: the only module that reads the environment.

`load_config(environ)` turns environment variables into a validated dict for
`app.config`. A bad value raises ConfigError with one line saying which
setting is wrong, so start-up fails clearly instead of with a traceback.
"""
import importlib.util
import errno
import json
import os
import re
import secrets
import tempfile
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import unquote, urlparse

from limits import parse_many
from limits.storage import SCHEMES as STORAGE_SCHEMES

from backend.llm.specs import FALLBACK, PREFERRED, PROVIDERS, TEXT, URL

# The declared provider names, for schemas that validate a provider field.
LLM_PROVIDERS = tuple(PROVIDERS)
PRICE_FIELDS = ("inputPer1M", "cachedInputPer1M", "cacheWritePer1M", "outputPer1M")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
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


def _rate_limit(env, name, default):
    """A Flask-Limiter limit string; flask-limiter itself would log a bad one and not limit at all."""
    value = _text(env, name, default)
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{name} must be a rate limit such as '10 per minute' or '100/hour', got {value!r}") from None
    return value


# The client library each Flask-Limiter storage scheme needs (memory:// needs none).
_STORAGE_LIBRARIES = {"redis": "redis", "rediss": "redis", "valkey": "valkey", "valkeys": "valkey",
                      "memcached": "pymemcache", "mongodb": "pymongo"}


def _ratelimit_storage(env):
    uri = _text(env, "RATELIMIT_STORAGE_URI", "memory://")
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in STORAGE_SCHEMES or scheme.startswith("async+"):
        raise ConfigError(f"RATELIMIT_STORAGE_URI must be memory://, redis://, memcached:// or mongodb://..., got {uri!r}")
    library = _STORAGE_LIBRARIES.get(scheme.split("+")[0])
    if library and importlib.util.find_spec(library) is None:
        raise ConfigError(f"RATELIMIT_STORAGE_URI uses {scheme}:// but the {library} package is not installed")
    return uri


def _database_name(env, mongo_uri):
    """The database named in MONGO_URI's path (as every MongoDB tool reads it), else MONGO_DB_NAME,
    else tokenledger; the two naming different databases is a mistake, refused."""
    named = _text(env, "MONGO_DB_NAME")
    in_uri = _uri_database(mongo_uri)
    if in_uri is not None and named is not None and named != in_uri:
        raise ConfigError(f"MONGO_URI names the database {in_uri!r} and MONGO_DB_NAME {named!r}: set one of them, "
                          "or both to the same name")
    name = in_uri or named or "tokenledger"
    # MongoDB refuses these characters in database names, and names longer than 63 bytes.
    if re.search(r'[/\\. "$*<>:|?]', name) or len(name.encode()) > 63:
        raise ConfigError(f"MONGO_DB_NAME must be at most 63 characters without /\\. \"$*<>:|? or spaces, got {name!r}")
    return name


def _uri_database(mongo_uri):
    """The database in a MongoDB URI's path (mongodb://host/<database>?options), or None."""
    if mongo_uri is None:
        return None
    rest = mongo_uri.split("://", 1)[1]
    path = rest.split("/", 1)[1] if "/" in rest else ""
    return unquote(path.split("?", 1)[0]) or None


def _spool_path(env, mongo_uri):
    """SPOOL_PATH, checked writable now (a spool that cannot take a record is a write-ahead log that
    is off). Unset: var/usage-spool.jsonl with MongoDB (every worker of the checkout writes its own
    segments there, and recovers those of workers that are gone); None with the embedded store,
    whose app then spools to a folder of its own process (backend/usage/spool.py), since another
    process's records belong in another process's in-memory store."""
    path = _text(env, "SPOOL_PATH")
    if path is None:
        if mongo_uri is None:
            return None
        path = str(PROJECT_ROOT / "var" / "usage-spool.jsonl")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "it is a folder")
        with open(f"{path}.lock", "a"):  # the spool's segments are written beside it (backend/usage/spool.py)
            pass
    except OSError as exc:
        raise ConfigError(f"SPOOL_PATH {path} cannot be written ({exc.strerror or exc}): the spool is the "
                          "ledger's write-ahead log; choose a writable file") from None
    return path


def _cors_origins(env):
    origins = [o.strip() for o in _text(env, "CORS_ORIGINS", "").split(",") if o.strip()]
    for origin in origins:
        parsed = urlparse(origin)
        if origin != "*" and (parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path):
            raise ConfigError(f"CORS_ORIGINS must list origins such as https://app.example.com, got {origin!r}")
    return origins


def _price_overrides(env):
    """PRICING_FILE: {"models": [{"provider", "model", "inputPer1M", "outputPer1M", ...}]}."""
    path = _text(env, "PRICING_FILE")
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise ConfigError(f"PRICING_FILE cannot be read: {exc.strerror} ({path})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"PRICING_FILE is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    entries = document.get("models") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError('PRICING_FILE must hold {"models": [...]}')
    overrides = {}
    for number, entry in enumerate(entries, 1):
        where = f"PRICING_FILE entry {number}"
        if not isinstance(entry, dict) or not entry.get("provider") or not entry.get("model"):
            raise ConfigError(f"{where} needs provider and model")
        rates = {}
        for field in PRICE_FIELDS:
            value = entry.get(field)
            if value is None:
                continue
            try:
                rate = Decimal(str(value))
            except InvalidOperation:
                raise ConfigError(f"{where} {field} must be a number") from None
            if rate < 0:
                raise ConfigError(f"{where} {field} must not be negative")
            rates[field] = rate
        if "inputPer1M" not in rates or "outputPer1M" not in rates:
            raise ConfigError(f"{where} needs inputPer1M and outputPer1M")
        overrides[(entry["provider"], entry["model"])] = rates
    return overrides


_READERS = {TEXT: _text, URL: _http_url}


def _declared(env, setting):
    """A declared setting as the environment sets it: its own variable, else its first alias that
    is set; None when none is."""
    read = _READERS[setting.kind]
    for name in setting.variables:
        value = read(env, name)
        if value is not None:
            return value
    return None


def _provider_settings(env):
    """Every setting the provider declarations (backend/llm/specs.py) name, None where unset."""
    values = {}
    for spec in PROVIDERS.values():
        for setting in spec.settings:
            values[setting.name] = _declared(env, setting)
        for name in spec.usage_report.settings if spec.usage_report else ():
            values[name] = _text(env, name)
        if spec.usage_report:
            values[spec.usage_report.base_url.name] = _declared(env, spec.usage_report.base_url)
    return values


def _unfiltered_reports(provider_settings, warnings):
    """A warning for each usage report read with an admin key and no filter: the whole
    organization's usage is compared with the ledger."""
    for spec in PROVIDERS.values():
        report = spec.usage_report
        if report and provider_settings.get(report.admin_key) and not any(
                provider_settings.get(setting) for _, setting in report.filters):
            warnings.append(
                f"{report.admin_key} is set without {' or '.join(setting for _, setting in report.filters)}: "
                f"reconciliation compares the whole organization's {spec.name} usage with the ledger, so any other "
                "caller in it makes every day ledger_short.")


def _with_defaults(provider_settings):
    defaults = {setting.name: setting.default for spec in PROVIDERS.values()
                for setting in (*spec.settings, *((spec.usage_report.base_url,) if spec.usage_report else ()))}
    return {name: defaults.get(name) if value is None else value for name, value in provider_settings.items()}


def _default_provider(env, credentials, warnings):
    """LLM_PROVIDER, or the rule the declarations state when it is unset; its credential must be set."""
    provider = _text(env, "LLM_PROVIDER")
    if provider is None:
        provider = PREFERRED.name if credentials.get(PREFERRED.name) else FALLBACK.name
        if provider == FALLBACK.name:
            warnings.append(
                f"LLM_PROVIDER is not set and {PREFERRED.credential} is missing: using the offline "
                f"{FALLBACK.name} provider; its test cases are canned and its records cost nothing."
            )
    provider = provider.lower()
    if provider not in PROVIDERS:
        raise ConfigError(f"LLM_PROVIDER must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    spec = PROVIDERS[provider]
    if spec.credential_required and not credentials.get(provider):
        raise ConfigError(f"{spec.credential} is required when LLM_PROVIDER is {provider}")
    return provider


def _enabled_providers(env, default_provider, credentials):
    """Providers a request may choose: the default, plus every provider with credentials."""
    listed = _text(env, "LLM_PROVIDERS")
    if listed is None:
        chosen = [name for name in PROVIDERS if credentials.get(name)]
        return [default_provider] + [name for name in chosen if name != default_provider]
    chosen = []
    for name in (item.strip().lower() for item in listed.split(",") if item.strip()):
        if name not in PROVIDERS:
            raise ConfigError(f"LLM_PROVIDERS names an unknown provider {name!r}")
        if PROVIDERS[name].credential_required and not credentials.get(name):
            raise ConfigError(f"LLM_PROVIDERS includes {name} but its API key is not set")
        chosen.append(name)
    if default_provider not in chosen:
        chosen.insert(0, default_provider)
    return chosen


def _decimal(env, name):
    value = _text(env, name)
    if value is None:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be greater than 0")
    return number


def _thresholds(env):
    value = _text(env, "ALERT_THRESHOLDS", "80,100")
    try:
        percents = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise ConfigError(f"ALERT_THRESHOLDS must be whole percentages like 80,100, got {value!r}") from None
    if not percents or percents[0] < 1 or percents[-1] > 1000:
        raise ConfigError("ALERT_THRESHOLDS must be percentages between 1 and 1000")
    return percents


def _choice(env, name, default, choices):
    value = (_text(env, name, default)).lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


# What a model name may look like: letters, digits and . _ : / @ + - (no spaces or control characters).
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")


def _model_list(env, name):
    """A provider's allowlist: None (unset: the models the price table or PRICING_FILE prices for
    it, and its configured model), "*" (any well-formed name) or a frozenset of names."""
    value = _text(env, name)
    if value is None:
        return None
    if value == "*":
        return "*"
    models = [model.strip() for model in value.split(",") if model.strip()]
    bad = [model for model in models if not MODEL_NAME.fullmatch(model)]
    if not models or bad:
        raise ConfigError(f"{name} must be * or a comma-separated list of model names, got {value!r}")
    return frozenset(models)


def _models(env, default_provider):
    """Each provider's default model: <NAME>_MODEL or the declared one; LLM_MODEL overrides the
    default provider's."""
    models = {spec.name: _text(env, spec.model_setting, spec.default_model) if spec.configurable_model
              else spec.default_model for spec in PROVIDERS.values()}
    if _text(env, "LLM_MODEL"):
        models[default_provider] = _text(env, "LLM_MODEL")
    return models


def _embedding_provider(env, credentials):
    """EMBEDDING_PROVIDER when set (None: the chat provider's embeddings, see specs.embedding_choice);
    a provider without an embeddings API, or without its credential, is a configuration error."""
    name = _text(env, "EMBEDDING_PROVIDER")
    if name is None:
        return None
    name = name.lower()
    if name not in PROVIDERS:
        raise ConfigError(f"EMBEDDING_PROVIDER must be one of {', '.join(_with_embeddings())}, got {name!r}")
    spec = PROVIDERS[name]
    if spec.embedding_model is None:
        raise ConfigError(f"EMBEDDING_PROVIDER={name}: {name} has no embeddings API; choose one of "
                          f"{', '.join(_with_embeddings())}")
    if spec.credential_required and not credentials.get(name):
        raise ConfigError(f"{spec.credential} is required when EMBEDDING_PROVIDER is {name}")
    return name


def _with_embeddings():
    return [spec.name for spec in PROVIDERS.values() if spec.embedding_model]


def _embedding_model(env):
    model = _text(env, "EMBEDDING_MODEL")
    if model is not None and not MODEL_NAME.fullmatch(model):
        raise ConfigError(f"EMBEDDING_MODEL must be a model name, got {model!r}")
    return model


def _allowed_models(env):
    return {spec.name: _model_list(env, spec.allowed_models_setting) if spec.configurable_model else None
            for spec in PROVIDERS.values()}


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

    provider_settings = _provider_settings(env)
    _unfiltered_reports(provider_settings, warnings)
    # A credential counts only when set: a declared default (a local server's host) enables nothing.
    credentials = {spec.name: provider_settings[spec.credential] for spec in PROVIDERS.values() if spec.credential}
    provider = _default_provider(env, credentials, warnings)

    log_level = (_text(env, "LOG_LEVEL", "INFO")).upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")

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
        "MONGO_DB_NAME": _database_name(env, mongo_uri),
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
        # A generation whose budget counters cannot be read is refused (503) unless this is set.
        "BUDGETS_FAIL_OPEN": _boolean(env, "BUDGETS_FAIL_OPEN", False),
        "CORS_ORIGINS": _cors_origins(env),
        "LOG_LEVEL": log_level,
        "LLM_PROVIDER": provider,
        "LLM_PROVIDERS": _enabled_providers(env, provider, credentials),
        "LLM_MODELS": _models(env, provider),
        "LEDGER_WRITES": _choice(env, "LEDGER_WRITES", "async", ("async", "sync")),
        "SPOOL_FSYNC": _boolean(env, "SPOOL_FSYNC", True),
        "LEDGER_WRITE_INTERVAL_MS": _integer(env, "LEDGER_WRITE_INTERVAL_MS", 200, 0, 60_000),
        "LLM_ALLOWED_MODELS": _allowed_models(env),
        "LLM_TIMEOUT_SECONDS": _integer(env, "LLM_TIMEOUT_SECONDS", 60, 1, 600),
        "LLM_MAX_RETRIES": _integer(env, "LLM_MAX_RETRIES", 2, 0, 10),
        "LLM_MAX_OUTPUT_TOKENS": _integer(env, "LLM_MAX_OUTPUT_TOKENS", 4096, 64, 200_000),
        # --- Embeddings (RAG over saved test cases; backend/testcases/embeddings.py) ---
        "EMBEDDING_PROVIDER": _embedding_provider(env, credentials),
        "EMBEDDING_MODEL": _embedding_model(env),
        # Vector length asked of providers that can shorten theirs (OpenAI text-embedding-3, Gemini,
        # Ollama); unset: the model's own.
        "EMBEDDING_DIMENSIONS": _integer(env, "EMBEDDING_DIMENSIONS", None, 8, 8192),
        "EMBEDDING_BATCH_SIZE": _integer(env, "EMBEDDING_BATCH_SIZE", 64, 1, 2048),
        # The similarity index each process keeps in memory; the least recently searched pools go first.
        "RAG_INDEX_MAX_MB": _integer(env, "RAG_INDEX_MAX_MB", 512, 1, 65_536),
        # Each provider's keys, URLs and usage-report settings, as its declaration names them.
        # Keys and admin keys are secrets: never logged, never echoed.
        **_with_defaults(provider_settings),
        "PRICE_OVERRIDES": _price_overrides(env),
        "ALERT_WEBHOOK_URL": _http_url(env, "ALERT_WEBHOOK_URL"),
        "ALERT_THRESHOLDS": _thresholds(env),
        "GLOBAL_DAILY_SPEND_LIMIT_USD": _decimal(env, "GLOBAL_DAILY_SPEND_LIMIT_USD"),
        "ALERT_MAX_ATTEMPTS": _integer(env, "ALERT_MAX_ATTEMPTS", 8, 1, 100),
        "METRICS_TOKEN": _text(env, "METRICS_TOKEN"),
        "SPOOL_PATH": _spool_path(env, mongo_uri),
        "BACKGROUND_TASKS": _boolean(env, "BACKGROUND_TASKS", True),
        # Migrations, indexes and the bootstrap admin when the app starts; scripts turn it off and
        # do what their command needs (backend/cli.py).
        "START_UP_TASKS": True,
        "BACKGROUND_INTERVAL_SECONDS": _integer(env, "BACKGROUND_INTERVAL_SECONDS", 15, 1, 3600),
        "LEDGER_TTL_DAYS": _integer(env, "LEDGER_TTL_DAYS", 0, 0, 36_500),
        "TRUSTED_PROXY_HOPS": _integer(env, "TRUSTED_PROXY_HOPS", 0, 0, 5),
        "RATELIMIT_ENABLED": _boolean(env, "RATELIMIT_ENABLED", True),
        "RATELIMIT_STORAGE_URI": _ratelimit_storage(env),
        "RATELIMIT_AUTH": _rate_limit(env, "RATELIMIT_AUTH", "10 per minute"),
        "RATELIMIT_GENERATION": _rate_limit(env, "RATELIMIT_GENERATION", "30 per minute"),
        # Bodies above this are refused with a 413 before they are read (Flask's own setting name).
        "MAX_CONTENT_LENGTH": _integer(env, "MAX_CONTENT_LENGTH", 1024 * 1024, 1024, 64 * 1024 * 1024),
        "TIKTOKEN_CACHE_DIR": tiktoken_cache_dir,
        # --- Reconciliation with the providers' usage reports (backend/reconciliation/) ---
        # The admin keys and report filters are provider settings, above.
        "RECONCILE_TOLERANCE": _integer(env, "RECONCILE_TOLERANCE", 0, 0, 1_000_000_000),
        "RECONCILE_SETTLE_HOURS": _integer(env, "RECONCILE_SETTLE_HOURS", 6, 0, 72),
        # --- end of reconciliation settings ---
    }
    return config, warnings
