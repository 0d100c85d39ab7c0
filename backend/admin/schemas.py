from marshmallow import Schema, fields, validate

from backend.schemas import (
    MAX_PAGE_SIZE,
    TAG,
    LocalDateRangeSchema,
    ObjectIdString,
    Pattern,
    UTCDateTime,
    offset_field,
    page_field,
)
from backend.usage.recorder import OUTCOMES

SOURCE = fields.String(validate=validate.OneOf(("rollup", "raw")), load_default="rollup",
                       metadata={"description": "rollup (default) or raw: the ledger itself, for verification"})


OUTCOME = fields.String(validate=validate.OneOf(OUTCOMES),
                        metadata={"description": "only calls of requests that ended so (default: every billed call)"})
OPERATION = fields.String(validate=validate.Length(min=1, max=100), metadata={"description": "only this operation"})
PROVIDER = fields.String(validate=validate.Length(min=1, max=40), metadata={"description": "only this provider"})


class MembershipFilterSchema(Schema):
    """Calls made by members of an organization or team (an organization admin's queries are
    always confined to their organization), or with a tag."""

    org_id = ObjectIdString(data_key="orgId", metadata={"description": "only calls made in this organization"})
    team_id = ObjectIdString(data_key="teamId", metadata={"description": "only calls made in this team"})
    tag = fields.String(validate=Pattern(TAG, error="Not a valid tag."),
                        metadata={"description": "only calls whose request carried this tag"})


class SourcedRangeSchema(LocalDateRangeSchema, MembershipFilterSchema):
    source = SOURCE
    operation = OPERATION
    provider = PROVIDER
    outcome = OUTCOME


class TopUsersQuerySchema(SourcedRangeSchema):
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE_SIZE), load_default=10)


class HistoryQuerySchema(LocalDateRangeSchema, MembershipFilterSchema):
    operation = OPERATION
    provider = PROVIDER
    outcome = OUTCOME
    page = page_field()
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE_SIZE), load_default=50)


class BreakdownQuerySchema(SourcedRangeSchema):
    by = fields.String(required=True,
                       validate=validate.OneOf(("model", "provider", "operation", "outcome", "org", "team", "tag")))
    user_id = ObjectIdString(data_key="userId", load_default=None)


class TimeseriesQuerySchema(SourcedRangeSchema):
    bucket = fields.String(validate=validate.OneOf(("day", "week", "month")), load_default="day")
    group_by = fields.String(data_key="groupBy", load_default="none",
                             validate=validate.OneOf(("none", "model", "provider", "operation", "user", "outcome")))
    user_id = ObjectIdString(data_key="userId", load_default=None)
    limit = fields.Integer(validate=validate.Range(min=1, max=50), load_default=10,
                           metadata={"description": "series kept with a groupBy; the rest are summed as 'other'"})


class LedgerFilterSchema(LocalDateRangeSchema, MembershipFilterSchema):
    operation = OPERATION
    provider = PROVIDER
    outcome = OUTCOME
    model = fields.String(validate=validate.Length(min=1, max=200))
    user_id = ObjectIdString(data_key="userId")


class UsageQuerySchema(LedgerFilterSchema):
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE_SIZE), load_default=50)
    offset = offset_field()
    source = fields.String(validate=validate.OneOf(("rollup", "raw")), load_default="rollup", metadata={
        "description": "where the per-operation stats come from: rollup (default) or raw (the ledger); the records "
                       "are always the ledger's"})


class ExportQuerySchema(LedgerFilterSchema):
    format = fields.String(validate=validate.OneOf(("csv", "ndjson")), load_default="csv")


class TotalsSchema(Schema):
    totalTokens = fields.Integer()
    promptTokens = fields.Integer()
    completionTokens = fields.Integer()
    cachedInputTokens = fields.Integer()
    cacheWriteTokens = fields.Integer()
    reasoningTokens = fields.Integer()
    totalCost = fields.Float()
    totalRequests = fields.Integer()


class OutcomeTotalsSchema(TotalsSchema):
    outcome = fields.String()


