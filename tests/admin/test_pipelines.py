from datetime import date

from bson import ObjectId

from backend.admin import pipelines


def test_match_filters_active_records_on_the_date_string():
    user = ObjectId()
    assert pipelines.active_match(date(2024, 1, 1), date(2024, 1, 31), user) == {
        "$match": {"isActive": True, "date": {"$gte": "2024-01-01", "$lte": "2024-01-31"}, "userId": user}
    }
    assert pipelines.active_match() == {"$match": {"isActive": True}}
    assert pipelines.active_match(end=date(2024, 2, 1)) == {"$match": {"isActive": True, "date": {"$lte": "2024-02-01"}}}


def test_dashboard_counts_users_by_grouping_twice():
    pipeline = pipelines.dashboard_pipeline()
    assert [list(stage) for stage in pipeline] == [["$match"], ["$group"], ["$group"]]
    assert pipeline[1]["$group"]["_id"] == "$userId"
    assert pipeline[2]["$group"]["uniqueUsers"] == {"$sum": 1}
    assert pipeline[2]["$group"]["totalRequests"] == {"$sum": "$totalRequests"}


def test_top_users_sorts_with_a_tie_break_then_limits():
    pipeline = pipelines.top_users_pipeline(7)
    assert pipeline[-2] == {"$sort": {"totalTokens": -1, "_id": 1}}
    assert pipeline[-1] == {"$limit": 7}


def test_user_stats_is_scoped_to_the_user():
    user = ObjectId()
    pipeline = pipelines.user_stats_pipeline(user)
    assert pipeline[0]["$match"]["userId"] == user
    assert pipeline[1]["$group"]["_id"] is None
