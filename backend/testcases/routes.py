from flask import current_app
from flask_smorest import Blueprint

from backend.auth.guards import caller, user_required
from backend.clock import now
from backend.db import get_db
from backend.runtime import runtime
from backend.schemas import envelope, ok, page_of, parse_object_id
from backend.testcases import embeddings, services
from backend.testcases.schemas import (
    AIGenerationSchema,
    TestCaseFullSchema,
    TestCaseInputSchema,
    TestCaseListQuerySchema,
    TestCasePatchSchema,
    TestCaseSchema,
)
from backend.testgen import services as generation
from backend.testgen import web
from backend.testgen.limits import generation_rate_limit
from backend.testgen.schemas import GenerationRequestSchema
from backend.usage.tracking import tracked

blp = Blueprint("testcases", __name__, url_prefix="/api/testcases", description="Saved test cases (seed 000)")


def _install_search(state):
    """Generation finds similar saved cases through the runtime, so testgen needs no import of testcases."""
    index = runtime(state.app).vector_index = embeddings.new_index(state.app)
    runtime(state.app).reference_search = (
        lambda db, owner, key, vector, limit, threshold: embeddings.search(index, db, owner, key, vector, limit,
                                                                          threshold))


blp.record_once(_install_search)
BEARER = {"security": [{"bearerAuth": []}]}


def _owner():
    """Whose cases the caller may touch: their own, or everyone's for an admin."""
    return None if caller.platform_admin else caller.id


def _id(case_id):
    return parse_object_id(case_id, "id")


@blp.post("")
@user_required
@blp.doc(**BEARER)
@blp.arguments(TestCaseInputSchema)
@blp.response(201, envelope(TestCaseFullSchema))
def create(body):
    """Create a test case by hand; tokenUsage is optional. It is embedded for RAG in the background."""
    case = services.create_case(get_db(), caller.id, body, now())
    embeddings.wake(current_app)
    return ok(case, "Test case created")


@blp.get("")
@user_required
@blp.doc(**BEARER)
@blp.arguments(TestCaseListQuerySchema, location="query")
@blp.response(200, envelope(page_of(TestCaseSchema)))
def list_cases(query):
    """The caller's test cases (an admin's: everyone's), newest first, paginated and filterable."""
    return ok(services.list_cases(get_db(), _owner(), query), "Test cases retrieved")


@blp.get("/<case_id>")
@user_required
@blp.doc(**BEARER)
@blp.response(200, envelope(TestCaseSchema))
def get(case_id):
    """One test case."""
    return ok(services.get_case(get_db(), _id(case_id), _owner()), "Test case retrieved")


@blp.get("/<case_id>/full")
@user_required
@blp.doc(**BEARER)
@blp.response(200, envelope(TestCaseFullSchema))
def get_full(case_id):
    """One test case with everything stored, tokenUsage included."""
    return ok(services.get_case(get_db(), _id(case_id), _owner()), "Test case detail retrieved")


@blp.patch("/<case_id>")
@user_required
@blp.doc(**BEARER)
@blp.arguments(TestCasePatchSchema(partial=True))
@blp.response(200, envelope(TestCaseFullSchema))
def update(body, case_id):
    """Change some fields; tokenUsage is optional (null clears it). A changed text is embedded again."""
    case = services.update_case(get_db(), _id(case_id), _owner(), body, now())
    embeddings.wake(current_app)
    return ok(case, "Test case updated")


@blp.delete("/<case_id>")
@user_required
@blp.doc(**BEARER)
@blp.response(200, envelope())
def delete(case_id):
    """Delete a test case."""
    owner = services.delete_case(get_db(), _id(case_id), _owner())
    runtime().vector_index.drop(owner, _id(case_id))
    return ok(None, "Test case deleted")


def _generated(include_usage, save):
    def finish(plan, test_cases, calls):
        token_usage = services.token_usage(calls)
        if save:
            test_cases = services.save_generated(get_db(), caller.id, test_cases, token_usage, now())
            embeddings.wake(current_app)
        data = {"testCases": test_cases, "references": generation.reference_summary(plan),
                "ragStatus": plan.rag_status}
        if include_usage:
            data["tokenUsage"] = token_usage
        verb = "Generated and saved" if save else "Generated"
        return data, f"{verb} {len(test_cases)} test cases with AI"

    return finish


@blp.post("/generate-with-ai")
@user_required
@blp.doc(**BEARER)
@blp.arguments(GenerationRequestSchema)
@blp.response(200, envelope(AIGenerationSchema))
@generation_rate_limit
@tracked("testcase_generation")
def generate_with_ai(body):
    """Generate test cases and return them with tokenUsage; nothing is saved."""
    finish = _generated(body["include_token_usage"], save=False)
    return web.generate(body, finish, AIGenerationSchema)


@blp.post("/generate-and-save-with-ai")
@user_required
@blp.doc(**BEARER)
@blp.arguments(GenerationRequestSchema)
@blp.response(201, envelope(AIGenerationSchema))
@generation_rate_limit
@tracked("testcase_generation_saved")
def generate_and_save_with_ai(body):
    """Generate test cases, save them (with their tokenUsage) and return them with ids."""
    finish = _generated(body["include_token_usage"], save=True)
    return web.generate(body, finish, AIGenerationSchema)
