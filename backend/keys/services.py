"""Creating, listing, revoking and authenticating API keys.

A member manages their own keys; an organization admin every key of the organization; a
platform admin every key. A key acts as its owner (their rate limit and budgets, their
organization) with the key's team, and its calls are recorded with `apiKeyId`."""
import secrets

from backend.auth.caller import API_KEY_PREFIX, ORG_ADMIN
from backend.auth.repository import find_caller
from backend.errors import Forbidden, NotFound, Unauthorized, UnprocessableEntity
from backend.keys import repository
from backend.orgs.services import find_team

SHOWN_PREFIX = 11  # "tl_" and 8 characters


def _managed_query(caller):
    """The keys the caller manages."""
    if caller.platform_admin:
        return {}
    if caller.org_role == ORG_ADMIN:
        return {"orgId": caller.org_id}
    return {"userId": caller.id}


def create_key(db, caller, name, team_id, expires_at, now, keep_team):
    """A new key for the caller (in their organization); returns it with its secret, shown once.
    `keep_team`: no teamId was sent, so the key takes the caller's team. A member may name only
    their own team (a key outside it would take their calls out of the team's budget); an
    organization (or platform) admin any team of the organization, or none."""
    if expires_at is not None and expires_at <= now:
        raise UnprocessableEntity("Invalid request: expiresAt: Must be in the future.",
                                  errors={"expiresAt": ["Must be in the future."]})
    if keep_team:
        team_id = caller.team_id
    elif team_id is None and caller.team_id is not None and caller.scope is None:
        raise Forbidden("A member's API keys count for their team (and its budget); only an organization "
                        "admin can make a key outside it")
    elif team_id is not None and team_id != caller.team_id:
        if caller.scope is None or find_team(db, team_id, caller.org_id) is None:
            raise NotFound(f"Team {team_id} not found in your organization")
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = repository.insert_key(db, {
        "name": name, "hash": repository.digest(secret), "prefix": secret[:SHOWN_PREFIX],
        "userId": caller.id, "userEmail": caller.email, "orgId": caller.org_id, "teamId": team_id,
        "createdAt": now, "lastUsedAt": None, "expiresAt": expires_at, "revokedAt": None,
    })
    return {**{k: v for k, v in key.items() if k != "hash"}, "secret": secret}


def list_keys(db, caller):
    return repository.list_keys(db, _managed_query(caller))


def revoke_key(db, caller, key_id, now):
    key = repository.find_key(db, key_id)
    if key is None or not _manages(caller, key) or not repository.revoke(db, key_id, now):
        raise NotFound(f"API key {key_id} not found")


def _manages(caller, key):
    query = _managed_query(caller)
    return all(key.get(field) == value for field, value in query.items())


def find_key(db, key_id):
    """A key that is not revoked, without its hash (None when there is none)."""
    return repository.find_key(db, key_id)


def on_team_deleted(team_id, *, db):
    """Take every key out of a team that was deleted (its calls then count for no team)."""
    repository.leave_team(db, team_id)


def authenticate(db, secret, now):
    """The Caller a key's request acts as: its owner, with their budgets, the key's team and id.
    401 for an unknown, revoked or expired key, or one whose owner left its organization or was
    disabled."""
    key = repository.find_active(db, secret, now)
    if key is None:
        raise Unauthorized("Invalid, revoked or expired API key")
    found = find_caller(db, key["userId"], key)
    if found is None or not found.is_active:
        raise Unauthorized("The account of this API key no longer exists or is disabled")
    if found.org_id != key["orgId"]:
        raise Unauthorized("This API key's owner has left its organization; create a new key")
    repository.touch(db, key, now)
    return found
