"""Creating, listing, revoking and authenticating API keys.

A member manages their own keys; an organization admin every key of the organization; a
platform admin every key. A key acts as its owner, as a plain user, inside the owner's current
membership: their rate limit and budgets, their organization and their team at the moment of
each call (so it never bills a team its owner is not in), and its calls are recorded with
`apiKeyId`. An owner who leaves the organization, or whose account is gone or disabled, has
their keys revoked for good: a new membership needs a new key."""
import secrets

from backend.auth.caller import API_KEY_PREFIX, ORG_ADMIN
from backend.auth.repository import find_caller, platform_admin_ids
from backend.errors import NotFound, Unauthorized, UnprocessableEntity
from backend.keys import repository

SHOWN_PREFIX = 11  # "tl_" and 8 characters


def _managed_query(db, caller):
    """The keys the caller manages: a platform admin all; an organization admin the
    organization's, but a platform admin's; a member their own."""
    if caller.platform_admin:
        return {}
    if caller.org_role == ORG_ADMIN:
        return {"orgId": caller.org_id, "userId": {"$nin": sorted(platform_admin_ids(db))}}
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
    elif team_id != caller.team_id:
        yours = f"team {caller.team_id}" if caller.team_id is not None else "no team"
        raise UnprocessableEntity(
            f"An API key acts in its owner's current team (its calls count for that team's budget); you are in "
            f"{yours}: leave teamId out", errors={"teamId": ["Must be your own team, or absent."]})
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = repository.insert_key(db, {
        "name": name, "hash": repository.digest(secret), "prefix": secret[:SHOWN_PREFIX],
        "userId": caller.id, "userEmail": caller.email, "orgId": caller.org_id, "teamId": team_id,
        "createdAt": now, "lastUsedAt": None, "expiresAt": expires_at, "revokedAt": None,
    })
    return {**{k: v for k, v in key.items() if k != "hash"}, "secret": secret}


def list_keys(db, caller):
    return repository.list_keys(db, _managed_query(db, caller))


def revoke_key(db, caller, key_id, now):
    if not repository.revoke(db, key_id, now, query=_managed_query(db, caller)):
        raise NotFound(f"API key {key_id} not found")


def keys_of(db, key_ids):
    """The keys (revoked or not, without their hashes) among key_ids."""
    return repository.keys_of(db, key_ids)


def find_key(db, key_id):
    """A key that is not revoked, without its hash (None when there is none)."""
    return repository.find_key(db, key_id)


def on_team_deleted(team_id, *, db):
    """Take every key out of a team that was deleted (its calls then count for no team)."""
    repository.leave_team(db, team_id)


OWNER_LEFT, OWNER_GONE = "owner_left_organization", "owner_gone"
REFUSALS = {OWNER_LEFT: "This API key's owner has left its organization; create a new key",
            OWNER_GONE: "The account of this API key no longer exists or is disabled"}


def authenticate(db, secret, now):
    """The Caller a key's request acts as: its owner as a plain user, in their current
    organization and team, with their budgets and the key's. 401 for an unknown, revoked or
    expired key; a key whose owner left its organization or whose account is gone or disabled is
    revoked for good on the spot (its owner's move revokes it too: on_member_moved)."""
    key = repository.find_by_secret(db, secret)
    if key is None or (key.get("expiresAt") is not None and key["expiresAt"] <= now):
        raise Unauthorized("Invalid, revoked or expired API key")
    if key.get("revokedAt") is not None:
        raise Unauthorized(REFUSALS.get(key.get("revokedReason"), "Invalid, revoked or expired API key"))
    found = find_caller(db, key["userId"], key)
    refusal = OWNER_GONE if found is None or not found.is_active else OWNER_LEFT if found.org_id != key["orgId"] else None
    if refusal is not None:
        repository.revoke(db, key["_id"], now, refusal)
        raise Unauthorized(REFUSALS[refusal])
    repository.touch(db, key, now)
    return found


def on_member_moved(user_id, *, db, org_id, team_id, now):
    """orgs moved a user: their keys of another organization are revoked for good, those of this
    one show the team they now act in."""
    repository.revoke_owned(db, user_id, now, OWNER_LEFT, except_org=org_id)
    repository.follow_team(db, user_id, org_id, team_id)
