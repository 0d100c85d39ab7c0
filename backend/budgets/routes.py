from flask_jwt_extended import current_user
from flask_smorest import Blueprint

from backend.admin import services as analytics
from backend.admin.schemas import BreakdownItemSchema, UsageRecordSchema
from backend.auth.caller import org_of
from backend.auth.guards import admin_required, caller, current_scope, user_required
from backend.auth.repository import find_by_id
from backend.budgets import repository, services
from backend.budgets.schemas import (
    BudgetInputSchema,
    BudgetListSchema,
    BudgetSchema,
    MyBreakdownQuerySchema,
    MyHistoryQuerySchema,
    MyUsageSchema,
)
from backend.clock import now
from backend.db import get_db
from backend.errors import NotFound
from backend.keys.services import find_key
from backend.orgs.services import find_team, require_org, require_platform, require_team, view_zone
from backend.schemas import envelope, ok, page_of, parse_object_id
from backend.timezones import zone

blp = Blueprint("budgets", __name__, url_prefix="/admin/openai/budgets",
                description="Spend budgets of users, teams and organizations (admins)")
me_blp = Blueprint("me", __name__, url_prefix="/api/me", description="The caller's own usage and budget")
BEARER = {"security": [{"bearerAuth": []}]}


def _owner(user_id, changing=False):
    """"default" (which only a platform admin changes), or the id of an existing user in the
    caller's scope."""
    scope = current_scope()
    if user_id == repository.DEFAULT:
        if changing:
            require_platform(scope)
        return repository.DEFAULT
    owner = parse_object_id(user_id, "userId")
    user = find_by_id(get_db(), owner)
    if user is None or not scope.sees_user(owner, org_of(user)):
        raise NotFound(f"User {user_id} not found")
    return owner


def _org_owner(org_id, changing):
    """An organization's budget: read by its admins, set only by a platform admin."""
    scope = current_scope()
    if changing:
        require_platform(scope)
    org = require_org(get_db(), scope, parse_object_id(org_id, "orgId"))
    return org["_id"], {"scope": "org", "orgId": org["_id"]}


def _team_owner(team_id, changing):
    """A team's budget: read and set by the admins of its organization."""
    team = require_team(get_db(), current_scope(), parse_object_id(team_id, "teamId"))
    return team["_id"], {"scope": "team", "orgId": team["orgId"], "teamId": team["_id"]}


def _key_owner(key_id, changing):
    """An API key's budget: read and set by the admins of its organization."""
    key_id = parse_object_id(key_id, "keyId")
    key = find_key(get_db(), key_id)
    if key is None or not current_scope().sees_user(key["userId"], key["orgId"]):
        raise NotFound(f"API key {key_id} not found")
    return key_id, {"scope": "key", "orgId": key["orgId"], "teamId": key["teamId"], "apiKeyId": key_id,
                    "ownerUserId": key["userId"]}


# Budgets on several users' calls together: (owner id, changing) -> (budget _id, owner fields).
GROUP_OWNERS = {"team": _team_owner, "org": _org_owner, "key": _key_owner}
GROUP_PATH = "/<any(team, org, key):kind>/<owner_id>"
GROUP_DOC = {"parameters": [{"in": "path", "name": "kind", "required": True,
                             "schema": {"type": "string", "enum": list(GROUP_OWNERS)}}]}


def _get(owner, scope, label):
    budget = repository.get_budget(get_db(), owner, scope)
    if budget is None:
        raise NotFound(f"No budget set for {label}")
    return ok(budget, "Budget retrieved successfully")


def _whose(owner, owner_fields):
    """The user whose own budget this is (a user's, or that of a key they own), or None."""
    if owner_fields is None:
        return None if owner == repository.DEFAULT else owner
    return owner_fields.get("ownerUserId")


def _put(owner, owner_fields, limits):
    fields = {key: value for key, value in (owner_fields or {"scope": "user"}).items() if key != "ownerUserId"}
    saved = services.set_budget(get_db(), current_scope(), current_user.id, owner, fields, limits, now(),
                                whose=_whose(owner, owner_fields))
    return ok(saved, "Budget saved")


def _delete(owner, label, owner_fields=None):
    if not services.remove_budget(get_db(), current_scope(), current_user.id, owner, whose=_whose(owner, owner_fields)):
        raise NotFound(f"No budget set for {label}")
    return ok(None, "Budget deleted")


@blp.get("")
@admin_required
@blp.doc(**BEARER)
@blp.response(200, envelope(BudgetListSchema))
def list_budgets():
    """The default budget, and every user's, team's, organization's and API key's own budget (for an
    organization admin: those of their organization)."""
    db, scope = get_db(), current_scope()
    data = {"default": repository.get_budget(db, repository.DEFAULT),
            **{name: services.list_budgets(db, kind, scope)
               for name, kind in (("users", "user"), ("teams", "team"), ("orgs", "org"), ("keys", "key"))}}
    return ok(data, "Budgets retrieved successfully")


