"""An organization's model allowlist binds its members (and their keys) on every generation and
estimate path, before anything is reserved or called."""
import pytest

from backend.db import BUDGET_COUNTERS, USAGE, get_db
from tests.orgs.support import make_org, member

BODY = {"prompt": "Login with email and password", "count": 1}
PATHS = [("/api/test-generation", {}), ("/api/test-generation", {"stream": True}),
         ("/api/testcases/generate-with-ai", {}), ("/api/testcases/generate-and-save-with-ai", {}),
         ("/api/testcases/generate-and-save-with-ai", {"stream": True}), ("/api/estimate-tokens", {})]


@pytest.fixture
def acme(app, client, admin_headers):
    org = make_org(client, admin_headers, "Acme")
    _, headers = member(app, client, admin_headers, org, "dev@acme.test")
    return org, headers


@pytest.mark.parametrize("path, extra", PATHS, ids=[f"{p} {e}" for p, e in PATHS])
def test_a_model_outside_the_list_is_a_403_naming_the_allowed_ones(app, client, admin_headers, acme, path, extra):
    org, headers = acme
    patched = client.patch(f"/admin/orgs/{org}", json={"allowedModels": ["gpt-4o", "claude-3-5-haiku", "gpt-4o"]},
                           headers=admin_headers)
    assert patched.status_code == 200 and patched.json["data"]["allowedModels"] == ["gpt-4o", "claude-3-5-haiku"]
    key = client.post("/api/keys", json={"name": "ci"}, headers=headers).json["data"]["secret"]
    for caller in (headers, {"Authorization": f"Bearer {key}"}):
        refused = client.post(path, json={**BODY, **extra}, headers=caller)
        assert refused.status_code == 403
        assert refused.json["message"] == ("Model 'demo' is not allowed in your organization (allowed: gpt-4o, "
                                           "claude-3-5-haiku)")
        assert refused.json["data"] == {"allowedModels": ["gpt-4o", "claude-3-5-haiku"]}
    with app.app_context():
        assert get_db()[USAGE].count_documents({}) == 0 and get_db()[BUDGET_COUNTERS].count_documents({}) == 0


def test_a_listed_model_passes_and_null_allows_every_model_again(app, client, admin_headers, acme, user_headers):
    org, headers = acme
    client.patch(f"/admin/orgs/{org}", json={"allowedModels": ["gpt-4o"]}, headers=admin_headers)
    assert client.post("/api/test-generation", json=BODY, headers=headers).status_code == 403
    # Another organization's members are not bound by it.
    assert client.post("/api/test-generation", json=BODY, headers=user_headers).status_code == 200
    client.patch(f"/admin/orgs/{org}", json={"allowedModels": ["demo"]}, headers=admin_headers)
    assert client.post("/api/test-generation", json=BODY, headers=headers).status_code == 200
    reset = client.patch(f"/admin/orgs/{org}", json={"allowedModels": None}, headers=admin_headers)
    assert reset.json["data"]["allowedModels"] is None
    assert client.post("/api/test-generation", json=BODY, headers=headers).status_code == 200


def test_allowlists_are_set_by_platform_admins_and_validated(app, client, admin_headers, acme):
    org, _ = acme
    _, owner = member(app, client, admin_headers, org, "owner@acme.test", role="admin")
    assert client.patch(f"/admin/orgs/{org}", json={"allowedModels": ["demo"]}, headers=owner).status_code == 403
    for bad in ({"allowedModels": []}, {"allowedModels": ["bad model"]}, {"allowedModels": "gpt-4o"},
                {"allowedModels": ["x"] * 101}, {}):
        response = client.patch(f"/admin/orgs/{org}", json=bad, headers=admin_headers)
        assert response.status_code == 422, bad
    assert client.get(f"/admin/orgs/{org}", headers=owner).json["data"]["allowedModels"] is None
