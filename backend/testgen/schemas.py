from marshmallow import Schema, fields, validate

MAX_TEST_CASES = 20
MAX_PROMPT_CHARS = 20_000
MAX_FILE_CHARS = 200_000


class GenerationRequestSchema(Schema):
    prompt = fields.String(required=True, validate=validate.Length(min=1, max=MAX_PROMPT_CHARS))
    file_content = fields.String(data_key="fileContent", validate=validate.Length(max=MAX_FILE_CHARS), load_default=None)
    count = fields.Integer(validate=validate.Range(min=1, max=MAX_TEST_CASES), load_default=5)
    model = fields.String(validate=validate.Length(min=1, max=200), load_default=None)


class TestCaseSchema(Schema):
    title = fields.String()
    description = fields.String()
    preconditions = fields.List(fields.String())
    steps = fields.List(fields.String())
    expectedResult = fields.String()
    priority = fields.String()
    type = fields.String()


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
    callIds = fields.List(fields.String())


class GenerationSchema(Schema):
    testCases = fields.List(fields.Nested(TestCaseSchema))
    usage = fields.Nested(UsageSummarySchema)
