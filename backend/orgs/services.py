"""Organizations, teams and members as an admin manages them, confined to the admin's scope.

A platform admin (role `admin`) sees every organization; an organization admin (orgRole
`admin`) sees their own, and anything outside it is a 404, as if it did not exist.
"""
import math

from blinker import Namespace

from backend.auth import repository as users
from backend.auth.caller import ORG_MEMBER, Scope, org_of
from backend.db import DEFAULT_ORG_ID, ORGANIZATIONS, TEAMS
from backend.errors import Conflict, Forbidden, NotFound
from backend.orgs import repository
from backend.timezones import UTC_NAME, ZoneRule, zone

_signals = Namespace()
# Sent with the team's id (and `db`) once a team is deleted, so the packages that keep something
# of it (API keys, budgets) let go of it; create_app connects them.
team_deleted = _signals.signal("team-deleted")
# Sent with the team's id (and `db`, the deleting admin's `scope`) before a team is deleted: a
# receiver that must keep the team raises (budgets: a ceiling a platform admin set).
team_deleting = _signals.signal("team-deleting")
# Sent with the user's id (and `db`, the `org_id` and `team_id` they are in now, `now`) once a
# member was moved, so the packages that act for them follow (API keys); create_app connects them.
member_moved = _signals.signal("member-moved")


def require_platform(scope):
    if not scope.platform:
        raise Forbidden("Platform admin role required")


def require_org(db, scope, org_id):
    """The organization, when the scope sees it; else 404."""
    org = repository.find_org(db, org_id) if scope.sees(org_id) else None
    if org is None:
        raise NotFound(f"Organization {org_id} not found")
    return org


def require_team(db, scope, team_id, org_id=None):
    """The team, when it is in org_id (when given) and the scope sees its organization; else 404."""
    team = repository.find_team(db, team_id, org_id)
    if team is None or not scope.sees(team["orgId"]):
        raise NotFound(f"Team {team_id} not found")
    return team


def _with_counts(db, orgs, scope=Scope()):
    ids = [org["_id"] for org in orgs]
    members = users.member_counts(db, "orgId", ids, leaving_out=scope.hidden_users)
    return [{**org, "memberCount": members.get(org["_id"], 0)} for org in orgs]


def create_org(db, name, now, time_zone=UTC_NAME):
    try:
        return {**repository.insert_org(db, name, now, ZoneRule.always(time_zone).as_fields()), "memberCount": 0}
    except repository.NameTaken:
        raise Conflict(f"An organization named {name!r} exists", errors={"name": ["Already taken."]}) from None


def update_org(db, org_id, changes, now):
    """Rename the organization, set the models its members may use (`allowedModels`, None: all) and/or
    its time zone (from the next midnight of the zone in effect now: ZoneRule.changed_to)."""
    org = require_org(db, Scope(), org_id)
    if changes.get("allowedModels"):
        changes = {**changes, "allowedModels": list(dict.fromkeys(changes["allowedModels"]))}
    if "timeZone" in changes:
        changes = {**changes, **ZoneRule.of(org).changed_to(changes["timeZone"], now).as_fields()}
    try:
        return _with_counts(db, [repository.update_org(db, org_id, changes, now)])[0]
    except repository.NameTaken as taken:
        raise Conflict(f"An organization named {taken} exists", errors={"name": ["Already taken."]}) from None


def find_org(db, org_id):
    """The organization, or None."""
    return repository.find_org(db, org_id)


def zone_rule(db, org_id):
    """The organization's time zone rule (UTC for one that is gone)."""
    return ZoneRule.of(repository.find_org(db, org_id))


def view_zone(db, caller, requested=None, org_id=None):
    """The time zone of an analytics answer: the one asked for (`timeZone=`), else the caller's
    organization's (a platform admin's: UTC, or the organization's that `orgId=` names)."""
    if requested:
        return zone(requested)
    if caller.platform_admin and caller.api_key_id is None:
        if org_id is None:
            return zone(UTC_NAME)
        org = repository.find_org(db, org_id)
        return zone(ZoneRule.of(org).name)
    return zone(caller.time_zone.name)


def find_team(db, team_id, org_id=None):
    """The team (in org_id, when given), or None."""
    return repository.find_team(db, team_id, org_id)


def require_allowed_model(caller, model):
    """403 when the caller's organization limits its models and this is not one of them."""
    allowed = caller.allowed_models
    if allowed is not None and model not in allowed:
        raise Forbidden(f"Model {model!r} is not allowed in your organization (allowed: {', '.join(allowed)})",
                        errors={"model": ["Not allowed in your organization."]},
                        data={"allowedModels": list(allowed)})


def list_orgs(db, scope):
    return _with_counts(db, repository.list_orgs(db, scope.org_id), scope)


def get_org(db, scope, org_id):
    return _with_counts(db, [require_org(db, scope, org_id)], scope)[0]


