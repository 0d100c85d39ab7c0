from marshmallow import Schema, fields, validate

from backend.schemas import ObjectIdString, UTCDateTime


class RegisterSchema(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=8, max=256))
    name = fields.String(validate=validate.Length(max=120), load_default=None)


class LoginSchema(Schema):
    email = fields.Email(required=True)
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=256))


class UserSchema(Schema):
    id = ObjectIdString(attribute="_id")
    email = fields.String()
    name = fields.String(allow_none=True)
    role = fields.String(metadata={"description": "admin: a platform admin, who sees every organization"})
    orgId = ObjectIdString(metadata={"description": "the user's organization"})
    orgRole = fields.String(metadata={"description": "admin or member of their organization; an organization "
                                                     "admin uses the admin API within it"})
    teamId = ObjectIdString(allow_none=True)
    is_active = fields.Boolean(attribute="isActive", data_key="isActive")
    created_at = UTCDateTime(attribute="createdAt", data_key="createdAt")


class TokensSchema(Schema):
    access_token = fields.String(attribute="accessToken", data_key="accessToken")
    refresh_token = fields.String(attribute="refreshToken", data_key="refreshToken")
    user = fields.Nested(UserSchema)


class AccessTokenSchema(Schema):
    access_token = fields.String(attribute="accessToken", data_key="accessToken")
