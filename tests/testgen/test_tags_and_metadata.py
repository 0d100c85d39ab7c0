"""Tags and metadata on generation requests: validated, stored on the ledger record, and counted
by the tag rollup exactly as the ledger says (a call counts once under each of its tags)."""
import json
import random

import pytest

from backend.db import USAGE, get_db
from backend.usage import rollups
from tests.helpers import (
    create_user,
    insert_records,
    read_events,
    usage_record,
    utc,
)

PATHS = ("/api/test-generation", "/api/testcases/generate-with-ai", "/api/testcases/generate-and-save-with-ai")


def _post(client, headers, path="/api/test-generation", **body):
    return client.post(path, json={"prompt": "Login with email", "count": 1, **body}, headers=headers)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_tags_and_metadata_reach_the_record_on_every_path(app, client, user_headers, path, stream):
    response = _post(client, user_headers, path, stream=stream, tags=["ci", "feature:login", "ci"],
                     metadata={"pipeline": "nightly", "commit": "abc123", "env": ""})
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    if stream:
        assert read_events(response)[-1][0] == "done"
    with app.app_context():
        record = get_db()[USAGE].find_one()
    assert record["tags"] == ["ci", "feature:login"]
    assert record["metadata"] == {"pipeline": "nightly", "commit": "abc123", "env": ""}


@pytest.mark.parametrize("body, field", [
    ({"tags": [f"t{i}" for i in range(11)]}, "tags"),
    ({"tags": [""]}, "tags"),
    ({"tags": ["x" * 65]}, "tags"),
    ({"tags": ["has space"]}, "tags"),
    ({"tags": ["ci\n"]}, "tags"),
    ({"model": "gpt-4o-mini\n"}, "model"),
    ({"tags": ["emoji\U0001f600"]}, "tags"),
    ({"tags": "ci"}, "tags"),
    ({"tags": [5]}, "tags"),
    ({"metadata": {f"k{i}": "v" for i in range(21)}}, "metadata"),
    ({"metadata": {"k": "v" * 201}}, "metadata"),
    ({"metadata": {"a.b": "v"}}, "metadata"),
    ({"metadata": {"$where": "v"}}, "metadata"),
    ({"metadata": {"": "v"}}, "metadata"),
    ({"metadata": {"pipeline\n": "v"}}, "metadata"),
    ({"metadata": {"k": 5}}, "metadata"),
    ({"metadata": {"k": {"nested": "v"}}}, "metadata"),
    ({"metadata": ["k"]}, "metadata"),
    ({"metadata": {"k": "\u202e\u0000x\n=1"}}, "metadata"),
    ({"metadata": {"k": "invoice\u200b"}}, "metadata"),
    ({"metadata": {"k": "right-to-left \u202e override"}}, "metadata"),
    ({"metadata": {"k": "tab\there"}}, "metadata"),
    *(({"metadata": {"k": f"a{blank}b"}}, "metadata") for blank in (
        "\u3164", "\uffa0", "\u115f", "\u034f", "\ufe0f", "\U000e0100", "\u180b", "\u17b4", "\u2800")),
])
def test_bad_tags_and_metadata_are_422s_naming_the_field(app, client, user_headers, body, field):
    response = _post(client, user_headers, **body)
    assert response.status_code == 422 and response.json["success"] is False
    assert field in response.json["errors"]
    with app.app_context():
        assert get_db()[USAGE].count_documents({}) == 0


def test_a_metadata_value_with_invisible_characters_is_named_in_the_error(client, user_headers):
    response = _post(client, user_headers, metadata={"ok": "fine", "k": "\u202e\u0000x\n=1"})
    assert response.status_code == 422
    assert response.json["errors"] == {"metadata": {"k": {"value": [
        "Must not contain control, format or invisible characters."]}}}
    assert "metadata.k" in response.json["message"]


def test_estimate_tokens_takes_the_generation_body_and_validates_its_tags_the_same_way(client, user_headers):
    plain = _post(client, user_headers, "/api/estimate-tokens")
    assert plain.status_code == 200, plain.json
    same_body = _post(client, user_headers, "/api/estimate-tokens", stream=True, includeTokenUsage=False,
                      tags=["ci"], metadata={"pipeline": "nightly"})
    assert same_body.status_code == 200 and same_body.json["data"] == plain.json["data"]
    bad = _post(client, user_headers, "/api/estimate-tokens", tags=["ci", "has space"])
    assert bad.status_code == 422 and bad.json["errors"] == {"tags": {"1": ["1-64 characters of A-Z a-z 0-9 _ . : -"]}}
    assert bad.json["message"] == "Invalid request: tags.1: 1-64 characters of A-Z a-z 0-9 _ . : -"
    long_value = _post(client, user_headers, "/api/estimate-tokens", metadata={"k": "v" * 201})
    assert long_value.json["message"] == "Invalid request: metadata.k.value: Longer than maximum length 200."


