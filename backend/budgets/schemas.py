from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from backend.admin.schemas import ProjectionSchema
from backend.schemas import (
    MAX_PAGE_SIZE,
    TAG,
    LocalDateRangeSchema,
    ObjectIdString,
    Pattern,
    UTCDateTime,
    page_field,
)

# Counters keep cost in 1e-10 USD in an int64: limits stay well inside it.
POSITIVE_TOKENS = validate.Range(min=1, max=10**15)
POSITIVE_USD = validate.Range(min=0, min_inclusive=False, max=10**8)


class BudgetInputSchema(Schema):
    """Limits per day and month of the organization's time zone; null or absent means no limit of that kind."""

    tokensPerDay = fields.Integer(validate=POSITIVE_TOKENS, allow_none=True, load_default=None)
    usdPerDay = fields.Float(validate=POSITIVE_USD, allow_none=True, load_default=None)
    tokensPerMonth = fields.Integer(validate=POSITIVE_TOKENS, allow_none=True, load_default=None)
    usdPerMonth = fields.Float(validate=POSITIVE_USD, allow_none=True, load_default=None)

    @validates_schema
    def _at_least_one(self, data, **kwargs):
        if all(value is None for value in data.values()):
            raise ValidationError("Set at least one of tokensPerDay, usdPerDay, tokensPerMonth, usdPerMonth.",
                                  "tokensPerDay")


class BudgetSchema(Schema):
    scope = fields.Function(lambda budget: budget.get("scope", "user"),
                            metadata={"description": "user, team, org or key (the default budget: user)"})
    userId = fields.Function(lambda budget: str(budget["_id"]) if budget.get("scope", "user") == "user" else None,
                             metadata={"description": "the user's id, or default; null for team and org budgets"})
    orgId = ObjectIdString(allow_none=True)
    teamId = ObjectIdString(allow_none=True)
    apiKeyId = ObjectIdString(allow_none=True)
    tokensPerDay = fields.Integer(allow_none=True)
    usdPerDay = fields.Float(allow_none=True)
    tokensPerMonth = fields.Integer(allow_none=True)
    usdPerMonth = fields.Float(allow_none=True)
    updatedAt = UTCDateTime()
    updatedBy = ObjectIdString(allow_none=True, metadata={"description": "the admin who set it last"})
    setBy = fields.String(allow_none=True, metadata={
        "description": "platform or organization: the level of the admin who set it last (null: set before this "
                       "was recorded)"})
    ceiling = fields.Dict(keys=fields.String(), values=fields.Raw(), allow_none=True, metadata={
        "description": "the limits a platform admin set: an organization admin may tighten them, never loosen or "
                       "remove them"})


class BudgetListSchema(Schema):
    default = fields.Nested(BudgetSchema, allow_none=True)
    users = fields.List(fields.Nested(BudgetSchema))
    teams = fields.List(fields.Nested(BudgetSchema))
    orgs = fields.List(fields.Nested(BudgetSchema))
    keys = fields.List(fields.Nested(BudgetSchema))


class AmountsSchema(Schema):
    tokens = fields.Integer(allow_none=True)
    usd = fields.Float(allow_none=True)


class WindowUsageSchema(Schema):
    window = fields.String()
    period = fields.String(metadata={"description": "the local day (YYYY-MM-DD) or month (YYYY-MM) of timeZone"})
    timeZone = fields.String(metadata={"description": "the IANA zone the window is counted in (your organization's)"})
    startsAt = UTCDateTime()
    resetsAt = UTCDateTime()
    resetsAtLocal = fields.String(metadata={"description": "resetsAt in the zone in effect when it resets, ISO 8601 "
                                                           "with its offset"})
    limits = fields.Nested(AmountsSchema)
    used = fields.Nested(AmountsSchema)
    remaining = fields.Nested(AmountsSchema)


class MyUsageSchema(Schema):
    windows = fields.List(fields.Nested(WindowUsageSchema))
    projection = fields.Nested(ProjectionSchema, metadata={"description": "where your month is heading"})


class MyHistoryQuerySchema(LocalDateRangeSchema):
    page = page_field()
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE_SIZE), load_default=50)
    tag = fields.String(validate=Pattern(TAG, error="Not a valid tag."))
    model = fields.String(validate=validate.Length(min=1, max=200))
    operation = fields.String(validate=validate.Length(min=1, max=64),
                              metadata={"description": "the type of call: test_generation, embedding, ..."})


class MyBreakdownQuerySchema(LocalDateRangeSchema):
    by = fields.String(required=True, validate=validate.OneOf(("model", "tag", "operation")),
                       metadata={"description": "operation: by type of call (generations, embeddings)"})
    tag = fields.String(validate=Pattern(TAG, error="Not a valid tag."))
