"""Every request to an admin endpoint lands in admin_audit_log; the log is paginated and filterable."""
import logging
import time

import bson

from backend.audit import hook
from backend.db import AUDIT_LOG, get_db
from tests.helpers import bearer, create_user, utc


def entries(app):
    assert hook.flush(app)
    with app.app_context():
        return list(get_db()[AUDIT_LOG].find().sort("time", 1))


def test_admin_requests_are_recorded_with_who_what_and_how_it_ended(app, client, admin_headers):
    admin = entries(app)  # logging in is not an admin request
    assert admin == []
    create_user(app, "dev@example.com")
    user_headers = bearer(client, "dev@example.com")

    client.get("/admin/openai/dashboard?startDate=2026-11-01&endDate=2026-11-22", headers=admin_headers)
    client.get("/admin/openai/top-users?limit=0", headers=admin_headers)
    client.get("/admin/openai/dashboard", headers=user_headers)
    client.get("/admin/openai/dashboard")
    client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=user_headers)
    client.get("/admin/openai/dashboard?startDate=nonsense", headers=admin_headers,
               environ_base={"REMOTE_ADDR": "10.1.2.3"})

    log = entries(app)
    assert [(e["method"], e["path"], e["status"], e["adminEmail"]) for e in log] == [
        ("GET", "/admin/openai/dashboard", 200, "admin@example.com"),
        ("GET", "/admin/openai/top-users", 422, "admin@example.com"),
        ("GET", "/admin/openai/dashboard", 403, "dev@example.com"),
        ("GET", "/admin/openai/dashboard", 401, None),
        ("GET", "/admin/openai/dashboard", 422, "admin@example.com"),
    ]
    assert log[0]["query"] == {"startDate": ["2026-11-01"], "endDate": ["2026-11-22"]}
    assert log[1]["query"] == {"limit": ["0"]}
    assert log[0]["ip"] == "127.0.0.1" and log[4]["ip"] == "10.1.2.3"
    assert log[0]["adminId"] is not None and log[3]["adminId"] is None
    assert log[0]["time"].tzinfo is not None and log[0]["date"] == log[0]["time"].strftime("%Y-%m-%d")


def test_audit_log_endpoint_pages_and_filters(app, client, admin_headers):
    other = create_user(app, "second-admin@example.com", role="admin")
    other_headers = bearer(client, "second-admin@example.com")
    for _ in range(3):
        client.get("/admin/openai/dashboard", headers=admin_headers)
    client.get("/admin/openai/top-users", headers=other_headers)
    with app.app_context():
        get_db()[AUDIT_LOG].insert_one({"adminId": other["_id"], "adminEmail": other["email"], "method": "GET",
                                        "path": "/admin/openai/export", "query": {}, "status": 200,
                                        "ip": "127.0.0.1", "time": utc(2026, 1, 15, 9), "date": "2026-01-15"})

    first = client.get("/admin/openai/audit-log?limit=2", headers=admin_headers).json["data"]
    assert (first["total"], first["page"], first["limit"], first["totalPages"]) == (5, 1, 2, 3)
    assert [e["path"] for e in first["data"]] == ["/admin/openai/top-users", "/admin/openai/dashboard"]
    assert first["data"][0]["adminEmail"] == "second-admin@example.com"
    # The first read is in the log now too: 6 entries, the oldest last.
    last = client.get("/admin/openai/audit-log?limit=2&page=3", headers=admin_headers).json["data"]
    assert last["total"] == 6 and last["data"][-1]["time"] == "2026-01-15T09:00:00.000Z"
    assert [e["path"] for e in last["data"]] == ["/admin/openai/dashboard", "/admin/openai/export"]

    mine = client.get(f"/admin/openai/audit-log?adminId={other['_id']}", headers=admin_headers).json["data"]
    assert [e["path"] for e in mine["data"]] == ["/admin/openai/top-users", "/admin/openai/export"]
    january = client.get("/admin/openai/audit-log?startDate=2026-01-01&endDate=2026-01-31",
                         headers=admin_headers).json["data"]
    assert [e["path"] for e in january["data"]] == ["/admin/openai/export"]

    # Reading the log is itself audited, after the answer is built.
    assert client.get("/admin/openai/audit-log", headers=admin_headers).json["data"]["total"] == 9


def test_audit_log_validation_and_access(app, client, admin_headers):
    create_user(app, "dev@example.com")
    assert client.get("/admin/openai/audit-log", headers=bearer(client, "dev@example.com")).status_code == 403
    assert client.get("/admin/openai/audit-log?adminId=zzz", headers=admin_headers).status_code == 422
    assert client.get("/admin/openai/audit-log?limit=101", headers=admin_headers).status_code == 422
    bad_range = client.get("/admin/openai/audit-log?startDate=2026-02-01&endDate=2026-01-01", headers=admin_headers)
    assert bad_range.status_code == 422


def test_a_failing_audit_write_never_breaks_the_admin_request(client, admin_headers, monkeypatch, caplog):
    def broken(db, entry):
        raise RuntimeError("audit store full")

    monkeypatch.setattr(hook, "insert_entry", broken)
    with caplog.at_level(logging.ERROR, logger="backend.audit.hook"):
        response = client.get("/admin/openai/dashboard", headers=admin_headers)
        assert hook.flush(client.application)
    assert response.status_code == 200
    assert "Audit log write failed for GET /admin/openai/dashboard" in caplog.text


def test_the_admin_page_files_are_not_audited_but_its_api_calls_are(app, client, admin_headers):
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/assets/admin.js").status_code == 200
    assert entries(app) == []
    client.get("/admin/openai/dashboard", headers=admin_headers)
    assert [e["path"] for e in entries(app)] == ["/admin/openai/dashboard"]


def test_an_unauthenticated_flood_of_query_parameters_writes_a_bounded_entry(app, client):
    query = "&".join(f"param{n:02d}{'k' * 200}={'v' * 2000}" for n in range(60))
    assert client.get(f"/admin/openai/dashboard?{query}").status_code == 401
    [entry] = entries(app)
    assert entry["truncated"] is True
    assert len(entry["query"]) == hook.MAX_QUERY_KEYS
    assert all(len(key) <= hook.MAX_KEY_LENGTH for key in entry["query"])
    assert all(len(value) <= hook.MAX_VALUE_LENGTH for values in entry["query"].values() for value in values)
    assert len(bson.encode(entry)) < 8 * 1024


def test_an_ordinary_query_is_kept_whole_and_not_marked(app, client, admin_headers):
    client.get("/admin/openai/dashboard?startDate=2026-01-01&operation=a.b&operation=$x", headers=admin_headers)
    [entry] = entries(app)
    assert "truncated" not in entry
    assert entry["query"]["startDate"] == ["2026-01-01"]
    page = client.get("/admin/openai/audit-log", headers=admin_headers).json["data"]["data"]
    assert page[-1]["truncated"] is False


def test_audit_writes_never_delay_the_answer_when_the_database_is_down(make_app):
    # Nothing listens on port 9: every database call waits MONGO_TIMEOUT_MS for a server.
    app = make_app(MONGO_URI="mongodb://127.0.0.1:9/?directConnection=true", MONGO_TIMEOUT_MS=3000,
                   AUTO_CREATE_INDEXES=False)
    client = app.test_client()
    started = time.perf_counter()
    response = client.get("/admin/openai/dashboard", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401
    assert time.perf_counter() - started < 1.5
