"""Every provider declared once: the settings it reads, its default model, its price-table id and
the usage report it publishes (as each Redash query runner declares its own configuration).

backend/config.py builds every provider setting from these declarations, the registry imports
`provider_class` from them, and reconciliation asks them which providers publish a usage report.
A declaration imports nothing of its provider: the registry imports the provider's module, and so
its SDK, the first time the provider is used. This module imports only the standard library, so
the configuration can read it before anything else is loaded.
"""
from dataclasses import dataclass

# How a setting's value is read and checked: any text, or an http(s) URL.
TEXT, URL = "text", "url"


@dataclass(frozen=True)
class Setting:
    """An environment variable read into app.config under its own name.

    `aliases` are read, in order, when `name` is unset; `default` is the value when none is set.
    """

    name: str
    kind: str = TEXT
    default: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def variables(self):
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class UsageReportSpec:
    """The provider's own usage report, which reconciliation reads with an admin key (a secret
    like the API keys: never logged, never echoed).

    `filters` are (filter name, setting) pairs: which of the provider's usage to compare with the
    ledger when the organisation has other callers (a project, an API key). `base_url` is where the
    report is read, a setting of its own: the admin key goes to the provider's admin API and never
    to a generation gateway (OPENAI_BASE_URL may point at LiteLLM, OpenRouter or Azure).
    """

    admin_key: str
    base_url: Setting
    filters: tuple[tuple[str, str], ...] = ()

    @property
    def settings(self):
        return (self.admin_key, *(setting for _, setting in self.filters))


@dataclass(frozen=True)
class ProviderSpec:
    """One provider, as the configuration, pricing and reconciliation know it without its SDK.

    `provider_class` is "module:Class", imported on first use. `credential` is the setting whose
    value enables the provider when LLM_PROVIDERS is unset; with `credential_required` the provider
    cannot be used without it. A provider with `configurable_model` reads <NAME>_MODEL (its default
    model) and <NAME>_ALLOWED_MODELS (the models a request may name). `price_provider` is its id in
    the genai-prices table, or None when its calls cost nothing; `free_reason` then says why.
    `is_demo` marks the offline demo: canned replies, recorded as demo calls, only its own model.
    """

    name: str
    provider_class: str
    default_model: str
    settings: tuple[Setting, ...] = ()
    credential: str | None = None
    credential_required: bool = False
    configurable_model: bool = True
    price_provider: str | None = None
    free_reason: str = ""
    is_demo: bool = False
    usage_report: UsageReportSpec | None = None
    # The provider's default embedding model (EMBEDDING_MODEL overrides it); None: it has no
    # embeddings API.
    embedding_model: str | None = None

    @property
    def model_setting(self):
        return f"{self.name.upper()}_MODEL" if self.configurable_model else None

    @property
    def allowed_models_setting(self):
        return f"{self.name.upper()}_ALLOWED_MODELS" if self.configurable_model else None

    @property
    def variables(self):
        """Every environment variable this declaration makes the configuration read."""
        names = [variable for setting in self.settings for variable in setting.variables]
        names += [name for name in (self.model_setting, self.allowed_models_setting) if name]
        if self.usage_report:
            names += [*self.usage_report.settings, *self.usage_report.base_url.variables]
        return tuple(names)


OPENAI = ProviderSpec(
    name="openai",
    provider_class="backend.llm.openai_provider:OpenAIProvider",
    default_model="gpt-4o-mini",
    settings=(Setting("OPENAI_API_KEY"), Setting("OPENAI_BASE_URL", URL)),
    credential="OPENAI_API_KEY",
    credential_required=True,
    price_provider="openai",
    embedding_model="text-embedding-3-small",
    usage_report=UsageReportSpec(
        admin_key="OPENAI_ADMIN_KEY",
        # The same convention as OPENAI_BASE_URL: /v1 included.
        base_url=Setting("OPENAI_ADMIN_BASE_URL", URL, default="https://api.openai.com/v1"),
        filters=(("projectId", "RECONCILE_OPENAI_PROJECT_ID"), ("apiKeyId", "RECONCILE_OPENAI_API_KEY_ID")),
    ),
)
GEMINI = ProviderSpec(
    name="gemini",
    provider_class="backend.llm.gemini_provider:GeminiProvider",
    default_model="gemini-2.5-flash",
    # GOOGLE_API_KEY is the name google-genai itself reads.
    settings=(Setting("GEMINI_API_KEY", aliases=("GOOGLE_API_KEY",)), Setting("GEMINI_BASE_URL", URL)),
    credential="GEMINI_API_KEY",
    credential_required=True,
    price_provider="google",
    embedding_model="gemini-embedding-001",
)
ANTHROPIC = ProviderSpec(
    name="anthropic",
    provider_class="backend.llm.anthropic_provider:AnthropicProvider",
    default_model="claude-haiku-4-5",
    settings=(Setting("ANTHROPIC_API_KEY"), Setting("ANTHROPIC_BASE_URL", URL)),
    credential="ANTHROPIC_API_KEY",
    credential_required=True,
    price_provider="anthropic",
    usage_report=UsageReportSpec(
        admin_key="ANTHROPIC_ADMIN_KEY",
        # The same convention as ANTHROPIC_BASE_URL: no /v1.
        base_url=Setting("ANTHROPIC_ADMIN_BASE_URL", URL, default="https://api.anthropic.com"),
        filters=(("apiKeyId", "RECONCILE_ANTHROPIC_API_KEY_ID"),),
    ),
)
OLLAMA = ProviderSpec(
    name="ollama",
    provider_class="backend.llm.ollama_provider:OllamaProvider",
    default_model="llama3.2",
    # Setting the host is what enables ollama; unset, the default host still serves LLM_PROVIDERS=ollama.
    settings=(Setting("OLLAMA_HOST", URL, default="http://127.0.0.1:11434"),),
    credential="OLLAMA_HOST",
    free_reason="local model (ollama): no spend",
    embedding_model="nomic-embed-text",
)
DEMO = ProviderSpec(
    name="demo",
    provider_class="backend.llm.demo_provider:DemoProvider",
    default_model="demo",
    configurable_model=False,
    free_reason="demo provider: no spend",
    is_demo=True,
    embedding_model="demo-embedding",
)

# Name → declaration, in the order settings and messages list them.
PROVIDERS = {spec.name: spec for spec in (OPENAI, GEMINI, ANTHROPIC, OLLAMA, DEMO)}
# With LLM_PROVIDER unset: the preferred provider when its credential is set, else the offline demo.
PREFERRED, FALLBACK = OPENAI, DEMO
# With EMBEDDING_PROVIDER unset: the chat provider when it has embeddings, else this one.
EMBEDDING_FALLBACK = DEMO


def embedding_choice(config):
    """(provider name, model) of the embeddings: EMBEDDING_PROVIDER and EMBEDDING_MODEL, or the
    chat provider (when it has embeddings, else the offline demo) and its declared model."""
    name = config.get("EMBEDDING_PROVIDER")
    if name is None:
        chat = PROVIDERS[config["LLM_PROVIDER"]]
        name = chat.name if chat.embedding_model else EMBEDDING_FALLBACK.name
    spec = PROVIDERS[name]
    return name, (config.get("EMBEDDING_MODEL") if spec.configurable_model else None) or spec.embedding_model
