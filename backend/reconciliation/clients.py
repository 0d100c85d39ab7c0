"""The providers' own usage reports, read over HTTP and reduced to counts per model for one UTC day.

Each report class reads its provider's documented shape; its admin key and filter settings come
from the provider's declaration (backend/llm/specs.py), and everything else (paging, errors,
summing) is shared. Both APIs page with `has_more` / `next_page`, the token going back as the
`page` query parameter. A report that cannot be read raises ReportUnavailable with a reason fit
to store and show: it never holds a key.

A 429, a 5xx or a connection that fails is tried again within the run (ATTEMPTS in all), after
the server's Retry-After when it gives one (at most MAX_WAIT_SECONDS), else after 1, 2, 4 s.

Tests and proxies inject an httpx2 transport per provider with RECONCILE_TRANSPORTS.
"""
from datetime import datetime, time, timedelta, timezone
from time import sleep as pause

import httpx2

from backend.llm.specs import PROVIDERS

COUNTS = ("requests", "uncachedInputTokens", "cachedInputTokens", "cacheWriteTokens", "outputTokens")
TIMEOUT_SECONDS = 30
# A server that always answers has_more must not hold a worker forever.
MAX_PAGES = 100
ERROR_DETAIL_CHARS = 200
ATTEMPTS = 4
MAX_WAIT_SECONDS = 30


class ReportUnavailable(Exception):
    """The report could not be read; the message is the reason kept with the result."""


def zero_counts():
    return dict.fromkeys(COUNTS, 0)


