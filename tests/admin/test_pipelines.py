from datetime import date

from bson import ObjectId

from backend.admin import pipelines
from backend.admin.pipelines import DAILY, RAW


def test_match_filters_the_date_string_and_only_raw_needs_is_active():
    user = ObjectId()
    assert pipelines.match(RAW, date(2024, 1, 1), date(2024, 1, 31), {"userId": user, "provider": None}) == {
        "$match": {"isActive": True, "date": {"$gte": "2024-01-01", "$lte": "2024-01-31"}, "userId": user}
    }
    assert pipelines.match(DAILY) == {"$match": {}}
    assert pipelines.match(RAW, end=date(2024, 2, 1)) == {"$match": {"isActive": True, "date": {"$lte": "2024-02-01"}}}


def test_user_month_query_reads_whole_months_touched_so_its_size_never_follows_the_range():
    user = ObjectId()
    query, projection = pipelines.user_month_query(date(2024, 1, 30), date(2024, 2, 2), user)
    assert query == {"month": {"$gte": "2024-01", "$lte": "2024-02"}, "userId": user}
    assert projection == {"_id": 0, "userId": 1, "userEmail": 1, "days": 1}
    _, widest = pipelines.user_month_query(date(1, 1, 1), date(9999, 12, 31))
    assert widest == projection
    open_query, open_projection = pipelines.user_month_query(start=date(2024, 1, 30))
    assert open_query == {"month": {"$gte": "2024-01"}}
    assert open_projection == {"_id": 0, "userId": 1, "userEmail": 1, "days": 1}


def test_dashboard_counts_users_by_grouping_twice():
    pipeline = pipelines.dashboard_pipeline()
    assert [list(stage) for stage in pipeline] == [["$match"], ["$group"], ["$group"]]
    assert pipeline[1]["$group"]["_id"] == "$userId"
    assert pipeline[1]["$group"]["totalRequests"] == {"$sum": 1}
    assert pipeline[2]["$group"]["uniqueUsers"] == {"$sum": 1}
    assert pipeline[2]["$group"]["totalRequests"] == {"$sum": "$totalRequests"}
    filtered = pipelines.dashboard_pipeline(filters={"operation": "test_generation", "provider": None})
    assert filtered[0]["$match"] == {"isActive": True, "operation": "test_generation"}


def test_top_users_sorts_with_a_tie_break_then_limits():
    pipeline = pipelines.top_users_pipeline(7)
    assert pipeline[-2] == {"$sort": {"totalTokens": -1, "_id": 1}}
    assert pipeline[-1] == {"$limit": 7}


def test_user_stats_is_scoped_to_the_user():
    user = ObjectId()
    assert pipelines.user_stats_pipeline(user)[0]["$match"] == {"isActive": True, "userId": user}
    assert pipelines.user_stats_pipeline(user, filters={"provider": "gemini", "userId": ObjectId()})[0] == {
        "$match": {"isActive": True, "provider": "gemini", "userId": user}}


def test_breakdown_and_timeseries_group_keys():
    assert pipelines.breakdown_pipeline(DAILY, "model")[1]["$group"]["_id"] == {
        "provider": "$provider", "modelName": "$modelName"}
    assert pipelines.breakdown_pipeline(DAILY, "operation")[1]["$group"]["_id"] == {"operation": "$operation"}
    by_user = pipelines.timeseries_pipeline(DAILY, "user")[1]["$group"]
    assert by_user["_id"] == {"date": "$date", "key": "$userId"} and by_user["label"] == {"$max": "$userEmail"}
    assert pipelines.timeseries_pipeline(RAW, "none")[1]["$group"]["_id"] == {"date": "$date"}
