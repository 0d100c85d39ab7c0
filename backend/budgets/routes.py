from flask_jwt_extended import current_user, jwt_required
from flask_smorest import Blueprint

from backend.auth.guards import admin_required
from backend.auth.repository import find_by_id
from backend.budgets import repository
from backend.budgets.schemas import BudgetInputSchema, BudgetListSchema, BudgetSchema, MyUsageSchema
from backend.budgets.services import usage_report
from backend.clock import now
from backend.db import get_db
from backend.errors import NotFound
from backend.schemas import envelope, ok, parse_object_id

blp = Blueprint("budgets", __name__, url_prefix="/admin/openai/budgets", description="Spend budgets (role admin)")
me_blp = Blueprint("me", __name__, url_prefix="/api/me", description="The caller's own usage and budget")
BEARER = {"security": [{"bearerAuth": []}]}


def _owner(user_id):
    """"default", or the id of an existing user."""
    if user_id == repository.DEFAULT:
        return repository.DEFAULT
    owner = parse_object_id(user_id, "userId")
    if find_by_id(get_db(), owner) is None:
        raise NotFound(f"User {user_id} not found")
    return owner


@blp.get("")
@admin_required
@blp.doc(**BEARER)
@blp.response(200, envelope(BudgetListSchema))
def list_budgets():
    """The default budget and every user's own budget."""
    db = get_db()
    data = {"default": repository.get_budget(db, repository.DEFAULT), "users": repository.list_user_budgets(db)}
    return ok(data, "Budgets retrieved successfully")


@blp.get("/<user_id>")
@admin_required
@blp.doc(**BEARER)
@blp.response(200, envelope(BudgetSchema))
def get_budget(user_id):
    """One user's budget, or `default`."""
    budget = repository.get_budget(get_db(), _owner(user_id))
    if budget is None:
        raise NotFound(f"No budget set for {user_id}")
    return ok(budget, "Budget retrieved successfully")


@blp.put("/<user_id>")
@admin_required
@blp.doc(**BEARER)
@blp.arguments(BudgetInputSchema)
@blp.response(200, envelope(BudgetSchema))
def put_budget(limits, user_id):
    """Set a user's budget (or `default`, for users without their own); it replaces the previous one."""
    budget = repository.put_budget(get_db(), _owner(user_id), limits, now(), current_user["_id"])
    return ok(budget, "Budget saved")


@blp.delete("/<user_id>")
@admin_required
@blp.doc(**BEARER)
@blp.response(200, envelope())
def delete_budget(user_id):
    """Remove a user's own budget (the default then applies), or the default."""
    if not repository.delete_budget(get_db(), _owner(user_id)):
        raise NotFound(f"No budget set for {user_id}")
    return ok(None, "Budget deleted")


@me_blp.get("/usage")
@jwt_required()
@me_blp.doc(**BEARER)
@me_blp.response(200, envelope(MyUsageSchema))
def my_usage():
    """The caller's limits, usage (requests in flight included) and what remains, per UTC day and month."""
    return ok({"windows": usage_report(get_db(), current_user, now())}, "Usage retrieved")
