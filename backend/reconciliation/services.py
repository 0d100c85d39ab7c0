"""Reconciliation: does the ledger hold what the provider billed, per provider, model and UTC day?

For each provider the ledger's counts (requests, uncached input, cached input, cache writes,
output) are compared with the provider's own usage report, model by model. The difference is
always reported minus ledger, so a positive number is something the provider billed that the
ledger lacks. Verdicts:
  match          every count of every model within RECONCILE_TOLERANCE
  ledger_short   the provider reports more of some count: calls the ledger lost
  ledger_over    the ledger holds more and the provider more of nothing: calls it never billed
  unavailable    the report could not be read (no admin key, an HTTP error); the reason is kept
  not_supported  the provider's declaration announces no usage report (gemini, ollama, demo)
"""
import logging
import re
from datetime import timedelta

from backend.alerts import repository as alerts
from backend.errors import UnprocessableEntity
from backend.llm.specs import PROVIDERS
from backend.reconciliation import repository
from backend.reconciliation.clients import (
    COUNTS,
    REPORTS,
    ReportUnavailable,
    zero_counts,
)

log = logging.getLogger(__name__)

MATCH, LEDGER_SHORT, LEDGER_OVER = "match", "ledger_short", "ledger_over"
UNAVAILABLE, NOT_SUPPORTED = "unavailable", "not_supported"
MISMATCHES = (LEDGER_SHORT, LEDGER_OVER)
# Mismatches first, then what could not be checked, then the rest.
VERDICT_ORDER = {LEDGER_SHORT: 0, LEDGER_OVER: 1, UNAVAILABLE: 2, MATCH: 3, NOT_SUPPORTED: 4}
# The background run looks again at a day's unavailable, provisional or mismatched result this
# long after the last look; a mismatch, while its day is younger than RECHECK_MISMATCH_DAYS (the
# provider's report may still be catching up, a late record may land).
RETRY_UNAVAILABLE = timedelta(hours=1)
RECHECK_MISMATCH_DAYS = 3
# Models named in a reconciliation alert's text (the rest are counted).
ALERTED_MODELS = 5
# How long one worker's scheduled run may hold the others off (it is released when done; a run
# that outlives it may be repeated by another worker: the results are the same, the reports are
# read twice).
LEASE = timedelta(minutes=30)
DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 366
LEDGER_COUNTS = (*COUNTS, "estimatedRequests")
COUNT_LABELS = {"requests": "requests", "uncachedInputTokens": "uncached input tokens",
                "cachedInputTokens": "cached input tokens", "cacheWriteTokens": "cache-write tokens",
                "outputTokens": "output tokens"}


def _sum(rows, fields):
    total = dict.fromkeys(fields, 0)
    for row in rows:
        for field in fields:
            total[field] = None if total[field] is None or row[field] is None else total[field] + row[field]
    return total


def _difference(reported, ledger):
    return {field: None if reported[field] is None else reported[field] - ledger[field] for field in COUNTS}


def verdict_of(difference, tolerance):
    """ledger_short wins over ledger_over: a count the provider billed and the ledger lacks is the
    costlier failure (a cached/uncached split that differs shows as both; the counts say which)."""
    values = [value for value in difference.values() if value is not None]
    if any(value > tolerance for value in values):
        return LEDGER_SHORT
    if any(value < -tolerance for value in values):
        return LEDGER_OVER
    return MATCH


# A dated snapshot of a model alias, as the providers name them: gpt-4o-mini-2024-07-18,
# claude-3-5-haiku-20241022.
SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def under_reported_names(ledger_models, reported_models):
    """The ledger's models renamed as the provider reports them: a model only the ledger names (an
    estimate recorded under the alias it asked for, say gpt-4o-mini, when the call timed out before
    the server named its snapshot) counts under the one dated snapshot of that alias the provider
    reports (gpt-4o-mini-2024-07-18), if exactly one. Pure."""
    renamed = {}
    for model, counts in ledger_models.items():
        snapshots = [name for name in reported_models
                     if model not in reported_models and name.startswith(f"{model}-")
                     and SNAPSHOT_SUFFIX.fullmatch(name[len(model):])]
        target = snapshots[0] if len(snapshots) == 1 else model
        merged = renamed.setdefault(target, dict.fromkeys(LEDGER_COUNTS, 0))
        for field in LEDGER_COUNTS:
            merged[field] += counts.get(field, 0)
    return renamed


