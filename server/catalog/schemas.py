"""Shapes of questionnaire data that cross the wire."""

from __future__ import annotations

import marshmallow as ma
from flask_smorest.fields import Upload

from server.catalog.service import missing_attachments


class ProblemSchema(ma.Schema):
    level = ma.fields.String()
    message = ma.fields.String()
    sheet = ma.fields.String(allow_none=True)
    row = ma.fields.Integer(allow_none=True)
    column = ma.fields.String(allow_none=True)


class AttachmentSchema(ma.Schema):
    filename = ma.fields.String()
    md5 = ma.fields.String()
    sha256 = ma.fields.String()
    size = ma.fields.Integer()
    content_type = ma.fields.String()


class FormVersionSchema(ma.Schema):
    version = ma.fields.String()
    title = ma.fields.String()
    state = ma.fields.String()
    encryption = ma.fields.String()
    xform_md5 = ma.fields.String()
    uploaded_at = ma.fields.DateTime()
    published_at = ma.fields.DateTime(allow_none=True)
    closed_at = ma.fields.DateTime(allow_none=True)
    warnings = ma.fields.List(ma.fields.Nested(ProblemSchema))
    attachments = ma.fields.List(ma.fields.Nested(AttachmentSchema))
    missing_attachments = ma.fields.Function(lambda v: missing_attachments(v))


class FormSchema(ma.Schema):
    form_id = ma.fields.String()
    title = ma.fields.String()
    registry_mode = ma.fields.String()
    district_ids = ma.fields.Function(lambda f: sorted(f.district_ids))
    versions = ma.fields.List(ma.fields.Nested(FormVersionSchema))


class UploadResultSchema(ma.Schema):
    created = ma.fields.Boolean()
    form = ma.fields.Nested(FormSchema)
    version = ma.fields.Nested(FormVersionSchema)


class FormUploadFilesSchema(ma.Schema):
    file = Upload(required=True, metadata={"description": "the XLSForm (.xlsx, .xls or .csv)"})


class FormUploadFieldsSchema(ma.Schema):
    draft = ma.fields.Boolean(load_default=False, metadata={"description": "keep as a draft"})
    district_ids = ma.fields.List(ma.fields.Integer(), load_default=None, allow_none=True)


class AttachmentFilesSchema(ma.Schema):
    file = Upload(required=True)


class AssignmentSchema(ma.Schema):
    district_ids = ma.fields.List(ma.fields.Integer(), required=True)


class RegistryModeSchema(ma.Schema):
    registry_mode = ma.fields.String(
        required=True, validate=ma.validate.OneOf(["approval", "receipt"])
    )


class KeySchema(ma.Schema):
    id = ma.fields.UUID()
    fingerprint = ma.fields.String()
    public_key = ma.fields.String()
    active = ma.fields.Boolean()
    created_at = ma.fields.DateTime()
    retired_at = ma.fields.DateTime(allow_none=True)
