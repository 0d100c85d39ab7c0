from flask import current_app
from flask_smorest import Blueprint

from backend.auth.guards import user_required
from backend.clock import now
from backend.llm.registry import get_provider, resolve_model
from backend.schemas import envelope, ok
from backend.testgen import services, web
from backend.testgen.limits import estimate_rate_limit, generation_rate_limit
from backend.testgen.schemas import (
    EstimateSchema,
    GenerationRequestSchema,
    GenerationSchema,
    TokenInfoQuerySchema,
    TokenInfoSchema,
)
from backend.usage.tracking import tracked

blp = Blueprint("testgen", __name__, url_prefix="/api", description="LLM test-case generation and token tools")
BEARER = {"security": [{"bearerAuth": []}]}


def _answer(include_usage):
    def finish(plan, test_cases, calls):
        data = {"testCases": test_cases, "references": services.reference_summary(plan), "ragStatus": plan.rag_status}
        if include_usage:
            data["usage"] = services.usage_summary(calls)
        return data, f"Generated {len(test_cases)} test case{'' if len(test_cases) == 1 else 's'}"

    return finish


@blp.post("/test-generation")
@user_required
@blp.doc(**BEARER)
@blp.arguments(GenerationRequestSchema)
@blp.response(200, envelope(GenerationSchema))
@generation_rate_limit
@tracked("test_generation")
def generate(body):
    """Generate test cases for a feature description; the call is recorded in the usage ledger.

    With `stream: true` the answer is server-sent events: `delta`, then `done` or `error`.
    """
    return web.generate(body, _answer(body["include_token_usage"]), GenerationSchema)


@blp.post("/estimate-tokens")
@user_required
@blp.doc(**BEARER)
@blp.arguments(GenerationRequestSchema)
@blp.response(200, envelope(EstimateSchema))
@estimate_rate_limit
def estimate_tokens(body):
    """Input tokens and cost a generation request would use, before making it (no LLM call). It takes
    the generation request's own body: `stream`, `includeTokenUsage`, `tags` and `metadata` are
    validated as there and do not change the estimate."""
    config = current_app.config
    data = services.estimate(web.plan(body), config["LLM_MAX_OUTPUT_TOKENS"], config["PRICE_OVERRIDES"], now())
    return ok(data, "Token estimate computed")


@blp.get("/token-info")
@user_required
@blp.doc(**BEARER)
@blp.arguments(TokenInfoQuerySchema, location="query")
@blp.response(200, envelope(TokenInfoSchema))
def token_info(query):
    """Pricing and limits of a model (default: the configured provider's default model)."""
    provider = get_provider(query["provider"])
    model = resolve_model(provider, query["model"])
    config = current_app.config
    data = services.token_info(provider, model, config["LLM_MAX_OUTPUT_TOKENS"], config["PRICE_OVERRIDES"], now())
    return ok(data, f"Token information for {model}")
