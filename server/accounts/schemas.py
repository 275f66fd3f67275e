"""Shapes of accounts data that cross the wire."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from server.accounts.models import ROLES, TOKEN_KINDS


class TokenRequestSchema(ma.Schema):
    username = ma.fields.String(required=True, validate=validate.Length(1, 80))
    password = ma.fields.String(required=True, load_only=True, validate=validate.Length(1, 1024))
    name = ma.fields.String(load_default="", validate=validate.Length(0, 200))
    hours = ma.fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(1, 24 * 366),
        metadata={"description": "lifetime; defaults to DIIWAAN_API_TOKEN_HOURS"},
    )


class TokenSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    kind = ma.fields.String(dump_only=True)
    name = ma.fields.String(dump_only=True)
    prefix = ma.fields.String(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)
    expires_at = ma.fields.DateTime(dump_only=True, allow_none=True)
    revoked_at = ma.fields.DateTime(dump_only=True, allow_none=True)
    last_used_at = ma.fields.DateTime(dump_only=True, allow_none=True)
    username = ma.fields.Function(lambda token: token.user.username, dump_only=True)


class IssuedTokenSchema(TokenSchema):
    token = ma.fields.String(dump_only=True, metadata={"description": "the secret, shown once"})


class DeviceTokenRequestSchema(ma.Schema):
    user_id = ma.fields.UUID(required=True)
    kind = ma.fields.String(load_default="device", validate=validate.OneOf(TOKEN_KINDS))
    name = ma.fields.String(load_default="", validate=validate.Length(0, 200))
    hours = ma.fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(1, 24 * 3660)
    )


class DistrictSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    code = ma.fields.String(dump_only=True)
    name = ma.fields.String(dump_only=True)
    region = ma.fields.Function(lambda d: {"code": d.region.code, "name": d.region.name})


class UserSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    username = ma.fields.String(required=True, validate=validate.Length(2, 80))
    display_name = ma.fields.String(load_default="", validate=validate.Length(0, 200))
    role = ma.fields.String(required=True, validate=validate.OneOf(ROLES))
    active = ma.fields.Boolean(dump_only=True)
    district_ids = ma.fields.List(ma.fields.Integer(), load_default=list)
    row_version = ma.fields.Integer(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)
    last_login_at = ma.fields.DateTime(dump_only=True, allow_none=True)


class UserCreateSchema(UserSchema):
    password = ma.fields.String(required=True, load_only=True, validate=validate.Length(1, 1024))


class UserUpdateSchema(ma.Schema):
    display_name = ma.fields.String(validate=validate.Length(0, 200))
    role = ma.fields.String(validate=validate.OneOf(ROLES))
    active = ma.fields.Boolean()
    district_ids = ma.fields.List(ma.fields.Integer())
    password = ma.fields.String(load_only=True, validate=validate.Length(1, 1024))
    row_version = ma.fields.Integer(
        metadata={"description": "the row_version you read; a mismatch answers 409"}
    )


class AuditQuerySchema(ma.Schema):
    action = ma.fields.String(load_default=None)
    actor = ma.fields.String(load_default=None)
    target_id = ma.fields.String(load_default=None)
    since = ma.fields.DateTime(load_default=None)
    until = ma.fields.DateTime(load_default=None)
    page = ma.fields.Integer(load_default=1, validate=validate.Range(1, 100000))
    per_page = ma.fields.Integer(load_default=50, validate=validate.Range(1, 500))


class AuditEventSchema(ma.Schema):
    id = ma.fields.Integer()
    at = ma.fields.DateTime()
    actor_name = ma.fields.String()
    action = ma.fields.String()
    target_type = ma.fields.String()
    target_id = ma.fields.String()
    details = ma.fields.Dict()
    remote_addr = ma.fields.String()


class AuditPageSchema(ma.Schema):
    total = ma.fields.Integer()
    page = ma.fields.Integer()
    per_page = ma.fields.Integer()
    events = ma.fields.List(ma.fields.Nested(AuditEventSchema))
