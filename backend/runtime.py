"""What one app holds besides its config: one typed object instead of loose `app.extensions` keys.

create_app builds it (`Runtime.install`), fills the parts each package provides (the spool and
ledger writer of `usage`, the audit writer, the reference search `testcases` registers, the API-key
authenticator of `keys`), and everything else reads them through `runtime()`.
"""
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from flask import current_app

EXTENSION = "tokenledger"


@dataclass
class Runtime:
    metrics: object = None
    spool: object = None  # backend.usage.spool.Spool
    writer: object = None  # backend.usage.writer.LedgerWriter
    audit: object = None  # backend.audit.hook.AuditWriter
    # (db, owner id, vector key, query vector, limit, threshold) -> [(saved case, similarity)]:
    # the search RAG runs; registered by testcases, over its vector_index.
    reference_search: Callable | None = None
    vector_index: object = None  # backend.testcases.vectors.VectorIndex
    embeddings_wake: object = None  # set when a case is saved: the embedding worker runs at once
    # (db, secret, now) -> the Caller an API key acts as; registered by keys.
    key_authenticator: Callable | None = None
    providers: dict = field(default_factory=dict)  # provider name -> its instance, made on first use
    drains: list = field(default_factory=list)  # threads reading abandoned streams to their end
    background: object = None  # the background loop's stop event
    # Until this process has seen every migration done, recorded calls stay in the spool (see writer.py).
    migrations_done: bool = False
    start_up_pending: bool = False
    reconcile_next_check: datetime | None = None
    projection_next_check: datetime | None = None

    @classmethod
    def install(cls, app):
        app.extensions[EXTENSION] = runtime_ = cls()
        return runtime_


def runtime(app=None):
    return (app or current_app).extensions[EXTENSION]
