"""Prometheus metrics, one registry per app (per process: see README for several workers)."""
from prometheus_client import CollectorRegistry, Counter, Histogram

from backend.runtime import runtime

LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
TOKEN_KINDS = (("input", "prompt_tokens"), ("cached_input", "cached_input_tokens"),
               ("cache_write", "cache_write_tokens"), ("output", "completion_tokens"),
               ("reasoning", "reasoning_tokens"))


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

    def count_records(self, records):
        """Count written ledger records (backend.usage.model.UsageRecord)."""
        sums = {}
        for record in records:
            labels = (record.provider, record.model_name, record.operation)
            totals = sums.setdefault(labels, [0] * (len(TOKEN_KINDS) + 1))
            for index, (_, attribute) in enumerate(TOKEN_KINDS):
                totals[index] += getattr(record, attribute)
            totals[-1] += record.cost
        for labels, totals in sums.items():  # one update per label set of the batch
            for index, (kind, _) in enumerate(TOKEN_KINDS):
                self.tokens.labels(*labels, kind).inc(totals[index])
            self.cost.labels(*labels).inc(totals[-1])

    def count_call(self, provider, outcome, latency_ms=None):
        self.llm_calls.labels(provider, outcome).inc()
        if latency_ms is not None:
            self.llm_latency.labels(provider).observe(latency_ms / 1000)


def metrics():
    return runtime().metrics
