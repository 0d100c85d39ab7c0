"""50 concurrent generations at a budget that allows exactly 7 of them."""

import mongomock
import pytest

from backend.db import USAGE, USAGE_DAILY, get_db
from tests.budgets.support import (
    MAX_OUTPUT,
    build,
    generate,
    provider_reporting,
    raced,
    worst_case_tokens,
)
from tests.helpers import bearer, create_user


@pytest.mark.parametrize("instances", [1, 2], ids=["one instance", "two instances, one store"])
def test_exactly_seven_of_fifty_concurrent_requests_fit(make_app, instances):
    per_request = worst_case_tokens()
    transport, provider_calls = provider_reporting(per_request - MAX_OUTPUT)
    store = mongomock.MongoClient(tz_aware=True)
    apps = [build(make_app, transport, store) for _ in range(instances)]
    admin_app = apps[0]
    user = create_user(admin_app, "dev@example.com")
    create_user(admin_app, "root@example.com", role="admin")
    client = admin_app.test_client()
    admin = bearer(client, "root@example.com")
    # Room for 7 worst cases, one token short of 8.
    limit = 8 * per_request - 1
    assert client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": limit},
                      headers=admin).status_code == 200
    headers = bearer(client, "dev@example.com")

    def one_request(number):
        return generate(apps[number % instances].test_client(), headers)

    responses = raced(one_request, 50)

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 7 and statuses.count(429) == 43
    assert len(provider_calls) == 7
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json["data"]["window"] == "day" and refused.json["data"]["limit"] == limit
    with admin_app.app_context():
        db = get_db()
        assert db[USAGE].count_documents({}) == 7
        assert sum(doc["requests"] for doc in db[USAGE_DAILY].find()) == 7
        assert sum(doc["totalTokens"] for doc in db[USAGE_DAILY].find()) == 7 * per_request
    usage = client.get("/api/me/usage", headers=headers).json["data"]["windows"][0]
    assert usage["used"]["tokens"] == 7 * per_request and usage["remaining"]["tokens"] == limit - 7 * per_request
