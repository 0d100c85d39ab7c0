"""Create every index TokenLedger needs in the database at MONGO_URI (idempotent).

Usage: MONGO_URI=mongodb://... JWT_SECRET_KEY=... python scripts/create_indexes.py
"""
from _bootstrap import script_app

from backend.cli import print_index_report
from backend.db import get_db, store_is_embedded
from backend.indexes import ensure_indexes

if __name__ == "__main__":
    app = script_app()
    with app.app_context():
        if store_is_embedded():
            print("MONGO_URI is not set: indexing the embedded in-memory store, which is discarded on exit.")
        print_index_report(ensure_indexes(get_db()))
