from datetime import timedelta

from flask_jwt_extended import create_access_token

from backend.db import USERS
from tests.helpers import PASSWORD, bearer, create_user


def test_register_creates_a_user_with_role_user(client, db):
    response = client.post("/auth/register", json={"email": "New@Example.com", "password": PASSWORD, "name": "New"})
    assert response.status_code == 201
    body = response.json
    assert body["success"] is True and body["message"] == "User registered successfully"
    assert body["data"]["email"] == "new@example.com"
    assert body["data"]["role"] == "user"
    assert body["data"]["createdAt"].endswith("Z")
    assert "password" not in body["data"] and "passwordHash" not in body["data"]
    stored = db[USERS].find_one({"email": "new@example.com"})
    assert stored["passwordHash"] != PASSWORD


def test_register_rejects_a_taken_email_with_409(client):
    client.post("/auth/register", json={"email": "a@example.com", "password": PASSWORD})
    response = client.post("/auth/register", json={"email": "A@example.com", "password": PASSWORD})
    assert response.status_code == 409
    assert response.json == {
        "success": False, "message": "An account with this email already exists",
        "errors": {"email": ["Already registered."]},
    }


def test_register_validates_email_and_password(client):
    response = client.post("/auth/register", json={"email": "not-an-email", "password": "short"})
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"email", "password"}
    assert response.json["message"].startswith("Invalid request: ")


def test_register_rejects_a_body_that_is_not_json(client):
    response = client.post("/auth/register", data="{oops", content_type="application/json")
    assert response.status_code == 400
    assert response.json["success"] is False


def test_register_is_403_when_closed(make_app):
    client = make_app(ALLOW_REGISTRATION=False).test_client()
    response = client.post("/auth/register", json={"email": "a@example.com", "password": PASSWORD})
    assert response.status_code == 403
    assert response.json["message"] == "Registration is closed"


def test_login_returns_tokens_and_user(app, client):
    create_user(app, "u@example.com")
    response = client.post("/auth/login", json={"email": "u@example.com", "password": PASSWORD})
    assert response.status_code == 200
    data = response.json["data"]
    assert data["accessToken"] and data["refreshToken"]
    assert data["user"]["email"] == "u@example.com"


def test_login_failures_do_not_say_which_part_was_wrong(app, client):
    create_user(app, "u@example.com")
    wrong_password = client.post("/auth/login", json={"email": "u@example.com", "password": "wrong-password"})
    unknown_email = client.post("/auth/login", json={"email": "x@example.com", "password": PASSWORD})
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json == unknown_email.json == {"success": False, "message": "Invalid email or password"}


def test_me_and_refresh(app, client):
    create_user(app, "u@example.com")
    login = client.post("/auth/login", json={"email": "u@example.com", "password": PASSWORD}).json["data"]
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {login['accessToken']}"})
    assert me.status_code == 200 and me.json["data"]["email"] == "u@example.com"

    refreshed = client.post("/auth/refresh", headers={"Authorization": f"Bearer {login['refreshToken']}"})
    assert refreshed.status_code == 200
    new_token = refreshed.json["data"]["accessToken"]
    assert client.get("/auth/me", headers={"Authorization": f"Bearer {new_token}"}).status_code == 200


def test_a_refresh_token_is_not_an_access_token(app, client):
    create_user(app, "u@example.com")
    login = client.post("/auth/login", json={"email": "u@example.com", "password": PASSWORD}).json["data"]
    response = client.get("/auth/me", headers={"Authorization": f"Bearer {login['refreshToken']}"})
    assert response.status_code == 401
    assert response.json["success"] is False


def test_missing_malformed_and_expired_tokens_are_401(app, client):
    user = create_user(app, "u@example.com")
    with app.app_context():
        expired = create_access_token(identity=str(user["_id"]), expires_delta=timedelta(seconds=-1))
    for headers, message in (
        ({}, "Authentication required: send Authorization: Bearer <token>"),
        ({"Authorization": "Bearer not.a.jwt"}, None),
        ({"Authorization": f"Bearer {expired}"}, "Token has expired"),
    ):
        response = client.get("/auth/me", headers=headers)
        assert response.status_code == 401
        assert response.json["success"] is False
        if message:
            assert response.json["message"] == message


def test_a_disabled_account_loses_access(app, client, db):
    create_user(app, "u@example.com")
    headers = bearer(client, "u@example.com")
    db[USERS].update_one({"email": "u@example.com"}, {"$set": {"isActive": False}})
    response = client.get("/auth/me", headers=headers)
    assert response.status_code == 401
    assert response.json["message"] == "The account for this token no longer exists or is disabled"


def test_admin_endpoints_need_an_admin_role_read_from_the_store(app, client, db):
    create_user(app, "u@example.com")
    headers = bearer(client, "u@example.com")
    assert client.get("/admin/openai/dashboard").status_code == 401
    forbidden = client.get("/admin/openai/dashboard", headers=headers)
    assert forbidden.status_code == 403
    assert forbidden.json == {"success": False, "message": "Admin role required"}
    db[USERS].update_one({"email": "u@example.com"}, {"$set": {"role": "admin"}})
    assert client.get("/admin/openai/dashboard", headers=headers).status_code == 200


def test_bootstrap_admin_is_created_at_start_up(make_app):
    app = make_app(ADMIN_EMAIL="root@example.com", ADMIN_PASSWORD="bootstrap-pass")
    client = app.test_client()
    headers = bearer(client, "root@example.com", "bootstrap-pass")
    assert client.get("/admin/openai/dashboard", headers=headers).status_code == 200


def test_cli_creates_then_promotes_an_admin(app, db):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["create-admin", "--email", "ops@example.com", "--password", "long-enough"])
    assert created.exit_code == 0 and created.output.startswith("created: ops@example.com")
    create_user(app, "dev@example.com")
    promoted = runner.invoke(args=["create-admin", "--email", "dev@example.com", "--password", "long-enough"])
    assert promoted.output.startswith("promoted: dev@example.com")
    assert db[USERS].find_one({"email": "dev@example.com"})["role"] == "admin"
    short = runner.invoke(args=["create-admin", "--email", "x@example.com", "--password", "short"])
    assert short.exit_code == 2 and "at least 8 characters" in short.output
