"""Create an admin account, or promote an existing account to admin.

Usage: python scripts/create_admin.py --email ops@example.com [--password ...]
The password is prompted for when not given (never echoed).
"""
from _bootstrap import run_command

from backend.cli import create_admin_command

if __name__ == "__main__":
    run_command(create_admin_command, "create_admin.py")
