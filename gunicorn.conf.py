"""gunicorn settings read from the repository root (`gunicorn wsgi:app`).

Checks the configuration once in the master before any worker starts, so a bad setting is one
line instead of a traceback per worker, and refuses several workers without MONGO_URI: each
worker would get its own in-memory store and its own random JWT key (accounts and tokens
would differ from one request to the next).
"""
import os
import sys

from backend.config import ConfigError, load_config

EXIT_CONFIGURATION = 4

# A generation waits on the provider (LLM_TIMEOUT_SECONDS, 60 s by default, per try) and a stream
# lasts as long as the model writes: a sync worker would be killed by gunicorn's 30 s timeout in
# the middle of a call the provider bills (an HTML 500, a stream cut without an end). Threaded
# workers keep answering gunicorn's heartbeat while their requests wait, so no request is killed
# for its length.
worker_class = "gthread"
threads = 8
# On a stop, workers wait this long for abandoned streams' drains (each at most LLM_TIMEOUT_SECONDS).
graceful_timeout = 90


def refusal(workers, environ):
    """Why gunicorn must not start with these settings, or None."""
    try:
        config, _ = load_config(environ)
    except ConfigError as exc:
        return f"Configuration error: {exc}"
    if workers > 1 and config["MONGO_URI"] is None:
        return (f"Configuration error: {workers} workers need MONGO_URI: without it each worker has its own "
                "in-memory store and random JWT key; set MONGO_URI and JWT_SECRET_KEY, or run one worker")
    return None


def on_starting(server):
    reason = refusal(server.cfg.workers, os.environ)
    if reason:
        print(reason, file=sys.stderr)
        sys.exit(EXIT_CONFIGURATION)
