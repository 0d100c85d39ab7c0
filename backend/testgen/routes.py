from flask import current_app
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from backend.llm.registry import get_provider
from backend.schemas import envelope, ok
from backend.testgen import services
from backend.testgen.schemas import GenerationRequestSchema, GenerationSchema
from backend.usage.capture import add_calls, tracked

blp = Blueprint("testgen", __name__, url_prefix="/api", description="LLM test-case generation")


@blp.post("/test-generation")
@jwt_required()
@blp.doc(security=[{"bearerAuth": []}])
@blp.arguments(GenerationRequestSchema)
@blp.response(200, envelope(GenerationSchema))
@tracked("test_generation")
def generate(body):
    """Generate test cases for a feature description; the call is recorded in the usage ledger."""
    generation = services.generate_test_cases(
        get_provider(),
        body["prompt"],
        body["count"],
        current_app.config["LLM_MAX_OUTPUT_TOKENS"],
        file_content=body["file_content"],
        model=body["model"],
    )
    add_calls(generation.calls)
    data = {"testCases": generation.test_cases, "usage": services.usage_summary(generation.calls)}
    return ok(data, f"Generated {len(generation.test_cases)} test cases")
