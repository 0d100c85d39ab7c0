"""The providers' usage report endpoints at the httpx2 transport, with their documented shapes.

OpenAI: GET /v1/organization/usage/completions -> {"object": "page", "data": [bucket], "has_more", "next_page"},
each bucket {"object": "bucket", "start_time", "end_time", "results": [organization.usage.completions.result]}.
Anthropic: GET /v1/organizations/usage_report/messages -> {"data": [{"starting_at", "ending_at", "results"}],
"has_more", "next_page"}. Each page after the first is asked for with ?page=<next_page>.
"""
import httpx2


class UsageReportServer:
    """Serves `pages` (page bodies without paging fields) in order, or a reply to raise/return;
    OpenAI's embeddings endpoint serves `embedding_pages` (none: one page without buckets)."""

    def __init__(self, pages=(), token_prefix="page_", embedding_pages=()):
        self.pages = list(pages)
        self.embedding_pages = list(embedding_pages) or [{"object": "page", "data": []}]
        self.token_prefix = token_prefix
        self.failure = None
        self.failures_left = None
        self.requests = []  # to the report's main endpoint (OpenAI: completions)
        self.embedding_requests = []

    def fail_with(self, failure, times=None):
        """An httpx2.Response to answer with, or an exception to raise (the first `times` requests
        only, when given)."""
        self.failure, self.failures_left = failure, times

    def handler(self, request):
        embeddings = request.url.path.endswith("/usage/embeddings")
        (self.embedding_requests if embeddings else self.requests).append(request)
        failure = self.failure
        if self.failures_left is not None:
            failure = failure if self.failures_left > 0 else None
            self.failures_left -= 1
        if isinstance(failure, Exception):
            raise failure
        if failure is not None:
            return failure
        pages = self.embedding_pages if embeddings else self.pages
        token = request.url.params.get("page")
        number = int(token.removeprefix(self.token_prefix)) if token else 0
        more = number + 1 < len(pages)
        body = {**pages[number], "has_more": more,
                "next_page": f"{self.token_prefix}{number + 1}" if more else None}
        return httpx2.Response(200, json=body)

    @property
    def transport(self):
        return httpx2.MockTransport(self.handler)


def openai_result(model, input_tokens, output_tokens, cached, requests, cache_write=None):
    return {"object": "organization.usage.completions.result", "input_tokens": input_tokens,
            "output_tokens": output_tokens, "input_cached_tokens": cached, "input_audio_tokens": 0,
            **({"input_cache_write_tokens": cache_write} if cache_write is not None else {}),
            "output_audio_tokens": 0, "num_model_requests": requests, "project_id": None, "user_id": None,
            "api_key_id": None, "model": model, "batch": None}


def openai_embeddings_result(model, input_tokens, requests):
    return {"object": "organization.usage.embeddings.result", "input_tokens": input_tokens,
            "num_model_requests": requests, "project_id": None, "user_id": None, "api_key_id": None,
            "model": model}


def openai_page(start_time, results):
    return {"object": "page", "data": [{"object": "bucket", "start_time": start_time,
                                        "end_time": start_time + 86400, "results": results}]}


def anthropic_result(model, uncached, output, cache_read=0, cache_5m=0, cache_1h=0):
    return {"uncached_input_tokens": uncached,
            "cache_creation": {"ephemeral_1h_input_tokens": cache_1h, "ephemeral_5m_input_tokens": cache_5m},
            "cache_read_input_tokens": cache_read, "output_tokens": output,
            "server_tool_use": {"web_search_requests": 0}, "api_key_id": None, "workspace_id": None,
            "model": model, "service_tier": "standard", "context_window": "0-200k"}


def anthropic_page(starting_at, ending_at, results):
    return {"data": [{"starting_at": starting_at, "ending_at": ending_at, "results": results}]}
