from marshmallow import Schema, ValidationError, fields, post_load, validate

from backend.config import MODEL_NAME
from backend.schemas import TAG, Pattern, visible
from backend.testgen.prompts import PRIORITIES, TYPES

MAX_TEST_CASES = 20
MAX_PROMPT_CHARS = 20_000
MAX_FILE_CHARS = 200_000
MAX_REFERENCES = 10
MAX_TAGS = 10
MAX_METADATA_KEYS = 20
# No "." or "$": metadata keys become field names of the stored record.
METADATA_KEY = r"^[A-Za-z0-9_:-]{1,64}$"
MAX_METADATA_VALUE = 200


def _at_most_keys(value):
    if len(value) > MAX_METADATA_KEYS:
        raise ValidationError(f"At most {MAX_METADATA_KEYS} keys.")


class PromptSchema(Schema):
    """What shapes the prompt: shared by generation and estimate-tokens."""

    prompt = fields.String(required=True, validate=validate.Length(min=1, max=MAX_PROMPT_CHARS))
    context = fields.String(validate=validate.Length(max=MAX_PROMPT_CHARS), load_default=None)
    file_content = fields.String(data_key="fileContent", validate=validate.Length(max=MAX_FILE_CHARS),
                                 load_default=None)
    count = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_TEST_CASES), load_default=5)
    provider = fields.String(validate=validate.Length(min=1, max=40), load_default=None)
    model = fields.String(validate=Pattern(MODEL_NAME, error="Not a valid model name."), load_default=None)
    use_rag = fields.Boolean(data_key="useRAG", load_default=False)
    rag_similarity_threshold = fields.Float(
        data_key="ragSimilarityThreshold", validate=validate.Range(min=0, max=1), load_default=0.7
    )
    max_rag_references = fields.Integer(
        data_key="maxRAGReferences", validate=validate.Range(min=1, max=MAX_REFERENCES), load_default=3
    )


class GenerationRequestSchema(PromptSchema):
    stream = fields.Boolean(load_default=False)
    include_token_usage = fields.Boolean(data_key="includeTokenUsage", load_default=True)
    tags = fields.List(
        fields.String(validate=Pattern(TAG, error="1-64 characters of A-Z a-z 0-9 _ . : -")),
        validate=validate.Length(max=MAX_TAGS), load_default=list,
        metadata={"description": f"what the call was for (feature, pipeline, environment): at most {MAX_TAGS}, "
                                 "each 1-64 characters of A-Z a-z 0-9 _ . : -; stored on the ledger record"})
    metadata = fields.Dict(
        keys=fields.String(validate=Pattern(METADATA_KEY, error="1-64 characters of A-Z a-z 0-9 _ : -")),
        values=fields.String(validate=[validate.Length(max=MAX_METADATA_VALUE), visible]), validate=_at_most_keys,
        load_default=dict,
        metadata={"description": f"string keys (at most {MAX_METADATA_KEYS}, 1-64 characters of A-Z a-z 0-9 _ : -) "
                                 f"to strings of at most {MAX_METADATA_VALUE} visible characters (no control, format or invisible "
                                 "ones); stored on the ledger record"})

    @post_load
    def _distinct_tags(self, data, **kwargs):
        """A tag given twice is one tag (each tag counts a call once)."""
        data["tags"] = list(dict.fromkeys(data["tags"]))
        return data


class GeneratedCaseSchema(Schema):
    title = fields.String()
    description = fields.String()
    preconditions = fields.List(fields.String())
    steps = fields.List(fields.String())
    expectedResult = fields.String()
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    type = fields.String(validate=validate.OneOf(TYPES))


class UsageSummarySchema(Schema):
    provider = fields.String()
    modelName = fields.String()
    promptTokens = fields.Integer()
    completionTokens = fields.Integer()
    cachedInputTokens = fields.Integer()
    reasoningTokens = fields.Integer()
    totalTokens = fields.Integer()
    cost = fields.Float()
    priced = fields.Boolean()
    usageReported = fields.Boolean()
    estimated = fields.Boolean()
    callIds = fields.List(fields.String())


class ReferenceSchema(Schema):
    id = fields.String()
    title = fields.String()
    similarity = fields.Float()


def rag_status_field():
    return fields.String(metadata={"description": "off (useRAG false), searched (the query was embedded and the "
                                                  "caller's saved cases ranked by cosine), unavailable (embeddings "
                                                  "failed: generated without references), not_searched (an estimate "
                                                  "makes no embedding call)"})


class GenerationSchema(Schema):
    testCases = fields.List(fields.Nested(GeneratedCaseSchema))
    usage = fields.Nested(UsageSummarySchema)
    references = fields.List(fields.Nested(ReferenceSchema))
    ragStatus = rag_status_field()


class EstimateSchema(Schema):
    estimatedInputTokens = fields.Integer()
    estimatedCostUsd = fields.Float(allow_none=True)
    reservedTokens = fields.Integer()
    reservedCostUsd = fields.Float()
    modelName = fields.String()
    provider = fields.String()
    method = fields.String()
    note = fields.String()
    references = fields.List(fields.Nested(ReferenceSchema))
    ragStatus = rag_status_field()


class TokenInfoQuerySchema(Schema):
    provider = fields.String(validate=validate.Length(min=1, max=40), load_default=None)
    model = fields.String(validate=Pattern(MODEL_NAME, error="Not a valid model name."), load_default=None)


class TierSchema(Schema):
    aboveInputTokens = fields.Integer()
    inputPer1M = fields.Float(allow_none=True)
    cachedInputPer1M = fields.Float(allow_none=True)
    cacheWritePer1M = fields.Float(allow_none=True)
    outputPer1M = fields.Float(allow_none=True)


class PricingSchema(Schema):
    inputPer1M = fields.Float(allow_none=True)
    cachedInputPer1M = fields.Float(allow_none=True)
    cacheWritePer1M = fields.Float(allow_none=True)
    outputPer1M = fields.Float(allow_none=True)
    tiers = fields.List(fields.Nested(TierSchema))
    currency = fields.String()
    source = fields.String()


class LimitsSchema(Schema):
    maxInputTokens = fields.Integer(allow_none=True)
    maxOutputTokens = fields.Integer()


class TokenInfoSchema(Schema):
    model = fields.String()
    provider = fields.String()
    pricing = fields.Nested(PricingSchema)
    limits = fields.Nested(LimitsSchema)
    estimationMethod = fields.String()
    note = fields.String()
