"""The document store: real MongoDB when MONGO_URI is set, mongomock otherwise (adapted by
backend/embedded.py to take the same calls)."""
import contextlib
import threading

import mongomock
import pymongo
from bson import ObjectId
from flask import current_app

from backend import embedded

USERS = "users"
BUDGETS = "budgets"
BUDGET_COUNTERS = "budget_counters"
ALERTS = "alerts"
AUDIT_LOG = "admin_audit_log"
USAGE = "openai_token_usage"
USAGE_DAILY = "openai_token_usage_daily"
USAGE_USER_MONTHLY = "openai_token_usage_user_monthly"
USAGE_DAILY_TOTALS = "openai_token_usage_daily_totals"
USAGE_USER_OPERATION_MONTHLY = "openai_token_usage_user_operation_monthly"
USAGE_ORG_MONTHLY = "openai_token_usage_org_monthly"
USAGE_TAG_MONTHLY = "openai_token_usage_tag_monthly"
USAGE_ORG_TAG_MONTHLY = "openai_token_usage_org_tag_monthly"
USAGE_USER_TAG_MONTHLY = "openai_token_usage_user_tag_monthly"
# The ledger writer's batches not yet in every view (backend/usage/writer.py).
USAGE_BATCHES = "openai_token_usage_batches"
TESTCASES = "testcases"
# A saved test case's embedding vector, by the case's _id (written by backend/testcases).
TESTCASE_VECTORS = "testcase_embeddings"
MIGRATIONS = "migrations"
RECONCILIATIONS = "reconciliations"
# Short leases that let one worker at a time do a job ({_id: job, until, owner}).
LEASES = "leases"
ORGANIZATIONS = "organizations"
TEAMS = "teams"
API_KEYS = "api_keys"

# The organization every user belongs to until moved, and every record made before organizations
# existed: fixed, so that every worker starting at once creates the same one document.
DEFAULT_ORG_ID = ObjectId("000000000000000000000001")
# The _id of the default budget (the one a user without their own has), in the budgets collection.
DEFAULT_BUDGET_ID = "default"

# A rollup or budget counter document remembers the ledger writer's batches it took (the latest
# KEPT_BATCHES), so a batch applied again after a crash changes only the documents it had not reached.
BATCHES = "batches"
KEPT_BATCHES = 500


def once_per_batch(batch):
    """(filter, update) parts that make an update apply once per batch to a document."""
    return {BATCHES: {"$ne": batch}}, {"$push": {BATCHES: {"$each": [batch], "$slice": -KEPT_BATCHES}}}


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
        # MONGO_CLIENT lets several apps share one embedded store (tests of many instances).
        client = app.config.get("MONGO_CLIENT")
        if client is None:
            client = _shared_client(uri, app.config["MONGO_TIMEOUT_MS"]) if uri else mongomock.MongoClient(tz_aware=True)
        mocked = isinstance(client, mongomock.MongoClient)
        if mocked:
            embedded.install()
        app.extensions["mongo"] = _StoreState(
            client=client,
            db=client[app.config["MONGO_DB_NAME"]],
            embedded=mocked,
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


def is_embedded(db):
    """True for the embedded mongomock store, False for MongoDB."""
    return isinstance(db.client, mongomock.MongoClient)


def atomic(db):
    """Run a conditional single-document update atomically.

    MongoDB applies each single-document update atomically on the server, across every
    process. mongomock does not, so for the embedded store the same guarantee comes from
    the lock every operation on its client holds (backend.embedded), shared by every app in the
    process that uses that client.
    """
    if not is_embedded(db):
        return contextlib.nullcontext()
    return embedded.lock_of(db.client)