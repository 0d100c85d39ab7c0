"""Flask-Limiter: login/register per client IP, generation per user, 429 in the one envelope."""
import pytest

from tests.helpers import PASSWORD, bearer, create_user


@pytest.fixture
def limited(make_app):
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_AUTH="3 per minute", RATELIMIT_GENERATION="2 per minute")
    create_user(app, "dev@example.com")
    create_user(app, "other@example.com")
    return app


def login(client, ip, password=PASSWORD):
    return client.post("/auth/login", json={"email": "dev@example.com", "password": password},
                       environ_base={"REMOTE_ADDR": ip})


def test_login_is_limited_per_client_ip(limited):
    client = limited.test_client()
    statuses = [login(client, "10.0.0.1", "wrong-password").status_code for _ in range(3)]
    refused = login(client, "10.0.0.1")

    assert statuses == [401, 401, 401]
    assert refused.status_code == 429
    assert refused.json == {"success": False, "message": "Too many requests: the limit is 3 per 1 minute. Try again later."}
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "3" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert login(client, "10.0.0.2").status_code == 200


def test_register_is_limited_per_ip(limited):
    client = limited.test_client()
    bodies = [{"email": f"new{i}@example.com", "password": PASSWORD} for i in range(4)]
    statuses = [client.post("/auth/register", json=body, environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code
                for body in bodies]
    assert statuses == [201, 201, 201, 429]


def test_generation_is_limited_per_user_not_per_ip(limited):
    client = limited.test_client()
    dev = bearer(client, "dev@example.com")
    other = bearer(client, "other@example.com")

    def generate(headers):
        return client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=headers).status_code

    assert [generate(dev), generate(dev), generate(dev)] == [200, 200, 429]
    # The AI test-case endpoints count against the same per-user limit.
    assert client.post("/api/testcases/generate-with-ai", json={"prompt": "x", "count": 1},
                       headers=dev).status_code == 429
    assert generate(other) == 200


def test_without_a_token_generation_is_a_401_not_a_rate_limit(limited):
    client = limited.test_client()
    for _ in range(4):
        assert client.post("/api/test-generation", json={"prompt": "x"}).status_code == 401


def test_behind_a_trusted_proxy_the_limit_follows_the_forwarded_client(make_app):
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_AUTH="1 per minute", TRUSTED_PROXY_HOPS=1)
    create_user(app, "dev@example.com")
    client = app.test_client()

    def through_proxy(client_ip):
        return client.post("/auth/login", json={"email": "dev@example.com", "password": PASSWORD},
                           headers={"X-Forwarded-For": client_ip}, environ_base={"REMOTE_ADDR": "10.9.9.9"})

    assert [through_proxy("203.0.113.5").status_code, through_proxy("203.0.113.5").status_code] == [200, 429]
    assert through_proxy("198.51.100.7").status_code == 200
