from datetime import date

from bson import ObjectId

from backend.admin import pipelines
from backend.admin.pipelines import DAILY, RAW, USER_MONTHLY


def test_match_filters_the_date_string_and_only_raw_needs_is_active():
    user = ObjectId()
    assert pipelines.match(RAW, date(2024, 1, 1), date(2024, 1, 31), {"userId": user, "provider": None}) == {
        "$match": {"isActive": True, "date": {"$gte": "2024-01-01", "$lte": "2024-01-31"}, "userId": user}
    }
    assert pipelines.match(DAILY) == {"$match": {}}
    assert pipelines.match(RAW, end=date(2024, 2, 1)) == {"$match": {"isActive": True, "date": {"$lte": "2024-02-01"}}}


def test_user_monthly_rows_unwind_the_days_of_the_months_in_range():
    stages = pipelines.dashboard_pipeline(USER_MONTHLY, date(2024, 1, 15), date(2024, 3, 2))
    assert stages[0] == {"$match": {"month": {"$gte": "2024-01", "$lte": "2024-03"}}}
    assert stages[1]["$project"]["day"] == {"$objectToArray": "$days"}
    assert stages[2] == {"$unwind": "$day"}
    assert stages[3] == {"$match": {"day.k": {"$gte": "2024-01-15", "$lte": "2024-03-02"}}}
    assert stages[4]["$group"]["totalRequests"] == {"$sum": "$day.v.requests"}


def test_dashboard_counts_users_by_grouping_twice():
    pipeline = pipelines.dashboard_pipeline(RAW)
    assert [list(stage) for stage in pipeline] == [["$match"], ["$group"], ["$group"]]
    assert pipeline[1]["$group"]["_id"] == "$userId"
    assert pipeline[1]["$group"]["totalRequests"] == {"$sum": 1}
    assert pipeline[2]["$group"]["uniqueUsers"] == {"$sum": 1}
    assert pipeline[2]["$group"]["totalRequests"] == {"$sum": "$totalRequests"}


def test_top_users_sorts_with_a_tie_break_then_limits():
    for source in (RAW, USER_MONTHLY):
        pipeline = pipelines.top_users_pipeline(source, 7)
        assert pipeline[-2] == {"$sort": {"totalTokens": -1, "_id": 1}}
        assert pipeline[-1] == {"$limit": 7}


def test_user_stats_is_scoped_to_the_user():
    user = ObjectId()
    assert pipelines.user_stats_pipeline(RAW, user)[0]["$match"]["userId"] == user
    assert pipelines.user_stats_pipeline(USER_MONTHLY, user)[0]["$match"]["userId"] == user


def test_breakdown_and_timeseries_group_keys():
    assert pipelines.breakdown_pipeline(DAILY, "model")[1]["$group"]["_id"] == {
        "provider": "$provider", "modelName": "$modelName"}
    assert pipelines.breakdown_pipeline(DAILY, "operation")[1]["$group"]["_id"] == {"operation": "$operation"}
    by_user = pipelines.timeseries_pipeline(DAILY, "user")[1]["$group"]
    assert by_user["_id"] == {"date": "$date", "key": "$userId"} and by_user["label"] == {"$max": "$userEmail"}
    assert pipelines.timeseries_pipeline(RAW, "none")[1]["$group"]["_id"] == {"date": "$date"}
