"""Shapes of submission data that cross the wire."""

from __future__ import annotations

import marshmallow as ma
from flask import url_for


class SubmissionQuerySchema(ma.Schema):
    form_id = ma.fields.String(load_default=None)
    version = ma.fields.String(load_default=None)
    processing_state = ma.fields.String(load_default=None)
    review_state = ma.fields.String(load_default=None)
    district_id = ma.fields.Integer(load_default=None)
    submitter = ma.fields.String(load_default=None)
    since = ma.fields.DateTime(load_default=None)
    until = ma.fields.DateTime(load_default=None)
    current_only = ma.fields.Boolean(load_default=True)
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(1, 1_000_000))
    per_page = ma.fields.Integer(load_default=50, validate=ma.validate.Range(1, 500))


class SubmissionAttachmentSchema(ma.Schema):
    name = ma.fields.Function(lambda a: a.plain_name or a.name)
    size = ma.fields.Integer(allow_none=True)
    received = ma.fields.Function(lambda a: a.sha256 is not None)
    url = ma.fields.Function(
        lambda a: (
            url_for(
                "submissions_api.SubmissionAttachmentItem",
                submission_id=a.submission_id,
                name=a.plain_name or a.name,
            )
            if a.sha256
            else None
        )
    )


class SubmissionSchema(ma.Schema):
    id = ma.fields.UUID()
    form_id = ma.fields.Function(lambda s: s.form.form_id)
    version = ma.fields.Function(lambda s: s.form_version.version)
    instance_id = ma.fields.String()
    instance_name = ma.fields.String(allow_none=True)
    deprecated_id = ma.fields.String(allow_none=True)
    current = ma.fields.Boolean()
    submitter = ma.fields.Function(lambda s: s.submitter.username if s.submitter else None)
    district = ma.fields.Function(lambda s: s.district.code if s.district else None)
    received_at = ma.fields.DateTime()
    encrypted = ma.fields.Boolean()
    complete = ma.fields.Boolean()
    processing_state = ma.fields.String()
    attempts = ma.fields.Integer()
    last_error = ma.fields.String(allow_none=True)
    processed_at = ma.fields.DateTime(allow_none=True)
    review_state = ma.fields.String()
    attachments = ma.fields.List(ma.fields.Nested(SubmissionAttachmentSchema))


class SubmissionDetailSchema(SubmissionSchema):
    data = ma.fields.Raw(allow_none=True)
    parse_problems = ma.fields.List(ma.fields.String())


class SubmissionPageSchema(ma.Schema):
    total = ma.fields.Integer()
    page = ma.fields.Integer()
    per_page = ma.fields.Integer()
    submissions = ma.fields.List(ma.fields.Nested(SubmissionSchema))


class ReprocessSchema(ma.Schema):
    failed = ma.fields.Boolean(load_default=False)
    submission_ids = ma.fields.List(ma.fields.UUID(), load_default=list)
