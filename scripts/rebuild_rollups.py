"""Rebuild the usage rollups from the ledger, or check them (exit 1 on any difference).

Usage: python scripts/rebuild_rollups.py [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--check]
The range is widened to whole months; without one, all time.
"""
from _bootstrap import run_command

from backend.cli import rebuild_rollups_command

if __name__ == "__main__":
    run_command(rebuild_rollups_command, "rebuild_rollups.py")
