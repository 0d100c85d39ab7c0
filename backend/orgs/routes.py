from flask_jwt_extended import current_user
from flask_smorest import Blueprint

from backend.auth.guards import admin_required, current_scope, platform_admin_required
from backend.clock import now
from backend.timezones import UTC_NAME
from backend.db import get_db
from backend.orgs import services
from backend.orgs.schemas import (
    MemberInputSchema,
    MemberSchema,
    MembersQuerySchema,
    OrgInputSchema,
    OrgPatchSchema,
    OrgSchema,
    TeamInputSchema,
    TeamSchema,
)
from backend.schemas import envelope, ok, page_of, parse_object_id

blp = Blueprint("orgs", __name__, url_prefix="/admin/orgs",
                description="Organizations, teams and members (platform admins; organization admins see their own)")
BEARER = {"security": [{"bearerAuth": []}]}


def _org(org_id):
    return parse_object_id(org_id, "orgId")


@blp.post("")
@platform_admin_required
@blp.doc(**BEARER)
@blp.arguments(OrgInputSchema)
@blp.response(201, envelope(OrgSchema))
def create_org(body):
    """Create an organization (names are unique, case-insensitively), in a time zone (default UTC)."""
    return ok(services.create_org(get_db(), body["name"], now(), body.get("time_zone") or UTC_NAME),
              "Organization created")


@blp.get("")
@admin_required
@blp.doc(**BEARER)
@blp.response(200, envelope(OrgSchema, many=True))
def list_orgs():
    """Every organization for a platform admin; an organization admin's own."""
    return ok(services.list_orgs(get_db(), current_scope()), "Organizations retrieved")


@blp.get("/<org_id>")
@admin_required
@blp.doc(**BEARER)
@blp.response(200, envelope(OrgSchema))
def get_org(org_id):
    return ok(services.get_org(get_db(), current_scope(), _org(org_id)), "Organization retrieved")


@blp.patch("/<org_id>")
@platform_admin_required
@blp.doc(**BEARER)
@blp.arguments(OrgPatchSchema)
@blp.response(200, envelope(OrgSchema))
def update_org(body, org_id):
    """Rename an organization, set the models its members may use (`allowedModels`: a list, or null
    for every model the server allows) and/or its time zone (`timeZone`: it takes effect at the next
    midnight of the zone it replaces, so no budget window counts a call twice or misses one)."""
    changes = {"name": body["name"]} if "name" in body else {}
    if "allowed_models" in body:
        changes["allowedModels"] = body["allowed_models"]
    if "time_zone" in body:
        changes["timeZone"] = body["time_zone"]
    return ok(services.update_org(get_db(), _org(org_id), changes, now()), "Organization updated")


@blp.post("/<org_id>/members")
@admin_required
@blp.doc(**BEARER)
@blp.arguments(MemberInputSchema)
@blp.response(201, envelope(MemberSchema))
def add_member(body, org_id):
    """Put an existing user in this organization with a role (admin or member) and team. A user
    is in one organization, so this moves them; an organization admin changes their own members."""
    team = body.get("team_id", services.KEEP_TEAM)
    member = services.add_member(get_db(), current_scope(), _org(org_id), body["email"], body["role"], team, now=now(),
                                 actor=current_user.id)
    return ok(member, "Member saved")


@blp.get("/<org_id>/members")
@admin_required
@blp.doc(**BEARER)
@blp.arguments(MembersQuerySchema, location="query")
@blp.response(200, envelope(page_of(MemberSchema)))
def list_members(query, org_id):
    """The organization's members by email, paginated."""
    data = services.members_page(get_db(), current_scope(), _org(org_id), query["page"], query["limit"])
    return ok(data, "Members retrieved")


@blp.delete("/<org_id>/members/<user_id>")
@admin_required
@blp.doc(**BEARER)
@blp.response(200, envelope())
def remove_member(org_id, user_id):
    """Move the member back to the default organization (a user always belongs to one)."""
    services.remove_member(get_db(), current_scope(), _org(org_id), parse_object_id(user_id, "userId"), now=now(),
                            actor=current_user.id)
    return ok(None, "Member removed")


@blp.post("/<org_id>/teams")
@admin_required
@blp.doc(**BEARER)
@blp.arguments(TeamInputSchema)
@blp.response(201, envelope(TeamSchema))
def create_team(body, org_id):
    """Create a team in the organization (names unique within it)."""
    return ok(services.create_team(get_db(), current_scope(), _org(org_id), body["name"], now()), "Team created")


@blp.get("/<org_id>/teams")
@admin_required
@blp.doc(**BEARER)
@blp.response(200, envelope(TeamSchema, many=True))
def list_teams(org_id):
    return ok(services.list_teams(get_db(), current_scope(), _org(org_id)), "Teams retrieved")


@blp.delete("/<org_id>/teams/<team_id>")
@admin_required
@blp.doc(**BEARER)
@blp.response(200, envelope())
def delete_team(org_id, team_id):
    """Delete a team: its members are in no team after, its budget goes, its records keep its id."""
    services.delete_team(get_db(), current_scope(), _org(org_id), parse_object_id(team_id, "teamId"))
    return ok(None, "Team deleted")
