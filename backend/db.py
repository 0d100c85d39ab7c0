"""The document store: real MongoDB when MONGO_URI is set, mongomock otherwise."""
import threading

import mongomock
import pymongo
from flask import current_app

USERS = "users"
USAGE = "openai_token_usage"
USAGE_DAILY = "openai_token_usage_daily"
USAGE_USER_MONTHLY = "openai_token_usage_user_monthly"
TESTCASES = "testcases"

_clients = {}
_clients_lock = threading.Lock()


def _shared_client(uri, timeout_ms):
    # One client per process and URI: pymongo pools connections itself, and
    # connect=False lets gunicorn fork workers before any socket is opened.
    with _clients_lock:
        client = _clients.get(uri)
        if client is None:
            client = pymongo.MongoClient(
                uri,
                connect=False,
                tz_aware=True,
                serverSelectionTimeoutMS=timeout_ms,
                appname="tokenledger",
            )
            _clients[uri] = client
        return client


class MongoStore:
    """Flask extension holding the client and database for one app."""

    def init_app(self, app):
        uri = app.config["MONGO_URI"]
        if uri:
            client = _shared_client(uri, app.config["MONGO_TIMEOUT_MS"])
        else:
            client = mongomock.MongoClient(tz_aware=True)
        app.extensions["mongo"] = _StoreState(
            client=client,
            db=client[app.config["MONGO_DB_NAME"]],
            embedded=uri is None,
        )


class _StoreState:
    def __init__(self, client, db, embedded):
        self.client = client
        self.db = db
        self.embedded = embedded


def get_db(app=None):
    return (app or current_app).extensions["mongo"].db


def store_is_embedded(app=None):
    return (app or current_app).extensions["mongo"].embedded
