"""The admin dashboard page at /admin/: static HTML, CSS and JS that call the public admin API.

Nothing here reads the database: the page logs in through /auth/login, keeps the access
token in sessionStorage and calls /admin/openai/* with it. The Content-Security-Policy
allows only this origin, so the page works offline and loads nothing from a CDN.
"""
from flask import Blueprint, send_from_directory

STATIC = "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

bp = Blueprint("admin_ui", __name__, url_prefix="/admin", static_folder=STATIC, static_url_path="/assets")


@bp.get("/")
def page():
    response = send_from_directory(bp.static_folder, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.after_request
def security_headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
