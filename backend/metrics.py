"""Prometheus metrics, one registry per app (per process: see README for several workers)."""
from prometheus_client import CollectorRegistry, Counter, Histogram

from backend.runtime import runtime

LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
TOKEN_KINDS = ("input", "cached_input", "cache_write", "output", "reasoning")


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.tokens = Counter("tokenledger_tokens", "Tokens recorded in the ledger",
                              ["provider", "model", "operation", "kind"], registry=r)
        self.cost = Counter("tokenledger_cost_usd", "Cost recorded in the ledger, USD",
                            ["provider", "model", "operation"], registry=r)
        self.llm_calls = Counter("tokenledger_llm_calls", "LLM calls by outcome", ["provider", "outcome"], registry=r)
        self.llm_latency = Histogram("tokenledger_llm_latency_seconds", "LLM call latency", ["provider"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.usage_writes = Counter("tokenledger_usage_writes", "Usage records written to the ledger", registry=r)
        self.usage_write_failures = Counter("tokenledger_usage_write_failures",
                                            "Usage writes that failed (their records were spooled)", registry=r)
        self.usage_spooled = Counter("tokenledger_usage_spooled", "Usage records appended to the spool", registry=r)
        self.usage_replayed = Counter("tokenledger_usage_replayed", "Spooled usage records written on replay",
                                      registry=r)
        self.budget_rejections = Counter("tokenledger_budget_rejections", "Requests refused by a budget",
                                         ["window"], registry=r)
        self._calls, self._latency = {}, {}

    def count_usage(self, provider, model, operation, tokens, cost):
        """Count written usage: `tokens` {kind of TOKEN_KINDS: count} and `cost` (USD) of the records
        of one provider, model and operation (the ledger writer sums a batch first)."""
        for kind in TOKEN_KINDS:
            self.tokens.labels(provider, model, operation, kind).inc(tokens[kind])
        self.cost.labels(provider, model, operation).inc(cost)

    def count_call(self, provider, outcome, latency_ms=None):
        calls = self._calls.get((provider, outcome))
        if calls is None:  # a label lookup per call costs more than the increment: children are kept
            calls = self._calls[(provider, outcome)] = self.llm_calls.labels(provider, outcome)
        calls.inc()
        if latency_ms is not None:
            latency = self._latency.get(provider)
            if latency is None:
                latency = self._latency[provider] = self.llm_latency.labels(provider)
            latency.observe(latency_ms / 1000)


def metrics():
    return runtime().metrics
