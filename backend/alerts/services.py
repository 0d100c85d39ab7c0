"""Threshold alerts: queued when usage crosses a percentage of a limit, sent by a background
dispatcher as one JSON POST per threshold per window (Slack-compatible `text` plus fields)."""
import logging
from datetime import timedelta

import httpx

from backend.alerts import repository

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(hours=1)
POST_TIMEOUT_SECONDS = 10


def queue_crossings(db, subject, window, period, unit, used, limit, thresholds, now, window_key=None):
    """Queue an alert for every threshold that `used` has reached; each is queued once ever per
    window (`window_key`: the budget counter's key, which tells apart two windows a zone change
    gives one label; by default `<subject>|<window>|<period>`)."""
    queued = []
    window_key = window_key or f"{subject['key']}|{window}|{period}"
    for percent in thresholds:
        if limit and used >= limit * percent / 100:
            alert_id = f"{window_key}|{unit}|{percent}"
            payload = {
                "text": (f"TokenLedger: {subject['label']} has used {percent}% of its {window} {unit} "
                         f"budget ({used:g} of {limit:g}) for {period}."),
                "alert": {"subject": subject["key"], "label": subject["label"], "window": window,
                          "period": period, "unit": unit, "threshold": percent, "used": used, "limit": limit},
            }
            if repository.queue(db, alert_id, payload, now):
                queued.append(alert_id)
    return queued


def queue_projected_crossing(db, subject, window_key, period, unit, projected, limit, expected_day, zone_name, now):
    """Queue, once per month window, unit and limit, the alert that the month is on pace to cross
    its limit (`window_key`: the month's budget counter key)."""
    alert_id = f"{window_key}|{unit}|projected|{limit:g}"
    day = f"{expected_day.day} {expected_day:%B}"
    payload = {
        "text": (f"TokenLedger: at this pace {subject['label']} reaches its monthly {unit} limit on {day} "
                 f"({zone_name}): {projected:g} projected for {period} against a limit of {limit:g}."),
        "alert": {"subject": subject["key"], "label": subject["label"], "window": "month", "period": period,
                  "unit": unit, "kind": "projection", "projected": projected, "limit": limit,
                  "expectedDay": expected_day.isoformat(), "timeZone": zone_name},
    }
    return repository.queue(db, alert_id, payload, now)


def _backoff(attempts):
    return min(MAX_BACKOFF, timedelta(seconds=2 ** attempts))


def dispatch_due(db, webhook_url, max_attempts, now, client=None):
    """Send every due alert once; failures are retried later with exponential backoff."""
    sent = 0
    http = client or httpx.Client(timeout=POST_TIMEOUT_SECONDS)
    try:
        while (alert := repository.claim_due(db, now)) is not None:
            try:
                response = http.post(webhook_url, json=alert["payload"])
                response.raise_for_status()
            except httpx.HTTPError as exc:
                attempts = alert["attempts"] + 1
                give_up = attempts >= max_attempts
                repository.mark_failed_attempt(db, alert, attempts, now + _backoff(attempts), give_up, str(exc))
                log.warning("Alert %s not delivered (attempt %d%s): %s", alert["_id"], attempts,
                            ", giving up" if give_up else "", exc)
                continue
            repository.mark_sent(db, alert, now)
            sent += 1
    finally:
        if client is None:
            http.close()
    return sent
