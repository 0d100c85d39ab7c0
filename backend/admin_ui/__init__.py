"""The browser pages: the admin dashboard at /admin/ and every user's own usage at /me/. Static
HTML, CSS and JS that call the public API; their files are served from /admin/assets/.

Nothing here reads the database: a page logs in through /auth/login, keeps the access token in
sessionStorage and calls the API with it (/admin/openai/* for the dashboard, /api/me/usage* for
My usage). The Content-Security-Policy allows only this origin, so the pages work offline and
load nothing from a CDN.
"""
from flask import Blueprint, send_from_directory

STATIC = "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

# No URL prefix: the blueprint serves two pages at two paths, under one set of headers.
bp = Blueprint("admin_ui", __name__, static_folder=STATIC, static_url_path="/admin/assets")


def _page(name):
    response = send_from_directory(bp.static_folder, name, max_age=0)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/admin/")
def page():
    return _page("index.html")


@bp.get("/me/")
def my_usage_page():
    return _page("me.html")


@bp.after_request
def security_headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
