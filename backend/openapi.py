"""The served OpenAPI document describes the API as it answers: the error envelope of
backend/errors.py and, per operation, the error statuses it can return.

flask-smorest documents its own error schema ({code, status, message, errors}) and only 422 and
"default"; ErrorStatusesPlugin adds the rest from what each operation is, so a new route is
documented without repeating the rules:
- every operation: 400 (malformed JSON, invalid UTF-8) and 503 (database unavailable);
- with a body: 413 (over MAX_CONTENT_LENGTH);
- with a bearer token: 401, and 403 under /admin/;
- with a path parameter: 404;
- rate-limited by Flask-Limiter: 429;
- whose body accepts `stream` (it calls an LLM): 502 and 504, and a 200 in text/event-stream.
"""
from http import HTTPStatus

from apispec import BasePlugin
from flask_limiter.util import get_qualified_name
from marshmallow import Schema, fields

from backend.extensions import limiter


class ErrorEnvelopeSchema(Schema):
    success = fields.Boolean(required=True, metadata={"description": "always false"})
    message = fields.String(required=True, metadata={"description": "what went wrong, for people"})
    errors = fields.Dict(keys=fields.String(), metadata={"description": "problems by field or body path"})
    data = fields.Raw(allow_none=True, metadata={"description": "details some errors carry (a budget's limit)"})


# One server-sent event (when the body says stream: true): `event` names it, `data` is JSON text.
SSE_EVENT = {"type": "object", "description": "a server-sent event, sent when the body has stream: true",
             "properties": {"event": {"type": "string"}, "data": {"type": "string"}}}


def status_ref(code):
    """The response component flask-smorest registers for a status (its HTTPStatus name)."""
    return HTTPStatus(code).name


class ErrorStatusesPlugin(BasePlugin):
    def __init__(self, app):
        self.app = app
        self.spec = None

    def init_spec(self, spec):
        self.spec = spec

    def _is_rate_limited(self, endpoint):
        view = self.app.view_functions.get(endpoint)
        # Flask-Limiter keeps no public list of decorated views; its manager's map is the only record.
        decorated = getattr(limiter.limit_manager, "_decorated_limits", {})
        return view is not None and get_qualified_name(view) in decorated

    def _body_properties(self, operation):
        schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        name = schema.get("$ref", "").rsplit("/", 1)[-1]
        component = self.spec.components.schemas.get(name, schema) if name else schema
        return component.get("properties", {}) if isinstance(component, dict) else {}

    def operation_helper(self, path=None, operations=None, **kwargs):
        rule = kwargs.get("rule")
        for operation in (operations or {}).values():
            statuses = {400, 503}
            if "requestBody" in operation:
                statuses.add(413)
            if operation.get("security"):
                statuses.add(401)
                if path.startswith("/admin/"):
                    statuses.add(403)
            if "{" in path:
                statuses.add(404)
            if rule is not None and self._is_rate_limited(rule.endpoint):
                statuses.add(429)
            responses = operation.setdefault("responses", {})
            if "stream" in self._body_properties(operation):
                statuses.update((502, 504))
                # A stream always answers 200, even where the JSON answer is a 201.
                ok = 200 if 200 in responses else "200"  # flask-smorest keys its own responses by int
                streamed = responses.setdefault(ok, {"description": "Server-sent events (stream: true)"})
                streamed.setdefault("content", {})["text/event-stream"] = {"schema": SSE_EVENT}
            for status in sorted(statuses):
                if status not in responses:
                    responses.setdefault(str(status), status_ref(status))