def test_ten_tags_and_twenty_keys_are_accepted(app, client, user_headers):
    tags = [f"t{i}.x:y-z_{i}" for i in range(10)]
    metadata = {f"key_{i}:x-y": "v" * 200 for i in range(20)}
    assert _post(client, user_headers, tags=tags, metadata=metadata).status_code == 200
    with app.app_context():
        record = get_db()[USAGE].find_one()
    assert record["tags"] == tags and record["metadata"] == metadata


def _tagged_ledger(app, seed):
    """Random records over three users, four tags (0-3 per record) and two months."""
    rng = random.Random(seed)
    users = [create_user(app, f"u{n}@example.com") for n in range(3)]
    records = []
    for _ in range(40):
        record = usage_record(rng.choice(users), utc(2026, rng.choice((10, 11)), rng.randint(1, 28), 12),
                              rng.randint(1, 500), rng.randint(1, 500), round(rng.random() / 1000, 10),
                              model=rng.choice(("gpt-4o", "gpt-4o-mini")))
        record["tags"] = rng.sample(["ci", "nightly", "feature:login", "env:prod"], rng.randint(0, 3))
        records.append(record)
    insert_records(app, records)
    return records


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tag_breakdowns_and_filters_equal_the_ledger(app, client, admin_headers, seed):
    records = _tagged_ledger(app, seed)
    expected = {}
    for record in records:
        for tag in record["tags"]:
            totals = expected.setdefault(tag, {"totalTokens": 0, "totalRequests": 0, "totalCost": 0.0})
            totals["totalTokens"] += record["totalTokens"]
            totals["totalRequests"] += 1
            totals["totalCost"] += record["cost"]
    all_tokens = sum(record["totalTokens"] for record in records)  # untagged calls included
    for totals in expected.values():
        totals["totalCost"] = round(totals["totalCost"], 10)
        totals["share"] = round(totals["totalTokens"] / all_tokens, 6)

    for source in ("rollup", "raw"):
        rows = client.get(f"/admin/openai/breakdown?by=tag&source={source}", headers=admin_headers).json["data"]
        assert {row["key"]: {k: row[k] for k in ("totalTokens", "totalRequests", "totalCost", "share")}
                for row in rows} == expected
        for tag, totals in expected.items():
            # Narrowed to one tag, by=tag answers that tag's row only.
            rows = client.get(f"/admin/openai/breakdown?by=tag&tag={tag}&source={source}",
                              headers=admin_headers).json["data"]
            assert [(row["key"], row["totalTokens"]) for row in rows] == [(tag, totals["totalTokens"])]
    for totals in expected.values():
        del totals["share"]
    for tag, totals in expected.items():
        for source in ("rollup", "raw"):
            dashboard = client.get(f"/admin/openai/dashboard?tag={tag}&source={source}", headers=admin_headers)
            data = dashboard.json["data"]
            assert {k: data[k] for k in ("totalTokens", "totalRequests", "totalCost")} == totals
        logs = client.get(f"/admin/openai/usage?tag={tag}&limit=100", headers=admin_headers).json["data"]
        assert logs["total"] == totals["totalRequests"] and all(tag in row["tags"] for row in logs["data"])
        series = client.get(f"/admin/openai/timeseries?tag={tag}&startDate=2026-10-01&endDate=2026-11-30",
                            headers=admin_headers).json["data"]["series"][0]["totals"]
        assert series["totalTokens"] == totals["totalTokens"]
        csv_rows = client.get(f"/admin/openai/export?tag={tag}", headers=admin_headers).get_data(as_text=True)
        assert len(csv_rows.strip().splitlines()) == 1 + totals["totalRequests"]
    with app.app_context():
        assert rollups.check(get_db()) == []


def test_exported_tags_and_metadata(app, client, admin_headers, user_headers):
    _post(client, user_headers, tags=["ci", "=cmd"[1:]], metadata={"note": "=HYPERLINK(1)", "b": "x"})
    ndjson = client.get("/admin/openai/export?format=ndjson", headers=admin_headers).get_data(as_text=True)
    row = json.loads(ndjson.splitlines()[0])
    assert row["tags"] == ["ci", "cmd"] and row["metadata"] == {"note": "=HYPERLINK(1)", "b": "x"}
    csv_text = client.get("/admin/openai/export", headers=admin_headers).get_data(as_text=True)
    assert 'ci cmd,"{""b"":""x"",""note"":""=HYPERLINK(1)""}"' in csv_text
