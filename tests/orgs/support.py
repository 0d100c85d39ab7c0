"""Organizations for tests: made through the API, as an admin would."""
from tests.helpers import bearer, create_user


def make_org(client, admin, name):
    response = client.post("/admin/orgs", json={"name": name}, headers=admin)
    assert response.status_code == 201, response.json
    return response.json["data"]["id"]


def make_team(client, admin, org_id, name):
    response = client.post(f"/admin/orgs/{org_id}/teams", json={"name": name}, headers=admin)
    assert response.status_code == 201, response.json
    return response.json["data"]["id"]


def join(client, admin, org_id, email, role="member", team_id=None):
    body = {"email": email, "role": role, **({"teamId": team_id} if team_id else {})}
    response = client.post(f"/admin/orgs/{org_id}/members", json=body, headers=admin)
    assert response.status_code == 201, response.json
    return response.json["data"]


def member(app, client, admin, org_id, email, role="member", team_id=None):
    """A new user in the organization (and team); returns (user document, their headers)."""
    user = create_user(app, email)
    join(client, admin, org_id, email, role, team_id)
    return user, bearer(client, email)
