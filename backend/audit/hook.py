"""Records every request to the admin API, whoever made it and however it ended.

The admin page (/admin/ and its static assets) reads no data itself, so it is not logged;
every call it makes to /admin/openai/* is."""
import logging

from flask import request
from flask_jwt_extended import get_current_user

from backend.audit.repository import insert_entry
from backend.clock import utc_now
from backend.db import get_db

log = logging.getLogger(__name__)
ADMIN_PREFIX = "/admin/openai/"


def _caller():
    try:
        return get_current_user()
    except RuntimeError:
        return None


def _audit(response):
    if not request.path.startswith(ADMIN_PREFIX):
        return response
    try:
        caller = _caller()
        now = utc_now()
        insert_entry(get_db(), {
            "adminId": caller["_id"] if caller else None,
            "adminEmail": caller["email"] if caller else None,
            "method": request.method,
            "path": request.path,
            "query": request.args.to_dict(flat=False),
            "status": response.status_code,
            "ip": request.remote_addr,
            "time": now,
            "date": now.strftime("%Y-%m-%d"),
        })
    except Exception:
        log.exception("Audit log write failed for %s %s", request.method, request.path)
    return response


def init_app(app):
    app.after_request(_audit)