class AmountSchema(Schema):
    tokens = fields.Integer()
    cost = fields.Float()


class RateSchema(Schema):
    tokens = fields.Float()
    cost = fields.Float()


class ProjectionSchema(Schema):
    """Where the local month is heading (the month of timeZone that holds now, whatever the range)."""

    month = fields.String()
    timeZone = fields.String()
    monthEnd = UTCDateTime()
    monthToDate = fields.Nested(AmountSchema)
    dailyAverage = fields.Nested(RateSchema, metadata={"description": "over the last 7 whole local days"})
    daysLeft = fields.Float()
    projected = fields.Nested(AmountSchema)
    method = fields.String()


class DashboardSchema(TotalsSchema):
    uniqueUsers = fields.Integer()
    failedCost = fields.Float(metadata={"description": "what the calls of requests that did not end ok cost"})
    failedRequests = fields.Integer()
    byOutcome = fields.List(fields.Nested(OutcomeTotalsSchema))
    projection = fields.Nested(ProjectionSchema)


class TopUserSchema(TotalsSchema):
    id = ObjectIdString(attribute="_id", data_key="_id")
    userEmail = fields.String()


class BreakdownItemSchema(TotalsSchema):
    key = fields.String(allow_none=True, metadata={"description": "null for calls made in no team (by=team)"})
    provider = fields.String()
    label = fields.String(metadata={"description": "by=org and by=team: the organization's or team's name"})
    share = fields.Float()


class PointSchema(TotalsSchema):
    period = fields.String()


class SeriesSchema(Schema):
    key = fields.String()
    label = fields.String()
    totals = fields.Nested(TotalsSchema)
    points = fields.List(fields.Nested(PointSchema))


class TimeseriesSchema(Schema):
    bucket = fields.String()
    groupBy = fields.String()
    startDate = fields.String()
    endDate = fields.String()
    periods = fields.List(fields.String())
    series = fields.List(fields.Nested(SeriesSchema))


class PriceSchema(Schema):
    inputPer1M = fields.Float(allow_none=True)
    cachedInputPer1M = fields.Float(allow_none=True)
    cacheWritePer1M = fields.Float(allow_none=True)
    outputPer1M = fields.Float(allow_none=True)
    source = fields.String()


class UsageRecordSchema(Schema):
    id = ObjectIdString(attribute="_id", data_key="_id")
    userId = ObjectIdString()
    userEmail = fields.String()
    orgId = ObjectIdString(allow_none=True)
    teamId = ObjectIdString(allow_none=True)
    apiKeyId = ObjectIdString(allow_none=True)
    tags = fields.List(fields.String())
    metadata = fields.Dict(keys=fields.String(), values=fields.String())
    provider = fields.String()
    modelName = fields.String()
    responseModel = fields.String()
    promptTokens = fields.Integer()
    completionTokens = fields.Integer()
    cachedInputTokens = fields.Integer()
    cacheWriteTokens = fields.Integer()
    reasoningTokens = fields.Integer()
    totalTokens = fields.Integer()
    cost = fields.Float()
    priced = fields.Boolean()
    usageReported = fields.Boolean()
    estimated = fields.Boolean()
    outcome = fields.String()
    httpStatus = fields.Integer()
    price = fields.Nested(PriceSchema)
    demo = fields.Boolean()
    operation = fields.String()
    timestamp = UTCDateTime()
    date = fields.String()
    callId = fields.String()
    requestId = fields.String()
    latencyMs = fields.Float()


class OperationStatsSchema(Schema):
    operation = fields.String()
    totalTokens = fields.Integer()
    inputTokens = fields.Integer()
    outputTokens = fields.Integer()
    totalRequests = fields.Integer()
    totalCost = fields.Float()


class UsageLogsSchema(Schema):
    data = fields.List(fields.Nested(UsageRecordSchema))
    total = fields.Integer()
    limit = fields.Integer()
    offset = fields.Integer()
    stats = fields.List(fields.Nested(OperationStatsSchema))
