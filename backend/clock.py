"""Time as the store keeps it, from one injectable clock."""
from datetime import datetime, timezone

from flask import current_app, has_app_context


def utc_now():
    """Now in UTC, truncated to the milliseconds MongoDB keeps, so stored and returned times agree."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def now(app=None):
    """The app's clock (`app`, else the current one): `CLOCK` in the app config (a callable
    returning an aware UTC datetime; tests set one), else utc_now. Rules take `now` as an
    argument; views, hooks and threads call this."""
    if app is None and has_app_context():
        app = current_app
    clock = app.config.get("CLOCK") if app is not None else None
    return (clock or utc_now)()