class UsageReport:
    name = label = admin_key_setting = filter_settings = base_url_setting = default_base_url = None
    # Each endpoint of the report, read in turn and summed per model (OpenAI: completions, embeddings).
    paths = ()
    # Anthropic's report has no request count; its requests are not compared.
    counts_requests = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The declaration names these settings once, for the configuration that reads them and for us.
        declared = PROVIDERS[cls.name].usage_report
        cls.admin_key_setting, cls.filter_settings = declared.admin_key, declared.filters

    def __init__(self, admin_key, base_url, filters, transport=None):
        self.admin_key = admin_key
        self.urls = [(base_url or self.default_base_url).rstrip("/") + path for path in self.paths]
        self.filters = filters
        self.transport = transport

    @classmethod
    def filters_from(cls, config):
        return {name: config.get(setting) for name, setting in cls.filter_settings}

    @classmethod
    def from_config(cls, config):
        admin_key = config.get(cls.admin_key_setting)
        if not admin_key:
            raise ReportUnavailable(f"{cls.admin_key_setting} is not set")
        return cls(admin_key, config.get(cls.base_url_setting), cls.filters_from(config),
                   (config.get("RECONCILE_TRANSPORTS") or {}).get(cls.name))

    def fetch(self, day):
        """{model: counts} for one UTC day, every page read."""
        per_model = {}
        with httpx2.Client(transport=self.transport, timeout=TIMEOUT_SECONDS) as client:
            for body in (body for url in self.urls for body in self._pages(client, url, self.query(day))):
                try:
                    for bucket in body["data"]:
                        if self.bucket_day(bucket) != day:
                            continue
                        # OpenAI's schema names the list `result`; its examples and answers say `results`.
                        for result in bucket.get("results", bucket.get("result", [])):
                            counts = per_model.setdefault(result.get("model") or "unknown", zero_counts())
                            for field, value in self.counts(result).items():
                                counts[field] += value
                except (KeyError, TypeError, ValueError) as exc:
                    raise ReportUnavailable(f"{self.label} usage report has an unexpected shape ({exc!r})") from None
        if not self.counts_requests:
            for counts in per_model.values():
                counts["requests"] = None
        return per_model

    def _get(self, client, url, params):
        """One page's response, tried again on a 429, a 5xx or a failed connection."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = client.get(url, params=params, headers=self.headers())
            except httpx2.HTTPError as exc:
                failure, wait = f"{self.label} usage report unreachable: {self._scrub(str(exc))}", None
            except (UnicodeError, ValueError) as exc:
                # A base URL or an admin key that cannot make a request (a stray character in it).
                raise ReportUnavailable(f"{self.label} usage report request could not be made ({type(exc).__name__}): "
                                        f"check {self.base_url_setting} and {self.admin_key_setting}") from None
            else:
                if response.status_code == 200:
                    return response
                # The key is blanked out of the whole body before it is cut short, so no part of it is kept.
                detail = " ".join(self._scrub(response.text).split())[:ERROR_DETAIL_CHARS]
                failure = f"{self.label} usage report answered {response.status_code}: {detail}"
                if response.status_code != 429 and response.status_code < 500:
                    raise ReportUnavailable(failure)
                wait = _retry_after(response.headers.get("Retry-After"))
            if attempt == ATTEMPTS:
                raise ReportUnavailable(f"{failure} (after {ATTEMPTS} attempts)")
            pause(min(wait if wait is not None else 2 ** (attempt - 1), MAX_WAIT_SECONDS))

    def _pages(self, client, url, query):
        page = None
        for _ in range(MAX_PAGES):
            params = {**query, "page": page} if page else query
            response = self._get(client, url, params)
            try:
                body = response.json()
            except ValueError:
                raise ReportUnavailable(f"{self.label} usage report answered with something other than JSON") from None
            yield body
            if not body.get("has_more"):
                return
            page = body.get("next_page")
            if not page:
                raise ReportUnavailable(f"{self.label} usage report said has_more without a next_page")
        raise ReportUnavailable(f"{self.label} usage report had more than {MAX_PAGES} pages for one day")

    def _scrub(self, text):
        # An error body or exception text might quote the key back; it must never be stored or shown.
        return text.replace(self.admin_key, "[admin key]")


def _retry_after(value):
    """Retry-After in seconds (a number of seconds; an HTTP date is not waited for), or None."""
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def day_start(day):
    return datetime.combine(day, time(), tzinfo=timezone.utc)


class OpenAIUsageReport(UsageReport):
    """GET /v1/organization/usage/completions: buckets of organization.usage.completions.result, and
    GET /v1/organization/usage/embeddings: organization.usage.embeddings.result (input_tokens and
    num_model_requests only), for the embedding calls the ledger records beside generations.

    input_tokens includes cached reads (input_cached_tokens) and cache writes (input_cache_write_tokens,
    when reported). Snapshot model names (gpt-4o-mini-2024-07-18), as the chat completion reports them.
    """

    name, label = "openai", "OpenAI"
    # OpenAI's admin API, /v1 included; never OPENAI_BASE_URL (a generation gateway).
    base_url_setting = "OPENAI_ADMIN_BASE_URL"
    default_base_url = "https://api.openai.com/v1"
    paths = ("/organization/usage/completions", "/organization/usage/embeddings")

    def headers(self):
        return {"Authorization": f"Bearer {self.admin_key}"}

    def query(self, day):
        start = int(day_start(day).timestamp())
        query = {"start_time": start, "end_time": start + 86400, "bucket_width": "1d", "group_by": ["model"]}
        if self.filters["projectId"]:
            query["project_ids"] = [self.filters["projectId"]]
        if self.filters["apiKeyId"]:
            query["api_key_ids"] = [self.filters["apiKeyId"]]
        return query

    @staticmethod
    def bucket_day(bucket):
        return datetime.fromtimestamp(bucket["start_time"], timezone.utc).date()

    @staticmethod
    def counts(result):
        cached = result.get("input_cached_tokens") or 0
        cache_write = result.get("input_cache_write_tokens") or 0
        return {"requests": result["num_model_requests"],
                "uncachedInputTokens": result["input_tokens"] - cached - cache_write,
                "cachedInputTokens": cached, "cacheWriteTokens": cache_write,
                # An embeddings result generates nothing: it has no output_tokens.
                "outputTokens": result.get("output_tokens") or 0}


class AnthropicUsageReport(UsageReport):
    """GET /v1/organizations/usage_report/messages: uncached input, cache reads, cache creation
    (5-minute and 1-hour) and output per model. No request count."""

    name, label = "anthropic", "Anthropic"
    base_url_setting = "ANTHROPIC_ADMIN_BASE_URL"
    default_base_url = "https://api.anthropic.com"
    paths = ("/v1/organizations/usage_report/messages",)
    counts_requests = False
    api_version = "2023-06-01"

    def headers(self):
        return {"x-api-key": self.admin_key, "anthropic-version": self.api_version}

    def query(self, day):
        start = day_start(day)
        query = {"starting_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "ending_at": (start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "bucket_width": "1d", "group_by[]": ["model"]}
        if self.filters["apiKeyId"]:
            query["api_key_ids[]"] = [self.filters["apiKeyId"]]
        return query

    @staticmethod
    def bucket_day(bucket):
        return datetime.fromisoformat(bucket["starting_at"]).astimezone(timezone.utc).date()

    @staticmethod
    def counts(result):
        creation = result.get("cache_creation") or {}
        return {"requests": 0,
                "uncachedInputTokens": result["uncached_input_tokens"],
                "cachedInputTokens": result.get("cache_read_input_tokens") or 0,
                "cacheWriteTokens": (creation.get("ephemeral_5m_input_tokens") or 0)
                + (creation.get("ephemeral_1h_input_tokens") or 0),
                "outputTokens": result["output_tokens"]}


# The reader of each usage report the provider declarations announce.
REPORTS = {report.name: report for report in (OpenAIUsageReport, AnthropicUsageReport)}
