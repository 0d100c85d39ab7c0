"""Hostile request bodies, query strings and log values: a 4xx envelope, never a 500 or a slow answer."""
import io
import logging
import time

import pytest
from werkzeug.test import run_wsgi_app

from backend import escape_control_characters


def test_a_body_over_max_content_length_is_a_413_before_it_is_read(make_app):
    app = make_app(MAX_CONTENT_LENGTH=2048)
    body = b'{"email": "a@example.com", "password": "' + b"x" * 4096 + b'"}'
    response = app.test_client().post("/auth/login", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.json == {"success": False, "message": "Request body too large: the limit is 2048 bytes"}


def test_the_default_cap_is_one_mebibyte(app, client):
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    response = client.post("/auth/register", data=b" " * (1024 * 1024 + 1), content_type="application/json")
    assert response.status_code == 413


class EndlessBody:
    """A chunked upload that never ends; counts what the app read of it."""

    def __init__(self):
        self.read_bytes = 0

    def read(self, size=-1):
        size = 65536 if size is None or size < 0 else size
        self.read_bytes += size
        return b"[" * size

    readline = read


def test_a_chunked_body_without_content_length_is_read_only_up_to_the_cap(make_app):
    app = make_app(MAX_CONTENT_LENGTH=4096)
    body = EndlessBody()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/auth/login", "QUERY_STRING": "", "SERVER_NAME": "test",
               "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
               "wsgi.errors": io.StringIO(), "wsgi.input": body, "wsgi.input_terminated": True,
               "CONTENT_TYPE": "application/json", "HTTP_TRANSFER_ENCODING": "chunked"}
    chunks, status, _ = run_wsgi_app(app.wsgi_app, environ)
    assert status.startswith("413")
    assert b"the limit is 4096 bytes" in b"".join(chunks)
    assert body.read_bytes <= 4096 + 65536


def test_deep_nesting_is_a_quick_400(client):
    started = time.perf_counter()
    response = client.post("/auth/login", data="[" * 100_000 + "]" * 100_000, content_type="application/json")
    assert time.perf_counter() - started < 2
    assert response.status_code == 400
    assert response.json["message"] == "Invalid JSON body: JSON nested deeper than 64 levels"
    sixty_five = '{"email": "a@example.com", "password": "p", "x": ' + "[" * 65 + "]" * 65 + "}"
    assert client.post("/auth/login", data=sixty_five, content_type="application/json").status_code == 400


@pytest.mark.parametrize("number", ["9223372036854775808", "-9223372036854775809", "9" * 5000, "1e400", "NaN"])
def test_numbers_no_field_can_hold_are_a_400_naming_where_they_are(client, number):
    body = '{"email": "a@example.com", "password": "pw", "extra": {"list": [1, ' + number + "]}}"
    response = client.post("/auth/login", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["success"] is False
    assert response.json["message"].startswith("Invalid JSON body: extra.list.1: ")
    assert "out of range" in response.json["message"]
    assert list(response.json["errors"]) == ["extra.list.1"]


def test_64_bit_integers_still_pass(client):
    body = '{"email": "a@example.com", "password": "pw", "n": 9223372036854775807}'
    # Past the JSON checks: the schema refuses the unknown field, as it always did.
    assert client.post("/auth/login", data=body, content_type="application/json").status_code == 422


@pytest.mark.parametrize("body, where", [
    ('{"email": "a@example.com", "password": "\\ud800"}', "password"),
    ('{"email": "a@example.com", "password": "ok\\udfff"}', "password"),
    ('{"email": "a@example.com", "password": "pw", "\\ud83d": 1}', "(body)"),
])
def test_lone_surrogates_are_a_400(client, body, where):
    for path in ("/auth/login", "/auth/register"):
        response = client.post(path, data=body, content_type="application/json")
        assert response.status_code == 400
        assert list(response.json["errors"]) == [where]
        assert "not valid Unicode" in response.json["message"]


def test_a_surrogate_pair_is_valid_unicode(client):
    body = '{"email": "a@example.com", "password": "emoji \\ud83d\\ude00"}'
    assert client.post("/auth/login", data=body, content_type="application/json").status_code == 401


def test_invalid_utf8_bodies_and_query_strings_are_a_400(client, admin_headers):
    response = client.post("/auth/login", data=b'{"email": "\xff"}', content_type="application/json")
    assert response.status_code == 400 and response.json["success"] is False
    for query in ("startDate=%ED%A0%80", "startDate=%ff", "%c3=1"):
        response = client.get(f"/admin/openai/dashboard?{query}", headers=admin_headers)
        assert response.status_code == 400
        assert response.json == {"success": False, "message": "The query string is not valid UTF-8",
                                 "errors": {"query": ["Not valid UTF-8."]}}


def test_log_messages_never_carry_raw_control_characters(app, caplog):
    with caplog.at_level(logging.INFO, logger="backend"):
        logging.getLogger("backend.test").info("model=%s user=%s", "gpt\nINFO forged: admin login", "a\r\x1b[2Jb")
    record = caplog.records[-1]
    message = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert message == "INFO model=gpt\\nINFO forged: admin login user=a\\r\\x1b[2Jb"
    assert len(message.splitlines()) == 1


def test_escaping_covers_c1_controls_and_unicode_line_separators():
    assert escape_control_characters("a\tb\x00c\x85d\u2028e\x7f") == "a\\tb\\x00c\\x85d\\u2028e\\x7f"
    assert escape_control_characters("plain text, ünïcode ✓") == "plain text, ünïcode ✓"
