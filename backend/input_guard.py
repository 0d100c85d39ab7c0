"""Hostile input stops at the door: oversized bodies, malformed JSON, invalid UTF-8.

One JSON provider parses every JSON body the app reads (Flask's `request.get_json` and, through
`check_request`, the body webargs will parse): nesting deeper than MAX_JSON_DEPTH, integers
outside MongoDB's signed 64-bit range, non-finite numbers and lone surrogates are refused with a
400 naming where they are, so no such value reaches a schema, a pipeline or the BSON encoder.
"""
import json
import math
import re
from urllib.parse import unquote_to_bytes

from flask import current_app, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge

from backend.errors import BadRequest, PayloadTooLarge

MAX_JSON_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Longer digit strings cannot be in range; they are refused before int() does quadratic work.
MAX_INTEGER_DIGITS = 20
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JSONBodyError(ValueError):
    """A syntactically valid JSON document that TokenLedger refuses; `errors` maps paths to problems."""

    def __init__(self, message, errors):
        super().__init__(message)
        self.errors = errors


class _Unrepresentable:
    """A number the parser met that no field may hold; reported with its path by _check."""

    def __init__(self, text):
        self.text = text if len(text) <= 24 else f"{text[:12]}...({len(text)} characters)"


def _parse_int(text):
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        return _Unrepresentable(text)
    number = int(text)
    return number if INT64_MIN <= number <= INT64_MAX else _Unrepresentable(text)


def _parse_float(text):
    number = float(text)
    return number if math.isfinite(number) else _Unrepresentable(text)


def _refuse_constant(name):
    return _Unrepresentable(name)


def _has_lone_surrogate(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _path(parts):
    return ".".join(str(part) for part in parts) or "(body)"


def _check(document, look_for_surrogates):
    """Walk the parsed document without recursion (its depth is what is being checked)."""
    stack = [(document, ())]
    while stack:
        value, where = stack.pop()
        if len(where) > MAX_JSON_DEPTH:
            raise JSONBodyError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
                                {_path(where[:MAX_JSON_DEPTH]): [f"Nested deeper than {MAX_JSON_DEPTH} levels."]})
        if isinstance(value, _Unrepresentable):
            raise JSONBodyError(
                f"{_path(where)}: {value.text} is out of range (whole numbers must fit in 64 bits; "
                "numbers must be finite)",
                {_path(where): ["Number out of range: whole numbers must be between -2^63 and 2^63-1, "
                                "numbers finite."]})
        if isinstance(value, dict):
            for key, item in value.items():
                if look_for_surrogates and _has_lone_surrogate(key):
                    raise JSONBodyError(f"{_path(where)}: a key is not valid Unicode (lone surrogate)",
                                        {_path(where): ["Key is not valid Unicode."]})
                stack.append((item, (*where, key)))
        elif isinstance(value, list):
            stack.extend((item, (*where, index)) for index, item in enumerate(value))
        elif look_for_surrogates and isinstance(value, str) and _has_lone_surrogate(value):
            raise JSONBodyError(f"{_path(where)}: not valid Unicode (lone surrogate)",
                                {_path(where): ["Not valid Unicode."]})


class SafeJSONProvider(DefaultJSONProvider):
    def loads(self, s, **kwargs):
        text = s.decode("utf-8") if isinstance(s, (bytes, bytearray)) else s
        try:
            document = json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                                  parse_constant=_refuse_constant, **kwargs)
        except RecursionError:
            raise JSONBodyError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
                                {"(body)": [f"Nested deeper than {MAX_JSON_DEPTH} levels."]}) from None
        # Lone surrogates can only arrive as \\uD800-style escapes: bodies without one skip that check.
        _check(document, look_for_surrogates=bool(_SURROGATE_ESCAPE.search(text)))
        return document


def _too_large():
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return PayloadTooLarge(f"Request body too large: the limit is {limit} bytes")


def _valid_utf8(raw):
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_request():
    """Before any view: refuse what no view should read. Never reads more than MAX_CONTENT_LENGTH."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise _too_large()
    # Werkzeug decodes the path and query with replacement characters; a client that sent invalid
    # UTF-8 (or an encoded surrogate) gets told instead of having its input silently altered.
    if not _valid_utf8(unquote_to_bytes(request.query_string)):
        raise BadRequest("The query string is not valid UTF-8", errors={"query": ["Not valid UTF-8."]})
    if not _valid_utf8(request.environ.get("PATH_INFO", "").encode("latin-1", "replace")):
        raise BadRequest("The path is not valid UTF-8")
    if not request.is_json:
        return
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise _too_large() from None
    if request.content_length is None and len(body) >= limit:
        # A chunked body has no Content-Length: Werkzeug stops reading it at the limit and
        # hands back that much, so a body that filled it is refused rather than cut short.
        raise _too_large()
    if not body.strip():
        return
    try:
        current_app.json.loads(body)
    except JSONBodyError as exc:
        raise BadRequest(f"Invalid JSON body: {exc}", errors=exc.errors) from None
    except UnicodeDecodeError:
        raise BadRequest("Invalid JSON body: not valid UTF-8", errors={"json": ["Not valid UTF-8."]}) from None
    except ValueError as exc:
        raise BadRequest(f"Invalid JSON body: {exc}", errors={"json": ["Invalid JSON body."]}) from None


def init_app(app):
    app.json = SafeJSONProvider(app)
    app.before_request(check_request)
