from marshmallow import (
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from backend.schemas import MAX_PAGE_SIZE, ObjectIdString, UTCDateTime, page_field
from backend.testgen.prompts import PRIORITIES, TYPES
from backend.testgen.schemas import ReferenceSchema, rag_status_field

# A saved case is bounded (it may later be sent to a model as a reference).
MAX_ITEMS = 50
MAX_ITEM_CHARS = 2_000
# Token counts and costs stay far below what the store can add up (int64).
NON_NEGATIVE = validate.Range(min=0, max=10**12)


class ShareSchema(Schema):
    index = fields.Integer()
    of = fields.Integer()


class GenerationTotalsSchema(Schema):
    """The whole generation a saved case's share was taken from."""

    inputTokens = fields.Integer()
    outputTokens = fields.Integer()
    totalTokens = fields.Integer()
    estimatedCost = fields.Float()


class TokenUsageSchema(Schema):
    """Seed 000's tokenUsage object; the optional detail follows the token convention."""

    inputTokens = fields.Integer(required=True, validate=NON_NEGATIVE)
    outputTokens = fields.Integer(required=True, validate=NON_NEGATIVE)
    totalTokens = fields.Integer(validate=NON_NEGATIVE)
    estimatedCost = fields.Float(validate=NON_NEGATIVE, load_default=0.0)
    cachedInputTokens = fields.Integer(validate=NON_NEGATIVE)
    reasoningTokens = fields.Integer(validate=NON_NEGATIVE)
    provider = fields.String(validate=validate.Length(max=40))
    modelName = fields.String(validate=validate.Length(max=128))
    callIds = fields.List(fields.String(validate=validate.Length(max=64)), validate=validate.Length(max=20))
    share = fields.Nested(ShareSchema, dump_only=True)
    generation = fields.Nested(GenerationTotalsSchema, dump_only=True)

    @validates_schema
    def _consistent(self, data, **kwargs):
        # A PATCH loads partially, nested objects too; a tokenUsage is still replaced whole.
        missing = [name for name in ("inputTokens", "outputTokens") if name not in data]
        if missing:
            raise ValidationError("Missing data for required field.", missing[0])
        total = data.get("totalTokens")
        if total is not None and total != data["inputTokens"] + data["outputTokens"]:
            raise ValidationError("totalTokens must equal inputTokens + outputTokens.", "totalTokens")
        if data.get("cachedInputTokens", 0) > data["inputTokens"]:
            raise ValidationError("cachedInputTokens cannot exceed inputTokens.", "cachedInputTokens")
        if data.get("reasoningTokens", 0) > data["outputTokens"]:
            raise ValidationError("reasoningTokens cannot exceed outputTokens.", "reasoningTokens")

    @post_load
    def _fill_total(self, data, **kwargs):
        return {"totalTokens": data["inputTokens"] + data["outputTokens"], **data}


class TestCaseInputSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=300))
    description = fields.String(validate=validate.Length(max=10_000), load_default="")
    preconditions = fields.List(fields.String(validate=validate.Length(max=MAX_ITEM_CHARS)), load_default=list,
                                validate=validate.Length(max=MAX_ITEMS))
    steps = fields.List(fields.String(validate=validate.Length(max=MAX_ITEM_CHARS)), load_default=list,
                        validate=validate.Length(max=MAX_ITEMS))
    expectedResult = fields.String(validate=validate.Length(max=10_000), load_default="")
    priority = fields.String(validate=validate.OneOf(PRIORITIES), load_default="medium")
    type = fields.String(validate=validate.OneOf(TYPES), load_default="functional")
    tokenUsage = fields.Nested(TokenUsageSchema, allow_none=True, load_default=None)


class TestCasePatchSchema(TestCaseInputSchema):
    """PATCH body: any subset of the fields (loaded with partial=True, so no defaults)."""


class TestCaseSchema(Schema):
    id = ObjectIdString(attribute="_id")
    title = fields.String()
    description = fields.String()
    preconditions = fields.List(fields.String())
    steps = fields.List(fields.String())
    expectedResult = fields.String()
    priority = fields.String()
    type = fields.String()
    provider = fields.String(allow_none=True)
    modelName = fields.String(allow_none=True)
    aiGenerated = fields.Boolean()
    createdBy = ObjectIdString()
    createdAt = UTCDateTime()
    updatedAt = UTCDateTime()


class EmbeddingStateSchema(Schema):
    """Where the case's embedding (for RAG) stands: pending, embedded or skipped (its owner is gone)."""

    status = fields.String()
    key = fields.String(metadata={"description": "provider/model/dimensions of its vector"})
    embeddedAt = UTCDateTime()
    attempts = fields.Integer()
    lastError = fields.String(allow_none=True)


class TestCaseFullSchema(TestCaseSchema):
    tokenUsage = fields.Nested(TokenUsageSchema, allow_none=True)
    embedding = fields.Nested(EmbeddingStateSchema, allow_none=True)


class TestCaseListQuerySchema(Schema):
    page = page_field()
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE_SIZE), load_default=20)
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    type = fields.String(validate=validate.OneOf(TYPES))
    aiGenerated = fields.Boolean()
    provider = fields.String()
    q = fields.String(validate=validate.Length(min=1, max=200))


class AIGenerationSchema(Schema):
    testCases = fields.List(fields.Nested(TestCaseFullSchema))
    tokenUsage = fields.Nested(TokenUsageSchema)
    references = fields.List(fields.Nested(ReferenceSchema))
    ragStatus = rag_status_field()
