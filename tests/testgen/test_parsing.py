import json

import pytest

from backend.errors import ProviderError
from backend.testgen.parsing import parse_test_cases

CASE = {"title": "Login works", "description": "d", "preconditions": ["p"], "steps": ["a", "b"],
        "expectedResult": "ok", "priority": "high", "type": "functional"}


@pytest.mark.parametrize("reply", [
    json.dumps({"testCases": [CASE]}),
    "```json\n" + json.dumps({"testCases": [CASE]}) + "\n```",
    "Sure! Here are your test cases:\n```\n" + json.dumps([CASE]) + "\n```\nLet me know.",
    "Here you go: " + json.dumps({"test_cases": [CASE]}) + " Hope this helps.",
])
def test_json_is_found_in_fences_and_prose(reply):
    assert parse_test_cases(reply, 5) == [CASE]


def test_fields_are_normalised():
    raw = {"title": "T", "steps": "one step", "expected_result": "fine", "priority": "URGENT",
           "type": "Security", "extra": 1}
    assert parse_test_cases(json.dumps([raw]), 5) == [{
        "title": "T", "description": "", "preconditions": [], "steps": ["one step"],
        "expectedResult": "fine", "priority": "medium", "type": "security",
    }]


def test_at_most_count_cases_and_untitled_ones_dropped():
    cases = [{"title": f"T{i}"} for i in range(5)] + [{"description": "no title"}]
    assert [c["title"] for c in parse_test_cases(json.dumps(cases), 3)] == ["T0", "T1", "T2"]


@pytest.mark.parametrize("reply", ["I cannot help with that.", "{\"testCases\": []}", "[{\"nope\": 1}]", ""])
def test_an_unreadable_reply_is_a_provider_error(reply):
    with pytest.raises(ProviderError) as raised:
        parse_test_cases(reply, 5)
    assert raised.value.status == 502



@pytest.mark.parametrize("reply", ["[" * 5_000, "{" * 120_000, 'Here: {"x": ' * 20_000,
                                   "[" * 100 + '{"testCases": [{"title": "Deep"'])
def test_deeply_nested_or_broken_replies_are_a_502_not_a_crash(reply):
    with pytest.raises(ProviderError):
        parse_test_cases(reply, 3)


def test_a_value_after_prose_with_stray_braces_is_still_found():
    prose = "Sure! " + "{not json} " * 100 + '{"testCases": [{"title": "Found"}]}'
    assert [case["title"] for case in parse_test_cases(prose, 3)] == ["Found"]