def create_team(db, scope, org_id, name, now):
    require_org(db, scope, org_id)
    try:
        return {**repository.insert_team(db, org_id, name, now), "memberCount": 0}
    except repository.NameTaken:
        raise Conflict(f"This organization has a team named {name!r}", errors={"name": ["Already taken."]}) from None


def list_teams(db, scope, org_id):
    require_org(db, scope, org_id)
    teams = repository.list_teams(db, org_id)
    members = users.member_counts(db, "teamId", [team["_id"] for team in teams], leaving_out=scope.hidden_users)
    return [{**team, "memberCount": members.get(team["_id"], 0)} for team in teams]


def delete_team(db, scope, org_id, team_id):
    """Remove the team and its members' place in it (their ledger records keep it); the API keys
    and budget of the team go with it (team_deleted). An organization admin cannot delete a team
    a platform admin is in, nor one another package keeps (team_deleting)."""
    require_org(db, scope, org_id)
    if repository.find_team(db, team_id, org_id) is None:
        raise NotFound(f"Team {team_id} not found")
    if scope.hidden_users and users.member_counts(db, "teamId", [team_id], among=scope.hidden_users):
        raise Forbidden("A platform admin is in this team: only a platform admin deletes it")
    team_deleting.send(team_id, db=db, scope=scope)
    if not repository.delete_team(db, org_id, team_id):
        raise NotFound(f"Team {team_id} not found")
    _left_team(db, team_id)


def _left_team(db, team_id):
    users.leave_team(db, team_id)
    team_deleted.send(team_id, db=db)


KEEP_TEAM = object()


def _not_yourself(scope, actor, user_id):
    if not scope.platform and user_id == actor:
        raise Forbidden("An organization admin cannot change their own membership (their team and its budget "
                        "bind them): a platform admin does")


def add_member(db, scope, org_id, email, role, team_id=KEEP_TEAM, *, now, actor=None):
    """Put an existing user in the organization with a role and team (a user is in one
    organization, so this moves them out of their previous one). `team_id` KEEP_TEAM keeps the
    user's team when they stay in the same organization, and puts them in none when they move.
    An organization admin can only change members already in their organization."""
    require_org(db, scope, org_id)
    user = users.find_by_email(db, email)
    if user is None or not scope.sees_user(user["_id"], org_of(user)):
        raise NotFound(f"No user with email {email} " + ("exists" if scope.platform else "in your organization"))
    _not_yourself(scope, actor, user["_id"])
    if team_id is KEEP_TEAM:
        team_id = user.get("teamId") if org_of(user) == org_id else None
    if team_id is not None:
        require_team(db, scope, team_id, org_id)
    member = users.set_membership(db, user["_id"], org_id, role, team_id, user.get("orgId"))
    if member is None:
        raise Conflict(f"{email} was moved to another organization meanwhile; try again")
    if team_id is not None and repository.find_team(db, team_id, org_id) is None:
        # The team was deleted between the check and the move: its members leave it, this one too.
        _left_team(db, team_id)
        member_moved.send(member["_id"], db=db, org_id=org_id, team_id=None, now=now)
        raise NotFound(f"Team {team_id} not found")
    member_moved.send(member["_id"], db=db, org_id=org_id, team_id=team_id, now=now)
    return _with_team_names(db, [member])[0]


def remove_member(db, scope, org_id, user_id, *, now, actor=None):
    """Back to the default organization as a member: a user always belongs to one."""
    require_org(db, scope, org_id)
    if user_id in scope.hidden_users or users.find_member(db, org_id, user_id) is None:
        raise NotFound(f"User {user_id} is not a member of this organization")
    _not_yourself(scope, actor, user_id)
    if org_id == DEFAULT_ORG_ID:
        raise Conflict("A user cannot leave the default organization: add them to another one instead")
    if users.set_membership(db, user_id, DEFAULT_ORG_ID, ORG_MEMBER, None, org_id) is None:
        raise NotFound(f"User {user_id} is not a member of this organization")
    member_moved.send(user_id, db=db, org_id=DEFAULT_ORG_ID, team_id=None, now=now)


def _with_team_names(db, members):
    teams = repository.names(db, TEAMS, {m["teamId"] for m in members if m.get("teamId")})
    return [{**m, "orgRole": m.get("orgRole", ORG_MEMBER), "teamName": teams.get(m.get("teamId"))} for m in members]


def members_page(db, scope, org_id, page, limit):
    require_org(db, scope, org_id)
    members, total = users.members_page(db, org_id, (page - 1) * limit, limit, scope.hidden_users)
    return {"data": _with_team_names(db, members), "total": total, "page": page, "limit": limit,
            "totalPages": math.ceil(total / limit)}


def labels(db, by, ids):
    """Names for breakdown keys: {id: name} of organizations (by="org") or teams (by="team")."""
    return repository.names(db, ORGANIZATIONS if by == "org" else TEAMS, [i for i in ids if i is not None])


def adopt_users_without_org(db, now):
    """The organizations migration's step: the default organization exists, and every user from
    before organizations is its member, in no team."""
    repository.ensure_default_org(db, now)
    users.adopt_into(db, DEFAULT_ORG_ID)