@blp.get("/<user_id>")
@admin_required
@blp.doc(**BEARER)
@blp.response(200, envelope(BudgetSchema))
def get_budget(user_id):
    """One user's budget, or `default`."""
    return _get(_owner(user_id), "user", user_id)


@blp.put("/<user_id>")
@admin_required
@blp.doc(**BEARER)
@blp.arguments(BudgetInputSchema)
@blp.response(200, envelope(BudgetSchema))
def put_budget(limits, user_id):
    """Set a user's budget (or `default`, for users without their own); it replaces the previous one."""
    return _put(_owner(user_id, changing=True), None, limits)


@blp.delete("/<user_id>")
@admin_required
@blp.doc(**BEARER)
@blp.response(200, envelope())
def delete_budget(user_id):
    """Remove a user's own budget (the default then applies), or the default."""
    return _delete(_owner(user_id, changing=True), user_id)


@blp.get(GROUP_PATH)
@admin_required
@blp.doc(**BEARER, **GROUP_DOC)
@blp.response(200, envelope(BudgetSchema))
def get_group_budget(kind, owner_id):
    """A team's, organization's or API key's budget: one limit on all the calls of its members
    (of the key) together, beside each user's own."""
    return _get(GROUP_OWNERS[kind](owner_id, False)[0], kind, f"{kind} {owner_id}")


@blp.put(GROUP_PATH)
@admin_required
@blp.doc(**BEARER, **GROUP_DOC)
@blp.arguments(BudgetInputSchema)
@blp.response(200, envelope(BudgetSchema))
def put_group_budget(limits, kind, owner_id):
    """Set a team's or API key's budget (platform admins and the admins of its organization), or
    an organization's (platform admins)."""
    owner, owner_fields = GROUP_OWNERS[kind](owner_id, True)
    saved = _put(owner, owner_fields, limits)
    if kind == "team" and find_team(get_db(), owner) is None:
        # The team was deleted between the check and the write: its budget goes with it.
        repository.delete_budget(get_db(), owner)
        raise NotFound(f"Team {owner_id} not found")
    return saved


@blp.delete(GROUP_PATH)
@admin_required
@blp.doc(**BEARER, **GROUP_DOC)
@blp.response(200, envelope())
def delete_group_budget(kind, owner_id):
    owner, owner_fields = GROUP_OWNERS[kind](owner_id, True)
    return _delete(owner, f"{kind} {owner_id}", owner_fields)


@me_blp.get("/usage")
@user_required
@me_blp.doc(**BEARER)
@me_blp.response(200, envelope(MyUsageSchema))
def my_usage():
    """The caller's limits, usage (requests in flight included) and what remains, per local day and
    month of their organization's zone, and where the month is heading (`projection`)."""
    at, me = now(), caller._get_current_object()
    tz = zone(me.time_zone.name_at(at))
    data = {"windows": services.usage_report(get_db(), me, at),
            "projection": analytics.projection(get_db(), {"userId": me.id}, tz, at)}
    return ok(data, "Usage retrieved", tz.key)


def _my_zone(query):
    """Your views count your organization's local days, unless timeZone= names another zone."""
    return view_zone(get_db(), caller._get_current_object(), query.get("time_zone"))


@me_blp.get("/usage/history")
@user_required
@me_blp.doc(**BEARER)
@me_blp.arguments(MyHistoryQuerySchema, location="query")
@me_blp.response(200, envelope(page_of(UsageRecordSchema)))
def my_history(query):
    """Your own ledger records (an API key's: its owner's), newest first, paginated; filter by
    inclusive local days (your organization's zone, or timeZone=), tag, model and operation (the
    type of call: embedding, test_generation...)."""
    filters = {"tag": query.get("tag"), "modelName": query.get("model"), "operation": query.get("operation")}
    tz = _my_zone(query)
    data = analytics.user_history(get_db(), caller.id, query["page"], query["limit"], query.get("start_date"),
                                  query.get("end_date"), filters, tz=tz)
    return ok(data, "Your usage history", tz.key)


@me_blp.get("/usage/breakdown")
@user_required
@me_blp.doc(**BEARER)
@me_blp.arguments(MyBreakdownQuerySchema, location="query")
@me_blp.response(200, envelope(BreakdownItemSchema, many=True))
def my_breakdown(query):
    """Your own totals per model, per tag (a call counts under each of its tags) or per operation (the
    type of call: generations, embeddings), largest first."""
    tz = _my_zone(query)
    data = analytics.breakdown(get_db(), query["by"], query.get("start_date"), query.get("end_date"),
                               {"userId": caller.id, "tag": query.get("tag")}, tz=tz)
    return ok(data, f"Your usage by {query['by']}", tz.key)
