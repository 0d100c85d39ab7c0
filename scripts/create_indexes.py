"""Thin entry point for `flask create-indexes`: every index TokenLedger needs (idempotent).

Usage: MONGO_URI=mongodb://... JWT_SECRET_KEY=... python scripts/create_indexes.py
"""
from _bootstrap import run_command

from backend.cli import create_indexes_command

if __name__ == "__main__":
    run_command(create_indexes_command, "create_indexes.py")
