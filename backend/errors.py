"""One JSON error envelope for every failure: {success: false, message, errors?, data?}."""
import logging

from flask import current_app, jsonify
from pymongo.errors import ConnectionFailure
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class APIError(Exception):
    status = 500
    default_message = "Internal server error"

    def __init__(self, message=None, errors=None, data=None, headers=None):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.errors = errors
        self.data = data
        self.headers = headers or {}


class BadRequest(APIError):
    status = 400
    default_message = "Bad request"


class Unauthorized(APIError):
    status = 401
    default_message = "Authentication required"


class Forbidden(APIError):
    status = 403
    default_message = "You do not have access to this resource"


class NotFound(APIError):
    status = 404
    default_message = "Not found"


class Conflict(APIError):
    status = 409
    default_message = "Conflict"


class PayloadTooLarge(APIError):
    status = 413
    default_message = "Request body too large"


class UnprocessableEntity(APIError):
    status = 422
    default_message = "The request could not be processed"


class TooManyRequests(APIError):
    status = 429
    default_message = "Too many requests"


class ProviderError(APIError):
    """The LLM provider failed or answered with something unusable."""

    status = 502
    default_message = "The language model provider failed"


class ProviderUnavailable(APIError):
    status = 503
    default_message = "The language model provider is unavailable"


class ProviderTimeout(APIError):
    status = 504
    default_message = "The language model provider timed out"


class ServiceUnavailable(APIError):
    status = 503
    default_message = "Service unavailable"


def error_response(status, message, errors=None, data=None, headers=None):
    body = {"success": False, "message": message}
    if errors:
        body["errors"] = errors
    if data is not None:
        body["data"] = data
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _validation_messages(exc):
    """webargs reports {location: {field: [messages]}}; callers want {field: [messages]}."""
    messages = (getattr(exc, "data", None) or {}).get("messages") or {}
    flat = {}
    for location, location_errors in messages.items():
        if isinstance(location_errors, dict):
            flat.update(location_errors)
        else:
            flat[location] = location_errors
    return flat


def _summarise(errors, prefix=""):
    """One line: "field: problem; other.0: problem", nested fields (a list's items, a dict's keys
    and values) named by their path."""
    parts = []
    for field, problems in errors.items():
        path = f"{prefix}{field}"
        if isinstance(problems, dict):
            parts.append(_summarise(problems, f"{path}."))
        elif isinstance(problems, list):
            parts.append(f"{path}: " + " ".join(str(p) for p in problems))
        else:
            parts.append(f"{path}: {problems}")
    return "; ".join(parts)


def handle_api_error(exc):
    return error_response(exc.status, exc.message, exc.errors, exc.data, exc.headers)


def handle_http_exception(exc):
    errors = _validation_messages(exc)
    if errors:
        return error_response(exc.code, f"Invalid request: {_summarise(errors)}", errors)
    headers = dict(exc.get_headers()) if exc.code == 405 else {}
    headers.pop("Content-Type", None)
    message = exc.description or exc.name
    if exc.code == 413:
        message = f"Request body too large: the limit is {current_app.config['MAX_CONTENT_LENGTH']} bytes"
    if exc.code == 429:
        # Flask-Limiter's description is the limit itself ("10 per 1 minute"); it adds Retry-After.
        message = f"Too many requests: the limit is {message}. Try again later."
    return error_response(exc.code, message, headers=headers)


DATABASE_DOWN = "The database is unavailable; please try again shortly"


def as_api_error(exc):
    """The APIError a failure is answered with where no handler runs (a stream's error event):
    itself, a 503 for a database that cannot be reached, else a plain 500."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ConnectionFailure):
        log.error("Database unavailable: %s", exc)
        return ServiceUnavailable(DATABASE_DOWN)
    log.error("Unexpected error", exc_info=exc)
    return APIError()


def handle_database_down(exc):
    log.error("Database unavailable: %s", exc)
    return error_response(503, DATABASE_DOWN, headers={"Retry-After": "5"})


def handle_unexpected(exc):
    log.exception("Unhandled error")
    return error_response(500, "Internal server error")


def register_error_handlers(app):
    # Registered after flask-smorest's Api so ours replace its HTTPException handler.
    app.register_error_handler(APIError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    # Unreachable, timed out or lost connection (AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError).
    app.register_error_handler(ConnectionFailure, handle_database_down)
    app.register_error_handler(Exception, handle_unexpected)