def explain(result):
    """Why a mismatch may not be a loss, when the day holds estimates: their counts are the
    ledger's best knowledge (output the client saw, input as the reservation counted it)."""
    estimated = (result.get("ledger") or {}).get("estimatedRequests") or 0
    if result["verdict"] not in MISMATCHES or not estimated:
        return None
    return (f"{estimated} call(s) of this day are estimates (the provider did not report their usage: a timeout, a "
            "stream cut short, a process that died): their tokens are the ledger's best count, so a difference "
            "in their output or input can be theirs rather than a lost call")


def compare(ledger_models, reported_models, tolerance, requests_compared):
    """Per-model rows, day totals and the day's verdict for one provider. Pure."""
    nothing_reported = {**zero_counts(), "requests": 0 if requests_compared else None}
    ledger_models = under_reported_names(ledger_models, reported_models)
    models = []
    for model in sorted(set(ledger_models) | set(reported_models)):
        ledger = {**dict.fromkeys(LEDGER_COUNTS, 0), **ledger_models.get(model, {})}
        reported = reported_models.get(model) or dict(nothing_reported)
        difference = _difference(reported, ledger)
        models.append({"model": model, "verdict": verdict_of(difference, tolerance), "ledger": ledger,
                       "reported": reported, "difference": difference})
    verdicts = {row["verdict"] for row in models}
    ledger = _sum([row["ledger"] for row in models], LEDGER_COUNTS)
    reported = _sum([row["reported"] for row in models], COUNTS) if models else nothing_reported
    return {
        "verdict": next((v for v in MISMATCHES if v in verdicts), MATCH),
        "ledger": ledger, "reported": reported, "difference": _difference(reported, ledger), "models": models,
    }


def _unchecked(ledger_models):
    """The ledger's side alone, for a provider whose report was not read."""
    models = [{"model": model, "verdict": None, "ledger": counts, "reported": None, "difference": None}
              for model, counts in sorted(ledger_models.items())]
    return {"ledger": _sum([row["ledger"] for row in models], LEDGER_COUNTS), "reported": None,
            "difference": None, "models": models}


def _moved(ledger_models, moved):
    """The ledger's models with the calls that crossed midnight dated where they completed."""
    models = {model: dict(counts) for model, counts in ledger_models.items()}
    for sign, calls in ((-1, moved.get("out", [])), (1, moved.get("in", []))):
        for call in calls:
            counts = models.setdefault(call["model"], dict.fromkeys(LEDGER_COUNTS, 0))
            for field in LEDGER_COUNTS:
                counts[field] = counts.get(field, 0) + sign * call[field]
    return models


def _across_midnight(ledger_models, moved, reported_models, config, requests_compared):
    """The comparison with every call dated on the UTC day it completed (as the providers bill it),
    unless dating the calls that crossed midnight by their start matches where that does not; the
    result says which calls moved and which dating it used."""
    tolerance = config["RECONCILE_TOLERANCE"]
    crossed = {"out": [call["callId"] for call in moved.get("out", [])],
               "in": [call["callId"] for call in moved.get("in", [])]}
    completed = compare(_moved(ledger_models, moved), reported_models, tolerance, requests_compared)
    if not crossed["out"] and not crossed["in"]:
        return {**completed, "midnight": None}
    if completed["verdict"] != MATCH:
        started = compare(ledger_models, reported_models, tolerance, requests_compared)
        if started["verdict"] == MATCH:
            return {**started, "midnight": {"datedBy": "request start", "movedOut": [], "movedIn": []}}
    return {**completed, "midnight": {"datedBy": "completion", "movedOut": crossed["out"], "movedIn": crossed["in"]}}


