"""Rebuild the usage rollups from the ledger, or check them (exit 1 on any difference).

Usage: python scripts/rebuild_rollups.py [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--check]
The range is widened to whole months; without one, all time.
"""
import sys

from _bootstrap import script_app

from backend.cli import rebuild_rollups_command

if __name__ == "__main__":
    app = script_app()
    with app.app_context():
        sys.exit(rebuild_rollups_command.main(args=sys.argv[1:], prog_name="rebuild_rollups.py", standalone_mode=True))
