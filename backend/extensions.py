"""Extension objects, created bare and bound to an app in create_app()."""
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_smorest import Api

from backend.db import MongoStore

mongo = MongoStore()
jwt = JWTManager()
api = Api()
cors = CORS()
