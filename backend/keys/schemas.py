from marshmallow import Schema, fields, validate

from backend.orgs.schemas import NAME
from backend.schemas import ObjectIdString, UTCDateTime


class KeyInputSchema(Schema):
    name = NAME
    team_id = ObjectIdString(data_key="teamId", allow_none=True, metadata={
        "description": "the team its calls count for; absent: yours; null: none (organization admins, or a "
                       "member in no team)"})
    expires_at = UTCDateTime(data_key="expiresAt", allow_none=True, load_default=None,
                             validate=validate.Range(max=UTCDateTime().deserialize("9999-01-01T00:00:00Z")),
                             metadata={"description": "ISO 8601 (UTC when it has no time zone); null or absent: never"})


class KeySchema(Schema):
    id = ObjectIdString(attribute="_id")
    name = fields.String()
    prefix = fields.String(metadata={"description": "the secret's first characters, to tell keys apart"})
    userId = ObjectIdString(metadata={"description": "its owner (who created it): its calls are theirs"})
    userEmail = fields.String()
    orgId = ObjectIdString()
    teamId = ObjectIdString(allow_none=True)
    createdAt = UTCDateTime()
    lastUsedAt = UTCDateTime(allow_none=True, metadata={"description": "updated at most once a minute"})
    expiresAt = UTCDateTime(allow_none=True)


class NewKeySchema(KeySchema):
    secret = fields.String(metadata={"description": "tl_...: shown once, never stored or returned again"})
