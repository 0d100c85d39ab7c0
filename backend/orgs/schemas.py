import unicodedata

from marshmallow import (
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates_schema,
)

from backend.config import MODEL_NAME
from backend.timezones import zone
from backend.auth.caller import ORG_ROLES
from backend.schemas import (
    visible,
    MAX_PAGE_SIZE,
    ObjectIdString,
    Pattern,
    UTCDateTime,
    page_field,
)

MAX_ALLOWED_MODELS = 100


def known_zone(name):
    """An IANA time zone name (Asia/Jakarta, UTC); anything else is a 422 naming it."""
    try:
        zone(name)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


TIME_ZONE = fields.String(data_key="timeZone", validate=known_zone,
                          metadata={"description": "IANA time zone of the organization's days (analytics and "
                                                   "budget windows), e.g. Asia/Jakarta; default UTC. A change "
                                                   "takes effect at the next midnight of the zone it replaces."})

# Names are what people type: NFC-normalised, trimmed, 1-100 visible characters.
NAME = fields.String(required=True, validate=[validate.Length(min=1, max=100), visible])


class _NameSchema(Schema):
    name = NAME

    @pre_load
    def _strip(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            try:
                return {**data, "name": unicodedata.normalize("NFC", data["name"]).strip()}
            except UnicodeError:  # a lone surrogate: the validator refuses it
                return data
        return data


class OrgInputSchema(_NameSchema):
    time_zone = TIME_ZONE


class OrgPatchSchema(_NameSchema):
    name = fields.String(validate=NAME.validators)
    allowed_models = fields.List(
        fields.String(validate=Pattern(MODEL_NAME, error="Not a valid model name.")),
        data_key="allowedModels", allow_none=True, validate=validate.Length(min=1, max=MAX_ALLOWED_MODELS),
        metadata={"description": "the models its members may use (on top of what the server allows); "
                                 "null: every model the server allows"})
    time_zone = TIME_ZONE

    @validates_schema
    def _something(self, data, **kwargs):
        if not data:
            raise ValidationError("Send name, allowedModels or timeZone.", "name")


class TeamInputSchema(_NameSchema):
    pass


class OrgSchema(Schema):
    id = ObjectIdString(attribute="_id")
    name = fields.String()
    allowedModels = fields.List(fields.String(), allow_none=True, dump_default=None)
    timeZone = fields.String(dump_default="UTC")
    previousTimeZone = fields.String(allow_none=True, metadata={
        "description": "while a zone change is pending: the zone in effect until timeZoneSince"})
    timeZoneSince = UTCDateTime(allow_none=True)
    memberCount = fields.Integer()
    createdAt = UTCDateTime(allow_none=True)


class TeamSchema(Schema):
    id = ObjectIdString(attribute="_id")
    orgId = ObjectIdString()
    name = fields.String()
    memberCount = fields.Integer()
    createdAt = UTCDateTime()


class MemberInputSchema(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    role = fields.String(required=True, validate=validate.OneOf(ORG_ROLES))
    team_id = ObjectIdString(data_key="teamId", allow_none=True,
                             metadata={"description": "the member's team in this organization; null for none; "
                                                      "absent keeps the team of a user already in it"})


class MemberSchema(Schema):
    id = ObjectIdString(attribute="_id")
    email = fields.String()
    name = fields.String(allow_none=True)
    orgId = ObjectIdString()
    orgRole = fields.String()
    teamId = ObjectIdString(allow_none=True)
    teamName = fields.String(allow_none=True)


class MembersQuerySchema(Schema):
    page = page_field()
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE_SIZE), load_default=50)
