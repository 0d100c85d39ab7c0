"""Who a request acts for, typed: the `Caller` auth builds once per request, and the roles.

Everyone else reads the caller through these attributes; nobody reads the stored documents it
was built from. A platform admin (role `admin`) sees every organization; an organization admin
(orgRole `admin`) their own (`Scope`).
"""
from dataclasses import dataclass
from datetime import datetime

from bson import ObjectId

from backend.db import DEFAULT_ORG_ID
from backend.timezones import ZoneRule

ROLE_USER, ROLE_ADMIN = "user", "admin"
ORG_ADMIN, ORG_MEMBER = "admin", "member"
ORG_ROLES = (ORG_ADMIN, ORG_MEMBER)
# What every API key's secret starts with, so a bearer token is told apart from a JWT at a glance.
API_KEY_PREFIX = "tl_"


@dataclass(frozen=True)
class Scope:
    """What an admin may see and manage: the whole platform (org_id None) or one organization.
    The platform role outranks every organization role: an organization admin's scope hides the
    platform admins (`hidden_users`), wherever they sit, as if they did not exist."""

    org_id: ObjectId | None = None
    hidden_users: frozenset = frozenset()

    @property
    def platform(self):
        return self.org_id is None

    def sees(self, org_id):
        return self.platform or org_id == self.org_id

    def sees_user(self, user_id, org_id):
        """Whether a user (in org_id) is in this scope: in its organization, and no platform admin."""
        return self.platform or (org_id == self.org_id and user_id not in self.hidden_users)


def org_of(user):
    """A stored user's organization (the default one for a user created before organizations)."""
    return user.get("orgId") or DEFAULT_ORG_ID


@dataclass(frozen=True)
class CallerBudgets:
    """The stored budgets that can bind the caller's calls (None where none is set); what their
    limits mean is the budgets package's business."""

    own: dict | None = None
    default: dict | None = None
    team: dict | None = None
    org: dict | None = None
    key: dict | None = None


@dataclass(frozen=True)
class Caller:
    id: ObjectId
    email: str
    name: str | None
    role: str
    org_id: ObjectId
    org_role: str
    team_id: ObjectId | None
    is_active: bool
    created_at: datetime | None
    org_name: str | None = None
    team_name: str | None = None
    # The models the organization allows (None: every model the server allows).
    allowed_models: tuple | None = None
    api_key_id: ObjectId | None = None
    api_key_name: str | None = None
    budgets: CallerBudgets = CallerBudgets()
    # The account is a platform admin's, even when a key makes the caller a plain user: what an
    # organization admin set (a team budget) never binds it.
    owned_by_platform_admin: bool = False
    # The organization's time zone (and a change of it still pending): its local days and months
    # are the caller's analytics days and budget windows.
    time_zone: ZoneRule = ZoneRule()

    @property
    def scope(self):
        """The admin scope, or None for a caller who is no admin."""
        if self.role == ROLE_ADMIN:
            return Scope()
        return Scope(self.org_id) if self.org_role == ORG_ADMIN else None

    @property
    def platform_admin(self):
        return self.role == ROLE_ADMIN

    def profile(self):
        """The account as /auth/me shows it (the stored user's fields)."""
        return {"_id": self.id, "email": self.email, "name": self.name, "role": self.role, "orgId": self.org_id,
                "orgRole": self.org_role, "teamId": self.team_id, "isActive": self.is_active,
                "createdAt": self.created_at}

    @classmethod
    def from_documents(cls, user, org=None, team=None, key=None, budgets=CallerBudgets()):
        """From the stored user, their organization and team documents, the API key the request came
        with (it acts in its owner's current team, as a plain user: a key never carries an admin
        role) and the budgets that apply."""
        team_id = user.get("teamId")
        if team is None:
            team_id = None  # the team was deleted after it was read
        return cls(
            id=user["_id"], email=user["email"], name=user.get("name"),
            role=ROLE_USER if key else user.get("role", ROLE_USER), org_id=org_of(user),
            org_role=ORG_MEMBER if key else user.get("orgRole", ORG_MEMBER), team_id=team_id,
            is_active=user.get("isActive", True), created_at=user.get("createdAt"),
            org_name=org["name"] if org else None, team_name=team["name"] if team else None,
            allowed_models=tuple(org["allowedModels"]) if org and org.get("allowedModels") is not None else None,
            api_key_id=key["_id"] if key else None, api_key_name=key["name"] if key else None, budgets=budgets,
            owned_by_platform_admin=user.get("role") == ROLE_ADMIN, time_zone=ZoneRule.of(org),
        )
