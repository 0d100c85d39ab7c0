"""Thin entry point for `flask replay-spool`; see README "Operations".

Usage: python scripts/replay_spool.py   (SPOOL_PATH names the spool; exit 1 while records remain)
"""
from _bootstrap import run_command

from backend.cli import replay_spool_command

if __name__ == "__main__":
    run_command(replay_spool_command, "replay_spool.py")
