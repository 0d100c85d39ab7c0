"""Thin entry point for `flask reconcile`; see README "Reconciliation".

Usage: python scripts/reconcile.py [--date YYYY-MM-DD]   (default: yesterday, UTC)
Exit 0 all match (or have no report), 1 a mismatch, 3 a report unavailable, 2 a bad argument.
"""
from _bootstrap import run_command

from backend.reconciliation.commands import reconcile_command

if __name__ == "__main__":
    run_command(reconcile_command, "reconcile.py")
