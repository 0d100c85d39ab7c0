"""TokenLedger: LLM test generation with an exact ledger of what every call cost."""
import logging

from flask import Flask
from flask_smorest import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from backend.config import load_config
from backend.extensions import cors, jwt, limiter, mongo
from backend.runtime import Runtime

log = logging.getLogger("backend")

API_SPEC = {
    "API_TITLE": "TokenLedger API",
    "API_VERSION": "1.0.0",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/docs",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "/",
    "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",
}


def create_app(config=None):
    """Build the app: config, extensions, blueprints, errors, hooks, CLI, start-up tasks.

    `config` overrides settings read from the environment (tests pass their own).
    """
    settings, warnings = load_config()
    app = Flask(__name__)
    app.config.update(API_SPEC)
    app.config.update(settings)
    app.config.update(config or {})
    _configure_logging(app.config["LOG_LEVEL"])
    for warning in warnings:
        log.warning("%s", warning)
    if app.config["TRUSTED_PROXY_HOPS"]:
        # Behind N reverse proxies the client IP (rate limits, audit log) comes from X-Forwarded-For.
        hops = app.config["TRUSTED_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    state = Runtime.install(app)
    api = _init_extensions(app, state)
    _register_blueprints(app, api)
    _connect_packages(state)

    from backend import background, cli, input_guard
    from backend.startup import start_up_database
    from backend.audit import hook as audit
    from backend.errors import register_error_handlers
    from backend.usage import tracking

    register_error_handlers(app)
    # The request id first, so that even a request the input guard refuses answers with it.
    tracking.init_app(app)
    input_guard.init_app(app)
    audit.init_app(app)
    cli.init_app(app)
    if app.config["START_UP_TASKS"]:
        start_up_database(app)
    if app.config["BACKGROUND_TASKS"]:
        background.start(app)
    return app


def _configure_logging(level):
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("backend").setLevel(level)
    _escape_control_characters_in_log_messages()


# C0 and C1 control characters, DEL and the Unicode line separators: one of them in a value a
# client sent (a model name, a path) must not start a forged line in the log.
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROL_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
                         0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape_control_characters(text):
    return text.translate(_CONTROL_ESCAPES)


def _escape_control_characters_in_log_messages():
    """Every record's arguments (where values from requests go: a model name, a path, a request
    line) have their control characters escaped, whichever handler (ours, gunicorn's, pytest's)
    writes it; the record factory is process-wide, so this works for handlers added after start-up
    too. Messages written by code itself (the dev server's coloured banner) and tracebacks stay as
    they are."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "escapes_control_characters", False):
        return

    def escaped(value):
        return escape_control_characters(value) if isinstance(value, str) else value

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        if isinstance(record.args, dict):
            record.args = {key: escaped(value) for key, value in record.args.items()}
        elif record.args:
            record.args = tuple(escaped(value) for value in record.args)
        return record

    factory.escapes_control_characters = True
    logging.setLogRecordFactory(factory)


def _init_extensions(app, state):
    from backend.clock import now
    from backend.db import get_db
    from backend.llm.tokenizer import install_offline_encodings
    from backend.metrics import Metrics
    from backend.openapi import ErrorEnvelopeSchema, ErrorStatusesPlugin
    from backend.usage.spool import Spool
    from backend.usage.writer import LedgerWriter

    mongo.init_app(app)
    jwt.init_app(app)
    limiter.init_app(app)
    # One Api per app (it keeps the app it registers blueprints on), so apps can be built at once.
    api = Api()
    # The documented error schema is the envelope the app really answers with.
    api.ERROR_SCHEMA = ErrorEnvelopeSchema
    api.init_app(app, spec_kwargs={"extra_plugins": [ErrorStatusesPlugin(app)]})
    state.metrics = Metrics()
    fsync = app.config["SPOOL_FSYNC"]
    state.spool = Spool(app.config["SPOOL_PATH"], fsync) if app.config["SPOOL_PATH"] else Spool.of_this_process(fsync)
    app.config["SPOOL_PATH"] = state.spool.path
    state.writer = LedgerWriter(get_db(app), state.spool, state.metrics,
                                asynchronous=app.config["LEDGER_WRITES"] == "async",
                                interval_seconds=app.config["LEDGER_WRITE_INTERVAL_MS"] / 1000,
                                ready=lambda: state.migrations_done, clock=lambda: now(app))
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    if app.config["CORS_ORIGINS"]:
        cors.init_app(app, origins=app.config["CORS_ORIGINS"], expose_headers=["X-Request-ID"])
    install_offline_encodings(app.config["TIKTOKEN_CACHE_DIR"])
    return api


def _register_blueprints(app, api):
    from backend.admin.routes import blp as admin_blp
    from backend.admin_ui import bp as admin_page
    from backend.audit.routes import blp as audit_blp
    from backend.auth import guards  # noqa: F401  registers the JWT callbacks
    from backend.auth.routes import blp as auth_blp
    from backend.budgets.routes import blp as budgets_blp
    from backend.budgets.routes import me_blp
    from backend.keys.routes import blp as keys_blp
    from backend.orgs.routes import blp as orgs_blp
    from backend.reconciliation.routes import blp as reconciliation_blp
    from backend.system.routes import blp as system_blp
    from backend.system.routes import docs_assets
    from backend.testcases.routes import blp as testcases_blp
    from backend.testgen.routes import blp as testgen_blp

    for blueprint in (system_blp, auth_blp, testgen_blp, testcases_blp, me_blp, admin_blp, budgets_blp, audit_blp,
                      reconciliation_blp, orgs_blp, keys_blp):
        api.register_blueprint(blueprint)
    app.register_blueprint(docs_assets)
    app.register_blueprint(admin_page)


def _connect_packages(state):
    """Where one package answers another's events, so that neither imports the other: budgets
    settle the records the ledger writer wrote; API keys and budgets let go of a deleted team, and
    API keys follow a member who moves;
    API keys authenticate for the guards; orgs adopts old users in the ledger's migration."""
    from backend.budgets import services as budgets
    from backend.keys import services as keys
    from backend.orgs import services as orgs
    from backend.orgs.services import member_moved, team_deleted, team_deleting
    from backend.usage import migrations

    migrations.register_step(migrations.ORGANIZATIONS, orgs.adopt_users_without_org)
    state.writer.on_written(budgets.settle_written)
    state.writer.on_abandoned(budgets.give_back_abandoned)
    state.key_authenticator = keys.authenticate
    team_deleted.connect(keys.on_team_deleted)
    team_deleted.connect(budgets.on_team_deleted)
    team_deleting.connect(budgets.guard_team_deletion)
    member_moved.connect(keys.on_member_moved)
