from marshmallow import Schema, fields, validate

from backend.config import LLM_PROVIDERS
from backend.reconciliation.services import VERDICT_ORDER
from backend.schemas import DateRangeSchema, UTCDateTime


class ReconciliationQuerySchema(DateRangeSchema):
    provider = fields.String(validate=validate.OneOf(LLM_PROVIDERS), metadata={"description": "only this provider"})


class CountsSchema(Schema):
    requests = fields.Integer(allow_none=True, metadata={"description": "null where not reported (Anthropic)"})
    uncachedInputTokens = fields.Integer()
    cachedInputTokens = fields.Integer()
    cacheWriteTokens = fields.Integer()
    outputTokens = fields.Integer()


class LedgerCountsSchema(CountsSchema):
    estimatedRequests = fields.Integer(metadata={"description": "calls whose tokens the ledger estimated"})


class ModelReconciliationSchema(Schema):
    model = fields.String()
    verdict = fields.String(allow_none=True, metadata={"description": "null when the report was not read"})
    ledger = fields.Nested(LedgerCountsSchema)
    reported = fields.Nested(CountsSchema, allow_none=True)
    difference = fields.Nested(CountsSchema, allow_none=True, metadata={"description": "reported minus ledger"})


class FiltersSchema(Schema):
    projectId = fields.String(allow_none=True)
    apiKeyId = fields.String(allow_none=True)


class MidnightSchema(Schema):
    datedBy = fields.String(metadata={"description": "completion (timestamp + latencyMs, as billed) or request start"})
    movedOut = fields.List(fields.String(), metadata={"description": "callIds dated on this day by their start, "
                                                                     "counted on the next (they completed after midnight)"})
    movedIn = fields.List(fields.String(), metadata={"description": "callIds dated on the day before, counted here"})


class ReconciliationSchema(Schema):
    provider = fields.String()
    date = fields.String(metadata={"description": "UTC day, YYYY-MM-DD"})
    verdict = fields.String(validate=validate.OneOf(tuple(VERDICT_ORDER)))
    reason = fields.String(allow_none=True, metadata={"description": "why the day is unavailable or not_supported"})
    checkedAt = UTCDateTime()
    final = fields.Boolean(metadata={"description": "false while the day is provisional (it ended less than "
                                                  "RECONCILE_SETTLE_HOURS ago): looked at again, never alerted"})
    explanation = fields.String(allow_none=True, metadata={
        "description": "for a mismatch on a day with estimated calls: why the difference may be theirs"})
    midnight = fields.Nested(MidnightSchema, allow_none=True,
                             metadata={"description": "the calls that crossed a midnight of the day, when any did"})
    tolerance = fields.Integer()
    requestsCompared = fields.Boolean()
    filters = fields.Nested(FiltersSchema)
    ledger = fields.Nested(LedgerCountsSchema)
    reported = fields.Nested(CountsSchema, allow_none=True)
    difference = fields.Nested(CountsSchema, allow_none=True, metadata={"description": "reported minus ledger"})
    models = fields.List(fields.Nested(ModelReconciliationSchema))


class ReconciliationListSchema(Schema):
    startDate = fields.Date()
    endDate = fields.Date()
    results = fields.List(fields.Nested(ReconciliationSchema))
