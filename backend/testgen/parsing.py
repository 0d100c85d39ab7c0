"""Read test cases out of a model's reply: JSON, possibly fenced or wrapped in prose."""
import json
import re

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from backend.errors import ProviderError
from backend.testgen.prompts import PRIORITIES, TYPES

# A generated case is cut to what a saved case may hold (backend/testcases/schemas.py).
MAX_TITLE_CHARS, MAX_TEXT_CHARS, MAX_ITEMS, MAX_ITEM_CHARS = 300, 10_000, 50, 2_000
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_LIST_KEYS = ("testCases", "test_cases", "tests", "cases")


class GeneratedCaseSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    title = fields.String(required=True, validate=validate.Length(min=1, max=MAX_TITLE_CHARS))
    description = fields.String(load_default="")
    preconditions = fields.List(fields.String(), load_default=list)
    steps = fields.List(fields.String(), load_default=list)
    expectedResult = fields.String(load_default="")
    priority = fields.String(load_default="medium")
    type = fields.String(load_default="functional")

    @pre_load
    def _tolerate_model_variations(self, data, **kwargs):
        if not isinstance(data, dict):
            raise ValidationError("A test case must be an object.")
        data = dict(data)
        if "expectedResult" not in data and "expected_result" in data:
            data["expectedResult"] = data.pop("expected_result")
        for key in ("preconditions", "steps"):
            if isinstance(data.get(key), str):
                data[key] = [data[key]]
            if isinstance(data.get(key), list):
                data[key] = [str(item)[:MAX_ITEM_CHARS] for item in data[key][:MAX_ITEMS]]
        for key, allowed, default in (("priority", PRIORITIES, "medium"), ("type", TYPES, "functional")):
            value = str(data.get(key) or default).strip().lower()
            data[key] = value if value in allowed else default
        for key in ("description", "expectedResult"):
            if data.get(key) is None:
                data.pop(key, None)
            else:
                data[key] = str(data[key])[:MAX_TEXT_CHARS]
        if isinstance(data.get("title"), str):
            data["title"] = data["title"][:MAX_TITLE_CHARS]
        return data


_CASE = GeneratedCaseSchema()


# Where a JSON value inside prose may start, and how many such places are tried: a reply is
# read in time linear in its length, whatever it holds.
_VALUE_START = re.compile(r'[{\[]\s*["{\[]')
MAX_EMBEDDED_TRIES = 32


def _json_candidates(text):
    yield text
    for match in _FENCE.finditer(text):
        yield match.group(1)
    decoder = json.JSONDecoder()
    for tries, match in enumerate(_VALUE_START.finditer(text)):
        if tries == MAX_EMBEDDED_TRIES:
            return
        try:
            value, _end = decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            continue
        yield value


def _case_list(value):
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in _LIST_KEYS:
            if isinstance(value.get(key), list):
                return value[key]
        if "title" in value:
            return [value]
    return None


def parse_test_cases(text, count):
    """The first JSON value in the reply that holds test cases, normalised; at most `count`."""
    for candidate in _json_candidates(text.strip()):
        if isinstance(candidate, str):
            try:
                candidate = json.loads(candidate)
            except (ValueError, RecursionError):
                continue
        cases = _case_list(candidate)
        if cases is None:
            continue
        parsed = []
        for case in cases:
            try:
                parsed.append(_CASE.load(case))
            except ValidationError:
                continue
        if parsed:
            return parsed[:count]
    raise ProviderError("The model's reply could not be read as test cases (expected JSON with a testCases list)")
