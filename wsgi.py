"""WSGI entry point: `gunicorn wsgi:app`, or `python wsgi.py` for the development server."""
import sys

from backend import create_app
from backend.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"Configuration error: {exc}")

if __name__ == "__main__":
    app.run(host=app.config["HOST"], port=app.config["PORT"])
