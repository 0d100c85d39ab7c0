"""Which source answers which question, and the queries each is read with."""
from datetime import date

import pytest
from bson import ObjectId

from backend.admin import pipelines, sources
from backend.admin.pipelines import RAW

USER, ORG = ObjectId(), ObjectId()


def test_match_filters_the_date_string_and_only_raw_needs_is_active():
    assert pipelines.match(RAW, date(2024, 1, 1), date(2024, 1, 31), {"userId": USER, "provider": None}) == {
        "$match": {"isActive": True, "date": {"$gte": "2024-01-01", "$lte": "2024-01-31"}, "userId": USER}
    }
    assert pipelines.match("daily") == {"$match": {}}
    assert pipelines.match(RAW, end=date(2024, 2, 1)) == {"$match": {"isActive": True, "date": {"$lte": "2024-02-01"}}}
    assert pipelines.match(RAW, filters={"tag": "ci"}) == {"$match": {"isActive": True, "tags": "ci"}}
    assert pipelines.match("daily_totals", filters={"tag": "ci"}) == {"$match": {"tag": "ci"}}


def test_monthly_rollups_are_read_by_whole_months_so_the_query_never_follows_the_range():
    assert sources.month_query(date(2024, 1, 30), date(2024, 2, 2), {"userId": USER, "tag": None}) == {
        "month": {"$gte": "2024-01", "$lte": "2024-02"}, "userId": USER}
    assert sources.month_query(date(1, 1, 1), date(9999, 12, 31)) == {"month": {"$gte": "0001-01", "$lte": "9999-12"}}
    assert sources.month_query(start=date(2024, 1, 30)) == {"month": {"$gte": "2024-01"}}
    assert sources.month_query() == {}


@pytest.mark.parametrize("fields, filters, expected", [
    ((), {}, "daily_totals"),
    (("outcome",), {"orgId": None, "tag": None}, "daily_totals"),
    (("date",), {"provider": "openai", "modelName": "gpt-4o"}, "daily_totals"),
    (("outcome",), {"orgId": ORG}, "org_monthly"),
    (("teamId",), {}, "org_monthly"),
    (("date", "orgId"), {"operation": "test_generation"}, "org_monthly"),
    (("tag",), {}, "tag_monthly"),
    (("date", "outcome"), {"tag": "ci"}, "tag_monthly"),
    (("outcome",), {"tag": "ci", "orgId": ORG}, "org_tag_monthly"),
    (("tag",), {"operation": "test_generation"}, "org_tag_monthly"),
    (("userId",), {}, "user_monthly"),
    (("date", "userId"), {"teamId": ORG}, "user_monthly"),
    ((), {"userId": USER}, "user_monthly"),
    (("userId",), {"operation": "test_generation"}, "user_operation_monthly"),
    (("userId",), {"tag": "ci"}, "user_tag_monthly"),
    (("userId",), {"outcome": "provider_error"}, "daily"),
    (("provider", "modelName"), {"userId": USER}, "daily"),
    (("userId",), {"tag": "ci", "operation": "test_generation"}, RAW),
    (("provider",), {"userId": USER, "tag": "ci"}, RAW),
])
def test_the_smallest_rollup_holding_every_field_answers(fields, filters, expected):
    assert sources.choose("rollup", fields, filters) == expected


def test_raw_is_read_when_asked_for():
    assert sources.choose(RAW, (), {}) == RAW


def test_a_rollup_counting_calls_per_tag_answers_only_questions_about_tags():
    for rollup in sources.ROLLUPS:
        if rollup.fan_out is not None:
            fields = tuple(set(rollup.key) - {"date", "month", rollup.fan_out[1]})
            assert sources.choose("rollup", fields, {}) != rollup.name


def test_the_ledger_counts_a_call_under_each_tag_or_only_under_the_one_filtered():
    assert pipelines.group_pipeline(RAW, ("tag",)) == [
        {"$match": {"isActive": True}}, {"$unwind": "$tags"},
        {"$group": {"_id": {"tag": "$tags"}, **pipelines._sums(RAW)}}]
    filtered = pipelines.group_pipeline(RAW, ("tag",), filters={"tag": "ci"})
    assert filtered[:3] == [{"$match": {"isActive": True, "tags": "ci"}}, {"$unwind": "$tags"},
                            {"$match": {"tags": "ci"}}]


def test_groups_by_user_carry_the_email_and_rollups_sum_their_request_counts():
    stage = pipelines.group_pipeline("daily", ("date", "userId"))[-1]["$group"]
    assert stage["_id"] == {"date": "$date", "userId": "$userId"}
    assert stage["userEmail"] == {"$max": "$userEmail"} and stage["totalRequests"] == {"$sum": "$requests"}
    assert pipelines.group_pipeline(RAW, ())[-1]["$group"]["totalRequests"] == {"$sum": 1}
