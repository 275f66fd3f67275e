"""JSON bodies of the batch sync API (docs/sync-protocol.md), one schema per shape."""

from __future__ import annotations

import marshmallow as ma

from server.intake.sync_service import PROTOCOL

_SHA256 = ma.validate.Regexp(r"^[0-9a-f]{64}$", error="lower-case hex sha256 (64 characters)")


class _Strict(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE  # newer clients may send more; protocol v1 ignores it


class EnrollSchema(_Strict):
    name = ma.fields.String(load_default="", validate=ma.validate.Length(max=200))
    app_version = ma.fields.String(load_default="", validate=ma.validate.Length(max=100))
    protocol = ma.fields.Integer(
        load_default=PROTOCOL,
        validate=ma.validate.Range(1, PROTOCOL, error=f"this server speaks protocol 1-{PROTOCOL}"),
    )
    cursor = ma.fields.Integer(load_default=None, validate=ma.validate.Range(min=0))


class ListingSchema(_Strict):
    instance_id = ma.fields.String(required=True, validate=ma.validate.Length(1, 255))
    form_id = ma.fields.String(required=True, validate=ma.validate.Length(1, 255))
    version = ma.fields.String(required=True, validate=ma.validate.Length(1, 255))
    sha256 = ma.fields.String(required=True, validate=_SHA256)
    size = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=1))


class OpenSessionSchema(_Strict):
    items = ma.fields.List(ma.fields.Nested(ListingSchema), required=True)


class StatusQuerySchema(_Strict):
    instance_ids = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(1, 255)),
        required=True,
        validate=ma.validate.Length(max=1000),
    )