def reconcile_provider(provider, day, ledger_models, config, now, moved=None):
    """One provider's result for one UTC day (not stored); `moved`: its calls that crossed a
    midnight of the day (repository.midnight_calls)."""
    report_class = REPORTS[provider] if PROVIDERS[provider].usage_report else None
    base = {"provider": provider, "date": day.isoformat(), "checkedAt": now,
            "final": is_final(day, now, config["RECONCILE_SETTLE_HOURS"]),
            "tolerance": config["RECONCILE_TOLERANCE"], "reason": None,
            "requestsCompared": bool(report_class and report_class.counts_requests),
            "filters": report_class.filters_from(config) if report_class else {}}
    if report_class is None:
        return {**base, **_unchecked(ledger_models), "verdict": NOT_SUPPORTED,
                "reason": f"{provider} publishes no usage report to compare with"}
    try:
        reported_models = report_class.from_config(config).fetch(day)
    except ReportUnavailable as exc:
        log.warning("Reconciliation of %s for %s unavailable: %s", provider, day, exc)
        return {**base, **_unchecked(ledger_models), "verdict": UNAVAILABLE, "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one provider's failure never stops the others
        log.error("Reconciliation of %s for %s failed: %s", provider, day, type(exc).__name__)
        return {**base, **_unchecked(ledger_models), "verdict": UNAVAILABLE,
                "reason": f"reading the {provider} usage report failed ({type(exc).__name__})"}
    result = {**base, **_across_midnight(ledger_models, moved or {}, reported_models, config,
                                         report_class.counts_requests)}
    return {**result, "explanation": explain(result)}


def providers_to_check(config, ledger):
    """The enabled providers, those with ledger records that day, and those with an admin key."""
    return [spec.name for spec in PROVIDERS.values()
            if spec.name in config["LLM_PROVIDERS"] or spec.name in ledger
            or (spec.usage_report and config.get(spec.usage_report.admin_key))]


def _reconcile(db, config, day, now, ledger, providers, stored=None):
    """`stored`: the day's stored results, when the caller has read them already."""
    results, stored = [], repository.for_day(db, day) if stored is None else stored
    # A call is billed when it completes: one that started before a midnight may belong to the next day.
    moved = repository.midnight_calls(db, day)
    for provider in providers:
        result = reconcile_provider(provider, day, ledger.get(provider, {}), config, now, moved.get(provider))
        earlier = stored.get(provider)
        if result["verdict"] == UNAVAILABLE and earlier is not None and earlier["verdict"] != UNAVAILABLE:
            # A report that could not be read this time says nothing new: the verdict stands.
            log.warning("Reconciliation of %s for %s kept its %s verdict: the report could not be read again (%s)",
                        provider, day, earlier["verdict"], result["reason"])
            results.append({key: value for key, value in earlier.items() if key != "_id"})
            continue
        repository.save(db, result)
        if result["final"] and result["verdict"] in (*MISMATCHES, MATCH):
            queue_alert(db, result, now)
        results.append(result)
    return results


def reconcile_day(db, config, day, now):
    """Reconcile every provider to check for one UTC day, store each result (replacing an earlier
    one) and queue an alert for each mismatch. Returns the results."""
    ledger = repository.ledger_counts(db, day)
    return _reconcile(db, config, day, now, ledger, providers_to_check(config, ledger))


def due_day(now, settle_hours):
    """The latest UTC day that ended at least `settle_hours` ago (the provider's data has settled)."""
    return (now - timedelta(hours=settle_hours)).date() - timedelta(days=1)


def is_final(day, now, settle_hours):
    """Whether a result computed at `now` for `day` is final: the day ended `settle_hours` ago (the
    providers' reports lag). Before that it is provisional: shown, looked at again, never alerted."""
    return day <= due_day(now, settle_hours)


def _looks_again(result, now, day, due):
    """A stored result the background run reconciles again: unavailable, provisional, or a mismatch
    of a recent day, an hour after the last look."""
    if result["checkedAt"] > now - RETRY_UNAVAILABLE:
        return False
    return (result["verdict"] == UNAVAILABLE or not result.get("final", True)
            or (result["verdict"] in MISMATCHES and day > due - timedelta(days=RECHECK_MISMATCH_DAYS)))


def reconcile_due(db, config, now):
    """The background run: reconcile the due day for the providers not yet done, and look again at
    the stored results of recent days that are unavailable, provisional or mismatched (an hour
    after the last look). Returns the new results."""
    if not _work(db, config, now):
        return []
    # One worker at a time reads the providers' reports (they rate-limit the organization); the
    # work is looked up again under the lease, so a run another worker just finished is not repeated.
    lease = repository.take_lease(db, now, LEASE)
    if lease is None:
        return []
    try:
        return [result for day, ledger, pending, stored in _work(db, config, now)
                for result in _reconcile(db, config, day, now, ledger, pending, stored)]
    finally:
        repository.release_lease(db, lease)


def _work(db, config, now):
    """[(day, ledger counts, providers, stored results)] the scheduled run has to do."""
    due = due_day(now, config["RECONCILE_SETTLE_HOURS"])
    work = []
    for age in range(RECHECK_MISMATCH_DAYS - 1, -1, -1):
        day = due - timedelta(days=age)
        stored = repository.for_day(db, day)
        ledger = repository.ledger_counts(db, day)
        pending = [name for name in providers_to_check(config, ledger) if
                   (name in stored and _looks_again(stored[name], now, day, due)) or (name not in stored and day == due)]
        # A provisional result (a run of --date today) of an older day is looked at again too.
        pending += [name for name, result in stored.items()
                    if name not in pending and not result.get("final", True) and _looks_again(result, now, day, due)]
        if pending:
            work.append((day, ledger, pending, stored))
    return work


def describe(difference):
    """'requests +1, uncached input tokens +1,200' for the counts that differ."""
    parts = [f"{COUNT_LABELS[field]} {value:+,}" for field, value in difference.items() if value]
    return ", ".join(parts) or "no difference"


def _per_model(result):
    """'gpt-4o-mini-2024-07-18: requests +1, output tokens +75; ...' for the models that differ."""
    rows = [row for row in result["models"] if row["verdict"] in MISMATCHES]
    return "; ".join(f"{row['model']}: {describe(row['difference'])}" for row in rows[:ALERTED_MODELS]) + (
        f"; and {len(rows) - ALERTED_MODELS} more model(s)" if len(rows) > ALERTED_MODELS else "")


def queue_alert(db, result, now):
    """One alert per provider and day (`reconciliation|<provider>|<day>`): opened by a final
    mismatch (again after it was resolved), sent again (`event: "updated"`) when its verdict or any
    model's numbers change, and once more (`event: "resolved"`) when a later final run matches.
    Unchanged numbers send nothing."""
    provider, day, verdict = result["provider"], result["date"], result["verdict"]
    alert_id = f"reconciliation|{provider}|{day}"
    current = alerts.state_of(db, alert_id)
    if verdict == MATCH:
        if current in (None, MATCH):
            return False
        payload = {"text": f"TokenLedger reconciliation: {provider} {day} now matches: resolved.",
                   "reconciliation": {"event": "resolved", "provider": provider, "date": day, "verdict": verdict,
                                      "models": [], "difference": result["difference"]}}
        return alerts.put(db, alert_id, payload, MATCH, now)
    models = [row["model"] for row in result["models"] if row["verdict"] in MISMATCHES]
    meaning = ("the provider billed more than the ledger holds (lost calls)" if verdict == LEDGER_SHORT
               else "the ledger holds calls the provider did not bill")
    state = f"{verdict}|" + "|".join(f"{row['model']}:{sorted((row['difference'] or {}).items())}"
                                     for row in result["models"] if row["verdict"] in MISMATCHES)
    payload = {
        "text": (f"TokenLedger reconciliation: {provider} {day} is {verdict}: {meaning}. "
                 f"Provider minus ledger: {describe(result['difference'])} (by model: {_per_model(result)})."
                 + (f" Note: {result['explanation']}." if result.get("explanation") else "")),
        "reconciliation": {"event": "opened" if current in (None, MATCH) else "updated", "provider": provider,
                           "date": day, "verdict": verdict, "models": models, "difference": result["difference"]},
    }
    return alerts.put(db, alert_id, payload, state, now)


def list_results(db, start, end, provider, today):
    """Stored results for an inclusive UTC range (default: the last 30 days), mismatches first,
    then newest day first."""
    end = end or today
    start = start or end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise UnprocessableEntity(f"The range is too long: at most {MAX_RANGE_DAYS} days",
                                  errors={"endDate": ["Too far."]})
    rows = repository.in_range(db, start, end, provider)
    rows.sort(key=lambda row: VERDICT_ORDER[row["verdict"]])
    return {"startDate": start, "endDate": end, "results": rows}
