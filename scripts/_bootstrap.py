"""Shared start for scripts: import the backend from the repository root and build the app."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend import create_app  # noqa: E402
from backend.config import ConfigError  # noqa: E402


def script_app(overrides=None):
    """The app without start-up index creation, so scripts report what they themselves did."""
    try:
        return create_app({"AUTO_CREATE_INDEXES": False, **(overrides or {})})
    except ConfigError as exc:
        sys.exit(f"Configuration error: {exc}")


def run_command(command, prog_name):
    """Run one of backend/cli.py's click commands inside the app, with this script's arguments."""
    app = script_app()
    with app.app_context():
        sys.exit(command.main(args=sys.argv[1:], prog_name=prog_name, standalone_mode=True))
