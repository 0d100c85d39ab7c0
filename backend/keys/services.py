"""Creating, listing, revoking and authenticating API keys.

A member manages their own keys; an organization admin every key of the organization; a
platform admin every key. A key acts as its owner (their rate limit and budgets, their
organization) with the key's team, and its calls are recorded with `apiKeyId`."""
import secrets

from backend.auth.repository import TEAM, find_with_budgets
from backend.errors import Forbidden, NotFound, Unauthorized, UnprocessableEntity
from backend.keys import repository
from backend.orgs.repository import ORG_ADMIN, find_team
from backend.orgs.services import org_of, scope_of

SECRET_PREFIX = "tl_"
SHOWN_PREFIX = 11  # "tl_" and 8 characters


def _managed_query(user):
    """The keys the user manages."""
    scope = scope_of(user)
    if scope is not None and scope.platform:
        return {}
    if user.get("orgRole") == ORG_ADMIN:
        return {"orgId": org_of(user)}
    return {"userId": user["_id"]}


def create_key(db, user, name, team_id, expires_at, now, keep_team):
    """A new key for the user (in their organization); returns it with its secret, shown once.
    `keep_team`: no teamId was sent, so the key takes the user's team. A member may name only
    their own team (a key outside it would take their calls out of the team's budget); an
    organization (or platform) admin any team of the organization, or none."""
    if expires_at is not None and expires_at <= now:
        raise UnprocessableEntity("Invalid request: expiresAt: Must be in the future.",
                                  errors={"expiresAt": ["Must be in the future."]})
    org_id = org_of(user)
    if keep_team:
        team_id = user.get("teamId")
    elif team_id is None and user.get("teamId") is not None and scope_of(user) is None:
        raise Forbidden("A member's API keys count for their team (and its budget); only an organization "
                        "admin can make a key outside it")
    elif team_id is not None and team_id != user.get("teamId"):
        if scope_of(user) is None or find_team(db, team_id, org_id) is None:
            raise NotFound(f"Team {team_id} not found in your organization")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    key = repository.insert_key(db, {
        "name": name, "hash": repository.digest(secret), "prefix": secret[:SHOWN_PREFIX],
        "userId": user["_id"], "userEmail": user["email"], "orgId": org_id, "teamId": team_id,
        "createdAt": now, "lastUsedAt": None, "expiresAt": expires_at, "revokedAt": None,
    })
    return {**{k: v for k, v in key.items() if k != "hash"}, "secret": secret}


def list_keys(db, user):
    return repository.list_keys(db, _managed_query(user))


def revoke_key(db, user, key_id, now):
    key = repository.find_key(db, key_id)
    if key is None or not _manages(user, key) or not repository.revoke(db, key_id, now):
        raise NotFound(f"API key {key_id} not found")


def _manages(user, key):
    query = _managed_query(user)
    return all(key.get(field) == value for field, value in query.items())


def authenticate(db, secret, now):
    """The key's owner as a request acts as them: loaded with their budgets, with the key's team
    and id (`apiKeyId`). 401 for an unknown, revoked or expired key, or one whose owner left
    its organization or was disabled."""
    key = repository.find_active(db, secret, now)
    if key is None:
        raise Unauthorized("Invalid, revoked or expired API key")
    user = find_with_budgets(db, key["userId"], key)
    if user is None or not user.get("isActive", True):
        raise Unauthorized("The account of this API key no longer exists or is disabled")
    if org_of(user) != key["orgId"]:
        raise Unauthorized("This API key's owner has left its organization; create a new key")
    if user["teamId"] is not None and not user[TEAM]:
        # Its team was deleted after this key was read: the key is in no team now.
        user["teamId"] = None
    repository.touch(db, key, now)
    return user
