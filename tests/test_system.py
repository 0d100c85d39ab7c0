import threading
from pathlib import Path

from backend.indexes import INDEXES, ensure_indexes

ROOT = Path(__file__).resolve().parents[1]
SEED_INDEXES = [
    ("userId", "timestamp"), ("userEmail", "timestamp"), ("modelName", "timestamp"), ("date", "userId"),
    ("month", "userId"), ("year", "userId"), ("operation", "timestamp"), ("isActive", "timestamp"),
]


def test_health_is_200_with_the_database_up(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json["data"]["database"] == "up"


def test_health_is_503_when_mongodb_is_unreachable(make_app):
    # A real pymongo client pointed at a closed loopback port.
    app = make_app(MONGO_URI="mongodb://127.0.0.1:1/", MONGO_TIMEOUT_MS=200)
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.json["success"] is False
    assert response.json["message"] == "Database unreachable"
    assert response.json["data"]["database"] == "down"


def test_openapi_document_describes_every_endpoint(client):
    spec = client.get("/docs/openapi.json").json
    assert {
        "/health", "/auth/register", "/auth/login", "/auth/refresh", "/auth/me", "/api/test-generation",
        "/admin/openai/dashboard", "/admin/openai/top-users",
        "/admin/openai/user/{user_id}/stats", "/admin/openai/user/{user_id}/history",
        "/api/estimate-tokens", "/api/token-info", "/api/testcases", "/api/testcases/{case_id}",
        "/api/testcases/{case_id}/full", "/api/testcases/generate-with-ai",
        "/api/testcases/generate-and-save-with-ai", "/admin/openai/timeseries", "/admin/openai/breakdown",
        "/admin/openai/usage", "/admin/openai/export",
    } <= set(spec["paths"])
    generation = spec["paths"]["/api/test-generation"]["post"]
    body = generation["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    assert {"stream", "includeTokenUsage", "provider", "useRAG"} <= set(spec["components"]["schemas"][body]["properties"])
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    params = {p["name"] for p in spec["paths"]["/admin/openai/top-users"]["get"]["parameters"]}
    assert {"limit", "startDate", "endDate"} <= params


def test_openapi_documents_the_real_error_envelope_statuses_and_content_types(client):
    spec = client.get("/docs/openapi.json").json
    responses = spec["components"]["responses"]
    envelope = spec["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["properties"]) == {"success", "message", "errors", "data"}
    assert set(envelope["required"]) == {"success", "message"}
    assert responses["DEFAULT_ERROR"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope")
    assert "ErrorSchema" not in spec["components"]["schemas"]

    def statuses(path, method):
        return set(spec["paths"][path][method]["responses"])

    assert {"201", "400", "403", "409", "413", "422", "429", "503"} <= statuses("/auth/register", "post")
    assert {"200", "400", "401", "403", "404", "422", "503"} <= statuses("/admin/openai/user/{user_id}/history", "get")
    generation = statuses("/api/test-generation", "post")
    assert {"400", "401", "413", "422", "429", "502", "503", "504"} <= generation
    assert "403" not in generation and "404" not in generation

    def content_types(path, method, status="200"):
        return set(spec["paths"][path][method]["responses"][status]["content"])

    assert content_types("/admin/openai/export", "get") == {"text/csv", "application/x-ndjson"}
    assert content_types("/metrics", "get") == {"text/plain"}
    assert content_types("/api/test-generation", "post") == {"application/json", "text/event-stream"}
    assert content_types("/api/testcases/generate-and-save-with-ai", "post", "201") == {"application/json"}
    assert content_types("/api/testcases/generate-and-save-with-ai", "post", "200") == {"text/event-stream"}


def test_docs_page_loads_its_assets_from_this_server(client):
    page = client.get("/docs/").get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in page and "/docs/openapi.json" in page
    assert "//cdn" not in page and "unpkg" not in page and "jsdelivr" not in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert client.get(f"/docs/assets/{asset}").status_code == 200


def test_unknown_route_wrong_method_and_crash_use_the_envelope(app, client):
    def crash():
        raise RuntimeError("secret internals")

    app.add_url_rule("/crash", "crash", crash)
    missing = client.get("/no/such/route")
    assert missing.status_code == 404 and missing.json["success"] is False
    wrong_method = client.delete("/auth/login")
    assert wrong_method.status_code == 405 and wrong_method.json["success"] is False
    assert "POST" in wrong_method.headers["Allow"]
    crashed = client.get("/crash")
    assert crashed.status_code == 500
    assert crashed.json == {"success": False, "message": "Internal server error"}


def test_index_definitions_are_the_seed_eight_plus_uniques_and_testcases():
    usage = [spec for spec in INDEXES if spec.collection == "openai_token_usage"]
    compound = [tuple(field for field, _ in spec.keys) for spec in usage if len(spec.keys) == 2]
    assert compound == [*SEED_INDEXES, ("orgId", "timestamp"), ("tags", "timestamp")]
    assert [(s.collection, s.keys) for s in INDEXES if s.collection.startswith("testcase")] == [
        ("testcases", (("createdBy", 1), ("createdAt", -1))),
        ("testcases", (("embedding.status", 1), ("embedding.nextAttemptAt", 1))),
        ("testcase_embeddings", (("owner", 1), ("key", 1), ("updatedAt", 1)))]
    assert [(s.collection, [field for field, _ in s.keys]) for s in INDEXES if s.unique] == [
        ("openai_token_usage", ["callId"]), ("users", ["email"]), ("organizations", ["nameKey"]),
        ("teams", ["orgId", "nameKey"]), ("api_keys", ["hash"]),
        ("openai_token_usage_daily_totals", ["date", "provider", "modelName", "operation", "outcome"]),
        ("openai_token_usage_tag_monthly", ["tag", "month", "outcome"]),
        ("openai_token_usage_org_monthly", ["orgId", "month", "teamId", "provider", "modelName", "operation",
                                            "outcome"]),
        ("openai_token_usage_org_tag_monthly", ["orgId", "month", "tag", "teamId", "provider", "modelName",
                                                "operation", "outcome"]),
        ("openai_token_usage_user_monthly", ["userId", "month", "orgId", "teamId", "apiKeyId"]),
        ("openai_token_usage_user_operation_monthly", ["userId", "month", "provider", "operation", "orgId",
                                                       "teamId"]),
        ("openai_token_usage_user_tag_monthly", ["userId", "month", "tag", "orgId", "teamId"]),
        ("openai_token_usage_daily", ["date", "userId", "provider", "modelName", "operation", "outcome", "orgId",
                                      "teamId", "apiKeyId"])]


def test_ensure_indexes_is_idempotent(db):
    db.client.drop_database(db.name)
    first = ensure_indexes(db)
    second = ensure_indexes(db)
    assert [outcome for *_, outcome in first] == ["created"] * len(INDEXES)
    assert [outcome for *_, outcome in second] == ["exists"] * len(INDEXES)
    info = db["openai_token_usage"].index_information()
    assert info["userId_1_timestamp_-1"]["key"] == [("userId", 1), ("timestamp", -1)]
    assert info["callId_1"]["unique"] is True


def test_create_indexes_command_reports_what_it_did(make_app):
    # The script itself refuses the embedded store (tests/ops); the tests' app uses it on purpose.
    app = make_app(AUTO_CREATE_INDEXES=False)
    result = app.test_cli_runner().invoke(args=["create-indexes"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    # The rollup-shapes migration gave each rollup it rebuilt its unique key index at start-up.
    from backend.usage.migrations import RESHAPED
    present = len(RESHAPED)
    assert lines[-1] == f"{len(INDEXES) - present} created, {present} already present"
    assert "created  openai_token_usage.userId_1_timestamp_-1" in lines


def test_cors_allows_only_configured_origins(make_app):
    client = make_app(CORS_ORIGINS=["http://app.test"]).test_client()
    allowed = client.get("/health", headers={"Origin": "http://app.test"})
    other = client.get("/health", headers={"Origin": "http://evil.test"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://app.test"
    assert "Access-Control-Allow-Origin" not in other.headers


def test_apps_built_at_once_each_serve_every_route(make_app):
    # Each app documents and serves its own routes: nothing of one app's set-up lands on the other.
    apps, errors = [], []

    def build():
        try:
            apps.append(make_app())
        except Exception as exc:  # noqa: BLE001  reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(apps) == 3
    for app in apps:
        client = app.test_client()
        assert client.get("/health").status_code == 200
        assert "/api/test-generation" in client.get("/docs/openapi.json").json["paths"]
