from marshmallow import Schema, fields, validate

from backend.schemas import DateRangeSchema, ObjectIdString, UTCDateTime

MAX_PAGE_SIZE = 100


class TopUsersQuerySchema(DateRangeSchema):
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE_SIZE), load_default=10)


class HistoryQuerySchema(DateRangeSchema):
    page = fields.Integer(validate=validate.Range(min=1), load_default=1)
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE_SIZE), load_default=50)


class TotalsSchema(Schema):
    totalTokens = fields.Integer()
    promptTokens = fields.Integer()
    completionTokens = fields.Integer()
    cachedInputTokens = fields.Integer()
    reasoningTokens = fields.Integer()
    totalCost = fields.Float()
    totalRequests = fields.Integer()


class DashboardSchema(TotalsSchema):
    uniqueUsers = fields.Integer()


class TopUserSchema(TotalsSchema):
    id = ObjectIdString(attribute="_id", data_key="_id")
    userEmail = fields.String()


class PriceSchema(Schema):
    inputPer1M = fields.Float(allow_none=True)
    cachedInputPer1M = fields.Float(allow_none=True)
    outputPer1M = fields.Float(allow_none=True)
    source = fields.String()


class UsageRecordSchema(Schema):
    id = ObjectIdString(attribute="_id", data_key="_id")
    userId = ObjectIdString()
    userEmail = fields.String()
    provider = fields.String()
    modelName = fields.String()
    responseModel = fields.String()
    promptTokens = fields.Integer()
    completionTokens = fields.Integer()
    cachedInputTokens = fields.Integer()
    reasoningTokens = fields.Integer()
    totalTokens = fields.Integer()
    cost = fields.Float()
    priced = fields.Boolean()
    price = fields.Nested(PriceSchema)
    demo = fields.Boolean()
    operation = fields.String()
    timestamp = UTCDateTime()
    date = fields.String()
    callId = fields.String()
    requestId = fields.String()
    latencyMs = fields.Float()
