"""Users collection: the only code that knows its document shape."""
from datetime import datetime, timezone

from pymongo.errors import DuplicateKeyError

from backend.db import USERS


class EmailTaken(Exception):
    pass


def find_by_email(db, email):
    return db[USERS].find_one({"email": email.lower()})


def find_by_id(db, user_id):
    return db[USERS].find_one({"_id": user_id})


def insert_user(db, email, password_hash, name, role):
    doc = {
        "email": email.lower(),
        "passwordHash": password_hash,
        "name": name,
        "role": role,
        "isActive": True,
        "createdAt": datetime.now(timezone.utc),
    }
    try:
        doc["_id"] = db[USERS].insert_one(doc).inserted_id
    except DuplicateKeyError:
        raise EmailTaken(email) from None
    return doc


def set_role(db, user_id, role):
    db[USERS].update_one({"_id": user_id}, {"$set": {"role": role, "isActive": True}})
    return find_by_id(db, user_id)


def set_password_hash(db, user_id, password_hash):
    db[USERS].update_one({"_id": user_id}, {"$set": {"passwordHash": password_hash}})
