"""Ledger records as CSV or NDJSON lines, one record at a time."""
import csv
import io
import json

from backend.schemas import UTCDateTime

COLUMNS = (
    "timestamp", "date", "userId", "userEmail", "provider", "modelName", "responseModel", "operation",
    "promptTokens", "cachedInputTokens", "cacheWriteTokens", "completionTokens", "reasoningTokens",
    "totalTokens", "cost", "priced", "usageReported", "demo", "callId", "requestId", "latencyMs",
)
_TIMESTAMP = UTCDateTime()


def _row(record):
    row = {column: record.get(column) for column in COLUMNS}
    row["timestamp"] = _TIMESTAMP._serialize(record["timestamp"], None, None)
    row["userId"] = str(record["userId"])
    row["usageReported"] = record.get("usageReported", True)
    row["cacheWriteTokens"] = record.get("cacheWriteTokens", 0)
    return row


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
        yield line(["true" if v is True else "false" if v is False else "" if v is None else v
                    for v in (row[c] for c in COLUMNS)])


def ndjson_lines(records):
    for record in records:
        yield json.dumps(_row(record), separators=(",", ":")) + "\n"


def filename(start, end, fmt):
    return f"tokenledger-usage-{start.isoformat() if start else 'start'}-{end.isoformat() if end else 'now'}.{fmt}"
