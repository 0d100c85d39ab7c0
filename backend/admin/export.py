"""Ledger records (as backend/admin/repository.py reads them) as CSV or NDJSON lines, one record at a time."""
import csv
import io
import json

from backend.schemas import format_utc
from backend.usage.model import F

COLUMNS = (
    F.TIMESTAMP, F.DATE, F.USER_ID, F.USER_EMAIL, F.ORG_ID, F.TEAM_ID, F.API_KEY_ID, F.TAGS, F.METADATA,
    F.PROVIDER, F.MODEL_NAME, F.RESPONSE_MODEL, F.OPERATION,
    F.PROMPT_TOKENS, F.CACHED_INPUT_TOKENS, F.CACHE_WRITE_TOKENS, F.COMPLETION_TOKENS, F.REASONING_TOKENS,
    F.TOTAL_TOKENS, F.COST, F.PRICED, F.USAGE_REPORTED, F.ESTIMATED, F.OUTCOME, F.HTTP_STATUS, F.DEMO, F.CALL_ID,
    F.REQUEST_ID, F.LATENCY_MS,
)
IDS = (F.USER_ID, F.ORG_ID, F.TEAM_ID, F.API_KEY_ID)


def _row(record):
    """A ledger record, read with_defaults, as an export row."""
    row = {column: record.get(column) for column in COLUMNS}
    row[F.TIMESTAMP] = format_utc(record[F.TIMESTAMP])
    for column in IDS:
        row[column] = None if record[column] is None else str(record[column])
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
