import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from backend.config import ConfigError, load_config
from backend.llm.specs import PROVIDERS

ROOT = Path(__file__).resolve().parents[1]
SECRET = "x" * 32


def test_defaults_use_embedded_store_demo_provider_and_warn():
    config, warnings = load_config({})
    assert config["MONGO_URI"] is None
    assert config["LLM_PROVIDER"] == "demo"
    assert config["LLM_PROVIDERS"] == ["demo"]
    assert config["LLM_MODELS"]["openai"] == "gpt-4o-mini"
    assert (config["HOST"], config["PORT"]) == ("127.0.0.1", 5000)
    assert config["ALLOW_REGISTRATION"] is True
    assert len(config["JWT_SECRET_KEY"]) >= 32
    assert any("NOTHING IS PERSISTED" in w for w in warnings)
    assert any("JWT_SECRET_KEY" in w for w in warnings)
    assert any("demo provider" in w for w in warnings)


def test_openai_is_the_default_when_a_key_is_set():
    config, _ = load_config({"OPENAI_API_KEY": "sk-1"})
    assert config["LLM_PROVIDER"] == "openai"


@pytest.mark.parametrize("env, message", [
    ({"MONGO_URI": "mongodb://db:27017"}, "JWT_SECRET_KEY is required when MONGO_URI is set"),
    ({"MONGO_URI": "postgres://x"}, "MONGO_URI must start with mongodb:// or mongodb+srv://"),
    ({"JWT_SECRET_KEY": "short"}, "JWT_SECRET_KEY must be at least 32 characters"),
    ({"LLM_PROVIDER": "cohere"}, "LLM_PROVIDER must be one of openai, gemini, anthropic, ollama, demo, got 'cohere'"),
    ({"LLM_PROVIDER": "openai"}, "OPENAI_API_KEY is required when LLM_PROVIDER is openai"),
    ({"PORT": "http"}, "PORT must be a whole number, got 'http'"),
    ({"PORT": "70000"}, "PORT must be between 1 and 65535, got 70000"),
    ({"ALLOW_REGISTRATION": "maybe"}, "ALLOW_REGISTRATION must be true or false, got 'maybe'"),
    ({"ADMIN_EMAIL": "a@b.co"}, "ADMIN_EMAIL and ADMIN_PASSWORD must be set together"),
    ({"ADMIN_EMAIL": "a@b.co", "ADMIN_PASSWORD": "short"}, "ADMIN_PASSWORD must be at least 8 characters"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"),
    ({"OPENAI_BASE_URL": "localhost:8000"}, "OPENAI_BASE_URL must be an http(s) URL, got 'localhost:8000'"),
])
def test_invalid_settings_name_the_setting(env, message):
    with pytest.raises(ConfigError) as raised:
        load_config(env)
    assert str(raised.value) == message


def test_real_mongo_settings_are_accepted():
    config, warnings = load_config({
        "MONGO_URI": "mongodb+srv://cluster.example.net", "JWT_SECRET_KEY": SECRET,
        "MONGO_DB_NAME": "ledger", "CORS_ORIGINS": "http://a.test, http://b.test",
        "JWT_ACCESS_TOKEN_MINUTES": "5", "ALLOW_REGISTRATION": "false",
    })
    assert config["MONGO_DB_NAME"] == "ledger"
    assert config["CORS_ORIGINS"] == ["http://a.test", "http://b.test"]
    assert config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds() == 300
    assert config["ALLOW_REGISTRATION"] is False
    assert not any("PERSISTED" in w or "JWT_SECRET_KEY" in w for w in warnings)


def test_bad_setting_stops_start_up_with_one_line_and_no_traceback():
    result = subprocess.run(
        [sys.executable, "wsgi.py"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "LLM_PROVIDER": "cohere"},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Configuration error: LLM_PROVIDER must be one of openai, gemini, anthropic, ollama, demo, got 'cohere'"
    )
    assert "Traceback" not in result.stderr


def test_provider_keys_models_and_enabled_providers():
    config, _ = load_config({"LLM_PROVIDER": "anthropic", "ANTHROPIC_API_KEY": "a", "GOOGLE_API_KEY": "g",
                             "LLM_MODEL": "claude-sonnet-4-5", "GEMINI_MODEL": "gemini-2.0-flash"})
    assert config["LLM_PROVIDERS"] == ["anthropic", "gemini"]
    assert config["GEMINI_API_KEY"] == "g"
    assert config["LLM_MODELS"]["anthropic"] == "claude-sonnet-4-5"
    assert config["LLM_MODELS"]["gemini"] == "gemini-2.0-flash"
    assert config["LLM_MODELS"]["openai"] == "gpt-4o-mini"
    listed, _ = load_config({"OPENAI_API_KEY": "o", "LLM_PROVIDERS": "ollama, demo"})
    assert listed["LLM_PROVIDERS"] == ["openai", "ollama", "demo"]


@pytest.mark.parametrize("env, message", [
    ({"LLM_PROVIDER": "gemini"}, "GEMINI_API_KEY is required when LLM_PROVIDER is gemini"),
    ({"LLM_PROVIDERS": "openai"}, "LLM_PROVIDERS includes openai but its API key is not set"),
    ({"LLM_PROVIDERS": "mistral"}, "LLM_PROVIDERS names an unknown provider 'mistral'"),
    ({"OLLAMA_HOST": "ollama:11434"}, "OLLAMA_HOST must be an http(s) URL, got 'ollama:11434'"),
])
def test_invalid_provider_settings(env, message):
    with pytest.raises(ConfigError) as raised:
        load_config(env)
    assert str(raised.value) == message


def test_pricing_file_is_read_and_validated(tmp_path):
    good = tmp_path / "prices.json"
    good.write_text('{"models": [{"provider": "openai", "model": "my-llm", "inputPer1M": 0.2, "outputPer1M": 0.8}]}')
    config, _ = load_config({"PRICING_FILE": str(good)})
    assert config["PRICE_OVERRIDES"] == {("openai", "my-llm"): {"inputPer1M": Decimal("0.2"), "outputPer1M": Decimal("0.8")}}
    for content, message in (
        ("{oops", "PRICING_FILE is not valid JSON: Expecting property name enclosed in double quotes at line 1"),
        ('{"models": {}}', 'PRICING_FILE must hold {"models": [...]}'),
        ('{"models": [{"provider": "openai"}]}', "PRICING_FILE entry 1 needs provider and model"),
        ('{"models": [{"provider": "openai", "model": "m", "inputPer1M": 1}]}',
         "PRICING_FILE entry 1 needs inputPer1M and outputPer1M"),
        ('{"models": [{"provider": "openai", "model": "m", "inputPer1M": -1, "outputPer1M": 1}]}',
         "PRICING_FILE entry 1 inputPer1M must not be negative"),
        ('{"models": [{"provider": "openai", "model": "m", "inputPer1M": "cheap", "outputPer1M": 1}]}',
         "PRICING_FILE entry 1 inputPer1M must be a number"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(ConfigError) as raised:
            load_config({"PRICING_FILE": str(bad)})
        assert str(raised.value) == message
    with pytest.raises(ConfigError) as raised:
        load_config({"PRICING_FILE": str(tmp_path / "missing.json")})
    assert str(raised.value).startswith("PRICING_FILE cannot be read: No such file or directory")


def test_every_setting_is_documented_in_the_readme_and_env_example():
    source = (ROOT / "backend" / "config.py").read_text()
    names = set(re.findall(r'env, "([A-Z0-9_]+)"', source))
    assert {"MONGO_URI", "JWT_SECRET_KEY", "LEDGER_TTL_DAYS", "TRUSTED_PROXY_HOPS"} <= names
    names |= {name for spec in PROVIDERS.values() for name in spec.variables}
    assert {"OPENAI_API_KEY", "GOOGLE_API_KEY", "OLLAMA_ALLOWED_MODELS", "RECONCILE_OPENAI_PROJECT_ID"} <= names
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    assert sorted(n for n in names if f"`{n}`" not in readme) == []
    assert sorted(n for n in names if not re.search(rf"^#? ?{n}=", example, re.M)) == []


@pytest.mark.parametrize("env, message", [
    ({"RATELIMIT_AUTH": "10 per minut"},
     "RATELIMIT_AUTH must be a rate limit such as '10 per minute' or '100/hour', got '10 per minut'"),
    ({"RATELIMIT_GENERATION": "thirty"},
     "RATELIMIT_GENERATION must be a rate limit such as '10 per minute' or '100/hour', got 'thirty'"),
    ({"RATELIMIT_STORAGE_URI": "bogus://x"},
     "RATELIMIT_STORAGE_URI must be memory://, redis://, memcached:// or mongodb://..., got 'bogus://x'"),
    ({"RATELIMIT_STORAGE_URI": "localhost:6379"},
     "RATELIMIT_STORAGE_URI must be memory://, redis://, memcached:// or mongodb://..., got 'localhost:6379'"),
    ({"MAX_CONTENT_LENGTH": "1MB"}, "MAX_CONTENT_LENGTH must be a whole number, got '1MB'"),
    ({"MAX_CONTENT_LENGTH": "10"}, "MAX_CONTENT_LENGTH must be between 1024 and 67108864, got 10"),
    ({"MONGO_DB_NAME": "token.ledger"},
     "MONGO_DB_NAME must be at most 63 characters without /\\. \"$*<>:|? or spaces, got 'token.ledger'"),
    ({"CORS_ORIGINS": "http://a.test, localhost:3000"},
     "CORS_ORIGINS must list origins such as https://app.example.com, got 'localhost:3000'"),
])
def test_settings_that_used_to_fail_open_stop_start_up(env, message):
    with pytest.raises(ConfigError) as raised:
        load_config(env)
    assert str(raised.value) == message


def test_valid_rate_limits_and_storage_are_accepted():
    config, _ = load_config({"RATELIMIT_AUTH": "5/second;100 per hour", "RATELIMIT_GENERATION": "30 per minute",
                             "RATELIMIT_STORAGE_URI": "mongodb://db:27017", "MAX_CONTENT_LENGTH": "2097152"})
    assert config["RATELIMIT_AUTH"] == "5/second;100 per hour"
    assert config["RATELIMIT_STORAGE_URI"] == "mongodb://db:27017"
    assert config["MAX_CONTENT_LENGTH"] == 2 * 1024 * 1024


@pytest.mark.parametrize("name, value", [("RATELIMIT_AUTH", "10 per minut"), ("RATELIMIT_STORAGE_URI", "bogus://x")])
def test_a_bad_rate_limit_setting_is_one_line_at_start_up(name, value):
    result = subprocess.run(
        [sys.executable, "wsgi.py"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", name: value},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"Configuration error: {name} must be")
    assert "Traceback" not in result.stderr
