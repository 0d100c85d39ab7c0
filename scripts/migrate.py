"""Thin entry point for `flask migrate`: apply the data migrations (idempotent; start-up runs them too).

Usage: MONGO_URI=mongodb://... JWT_SECRET_KEY=... python scripts/migrate.py
"""
from _bootstrap import run_command

from backend.cli import migrate_command

if __name__ == "__main__":
    run_command(migrate_command, "migrate.py")
