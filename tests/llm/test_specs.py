"""The provider declarations: every setting they name is read into the configuration, a provider
declared there and nowhere else is configurable, and declaring providers loads none of their SDKs."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from backend.config import ConfigError, load_config
from backend.llm.base import Provider
from backend.llm.registry import provider_class
from backend.llm.specs import PROVIDERS, URL, ProviderSpec, Setting

ROOT = Path(__file__).resolve().parents[2]
SDKS = ("openai", "anthropic", "google.genai", "ollama")


class MistralProvider(Provider):
    spec = ProviderSpec(
        name="mistral", provider_class=f"{__name__}:MistralProvider", default_model="mistral-small-latest",
        settings=(Setting("MISTRAL_API_KEY"), Setting("MISTRAL_BASE_URL", URL)),
        credential="MISTRAL_API_KEY", credential_required=True, price_provider="mistral",
    )


def test_configuring_providers_imports_no_sdk_until_one_is_used():
    code = (
        "import sys\n"
        "import backend.llm.registry, backend.reconciliation.services\n"
        "from backend.config import load_config\n"
        "load_config({'OPENAI_API_KEY': 'o', 'ANTHROPIC_API_KEY': 'a', 'GEMINI_API_KEY': 'g'})\n"
        f"print(sorted(name for name in {SDKS!r} if name in sys.modules))\n"
        "backend.llm.registry.provider_class('anthropic')\n"
        f"print(sorted(name for name in {SDKS!r} if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "['anthropic']"]


@pytest.mark.parametrize("module", ["specs.py", "__init__.py"])
def test_the_declarations_import_only_the_standard_library(module):
    # backend/config.py imports them, and the configuration is read before anything else loads.
    tree = ast.parse((ROOT / "backend" / "llm" / module).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {name.split(".")[0] for name in imported} <= sys.stdlib_module_names


@pytest.mark.parametrize("spec", PROVIDERS.values(), ids=PROVIDERS)
def test_each_provider_class_carries_its_declaration(spec):
    cls = provider_class(spec.name)
    assert cls.spec is spec
    assert (cls.name, cls.price_provider, cls.free_reason, cls.is_demo) == (
        spec.name, spec.price_provider, spec.free_reason, spec.is_demo)
    # A free provider says why its calls cost nothing; a priced one has nothing to explain.
    assert (spec.price_provider is None) == bool(spec.free_reason)


def _value(setting, number):
    return f"http://{setting.name.lower().replace('_', '-')}.test:{number}" if setting.kind == URL else f"value-{number}"


def test_every_declared_setting_is_read_under_its_own_name():
    env, expected = {}, {}
    for number, spec in enumerate(PROVIDERS.values()):
        for setting in spec.settings:
            env[setting.name] = expected[setting.name] = _value(setting, number)
        for name in spec.usage_report.settings if spec.usage_report else ():
            env[name] = expected[name] = f"{name.lower()}-{number}"
        if spec.usage_report:
            base_url = spec.usage_report.base_url
            env[base_url.name] = expected[base_url.name] = _value(base_url, number)
        if spec.configurable_model:
            env[spec.model_setting] = f"{spec.name}-model"
            env[spec.allowed_models_setting] = f"{spec.name}-a,{spec.name}-b"
    aliases = {alias for spec in PROVIDERS.values() for setting in spec.settings for alias in setting.aliases}
    assert set(env) == {name for spec in PROVIDERS.values() for name in spec.variables} - aliases

    config, _ = load_config(env)
    assert {name: config[name] for name in expected} == expected
    assert config["LLM_PROVIDER"] == "openai"
    assert config["LLM_PROVIDERS"] == ["openai", "gemini", "anthropic", "ollama"]
    assert config["LLM_MODELS"] == {"openai": "openai-model", "gemini": "gemini-model", "anthropic": "anthropic-model",
                                    "ollama": "ollama-model", "demo": "demo"}
    assert config["LLM_ALLOWED_MODELS"] == {
        **{name: frozenset({f"{name}-a", f"{name}-b"}) for name in ("openai", "gemini", "anthropic", "ollama")},
        "demo": None,
    }


@pytest.mark.parametrize("setting, alias", [(setting, alias) for spec in PROVIDERS.values()
                                            for setting in spec.settings for alias in setting.aliases])
def test_an_alias_is_read_only_when_the_setting_itself_is_unset(setting, alias):
    assert load_config({alias: "from-alias"})[0][setting.name] == "from-alias"
    assert load_config({alias: "from-alias", setting.name: "own"})[0][setting.name] == "own"


def test_unset_settings_take_their_declared_defaults_and_enable_nothing():
    config, _ = load_config({})
    assert {setting.name: config[setting.name] for spec in PROVIDERS.values() for setting in spec.settings} == {
        "OPENAI_API_KEY": None, "OPENAI_BASE_URL": None, "GEMINI_API_KEY": None, "GEMINI_BASE_URL": None,
        "ANTHROPIC_API_KEY": None, "ANTHROPIC_BASE_URL": None, "OLLAMA_HOST": "http://127.0.0.1:11434",
    }
    assert config["LLM_PROVIDERS"] == ["demo"]
    assert load_config({"OLLAMA_HOST": "http://gpu.test:11434"})[0]["LLM_PROVIDERS"] == ["demo", "ollama"]


def test_a_provider_declared_once_is_configured_everywhere(monkeypatch):
    monkeypatch.setitem(PROVIDERS, "mistral", MistralProvider.spec)
    config, _ = load_config({"MISTRAL_API_KEY": "m-key", "MISTRAL_MODEL": "mistral-large-latest",
                             "MISTRAL_ALLOWED_MODELS": "*"})
    assert config["LLM_PROVIDERS"] == ["demo", "mistral"]
    assert (config["MISTRAL_API_KEY"], config["MISTRAL_BASE_URL"]) == ("m-key", None)
    assert config["LLM_MODELS"]["mistral"] == "mistral-large-latest"
    assert config["LLM_ALLOWED_MODELS"]["mistral"] == "*"
    assert load_config({"LLM_PROVIDER": "Mistral", "MISTRAL_API_KEY": "m-key"})[0]["LLM_PROVIDER"] == "mistral"
    assert provider_class("mistral") is MistralProvider
    assert (MistralProvider.name, MistralProvider.price_provider) == ("mistral", "mistral")
    for env, message in (
        ({"LLM_PROVIDER": "mistral"}, "MISTRAL_API_KEY is required when LLM_PROVIDER is mistral"),
        ({"LLM_PROVIDERS": "mistral"}, "LLM_PROVIDERS includes mistral but its API key is not set"),
        ({"MISTRAL_BASE_URL": "mistral.test"}, "MISTRAL_BASE_URL must be an http(s) URL, got 'mistral.test'"),
        ({"LLM_PROVIDER": "cohere"},
         "LLM_PROVIDER must be one of openai, gemini, anthropic, ollama, demo, mistral, got 'cohere'"),
    ):
        with pytest.raises(ConfigError) as raised:
            load_config(env)
        assert str(raised.value) == message
