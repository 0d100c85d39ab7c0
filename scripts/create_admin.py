"""Create an admin account, or promote an existing account to admin.

Usage: python scripts/create_admin.py --email ops@example.com [--password ...]
The password is prompted for when not given (never echoed).
"""
import sys

from _bootstrap import script_app

from backend.cli import create_admin_command

if __name__ == "__main__":
    app = script_app()
    with app.app_context():
        sys.exit(create_admin_command.main(args=sys.argv[1:], prog_name="create_admin.py", standalone_mode=True))
