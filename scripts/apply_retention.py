"""Thin entry point for `flask apply-retention`; see README "Operations".

Usage: python scripts/apply_retention.py --older-than DAYS --mode deactivate|delete [--dry-run]
"""
from _bootstrap import run_command

from backend.cli import apply_retention_command

if __name__ == "__main__":
    run_command(apply_retention_command, "apply_retention.py")
