"""Ledger records as CSV or NDJSON lines, one record at a time."""
import csv
import io
import json

from backend.orgs.repository import DEFAULT_ORG_ID
from backend.schemas import UTCDateTime

COLUMNS = (
    "timestamp", "date", "userId", "userEmail", "orgId", "teamId", "apiKeyId", "tags", "metadata",
    "provider", "modelName", "responseModel", "operation",
    "promptTokens", "cachedInputTokens", "cacheWriteTokens", "completionTokens", "reasoningTokens",
    "totalTokens", "cost", "priced", "usageReported", "estimated", "outcome", "httpStatus", "demo", "callId",
    "requestId", "latencyMs",
)
_TIMESTAMP = UTCDateTime()


def _row(record):
    row = {column: record.get(column) for column in COLUMNS}
    row["timestamp"] = _TIMESTAMP._serialize(record["timestamp"], None, None)
    row["userId"] = str(record["userId"])
    row["orgId"] = str(record.get("orgId") or DEFAULT_ORG_ID)
    row["teamId"] = str(record["teamId"]) if record.get("teamId") else None
    row["apiKeyId"] = str(record["apiKeyId"]) if record.get("apiKeyId") else None
    row["tags"] = list(record.get("tags") or ())
    row["metadata"] = dict(record.get("metadata") or {})
    row["usageReported"] = record.get("usageReported", True)
    row["estimated"] = record.get("estimated", False)
    row["outcome"] = record.get("outcome", "ok")
    row["cacheWriteTokens"] = record.get("cacheWriteTokens", 0)
    return row


# OWASP's CSV-injection rule: a cell starting with one of these is a formula to a spreadsheet.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    """A CSV cell: booleans as true/false, None empty, and text a spreadsheet would evaluate
    (a registered email `=1+1@example.com`, a model name `@SUM(...)`) quoted with a leading '.
    Numbers are written as numbers, so a negative one stays a number."""
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, list):  # tags: space-separated (a tag has no spaces)
        value = " ".join(value)
    elif isinstance(value, dict):  # metadata: one JSON object
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(records):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def line(values):
        writer.writerow(values)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(COLUMNS)
    for record in records:
        row = _row(record)
        yield line([_cell(row[column]) for column in COLUMNS])


def ndjson_lines(records):
    for record in records:
        yield json.dumps(_row(record), separators=(",", ":")) + "\n"


def filename(start, end, fmt):
    return f"tokenledger-usage-{start.isoformat() if start else 'start'}-{end.isoformat() if end else 'now'}.{fmt}"
