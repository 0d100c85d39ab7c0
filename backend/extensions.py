"""Extension objects, created bare and bound to an app in create_app() (the OpenAPI `Api` is made
per app there: it holds the app it documents)."""
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from backend.db import MongoStore

mongo = MongoStore()
jwt = JWTManager()
cors = CORS()
# Limits are per client IP unless a route names another key (generation: per user).
limiter = Limiter(key_func=get_remote_address, headers_enabled=True)
