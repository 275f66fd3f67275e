"""Shapes of review data that cross the wire."""

from __future__ import annotations

import marshmallow as ma

from server.intake.models import REVIEW_STATES
from server.intake.schemas import SubmissionDetailSchema
from server.review.service import DECISIONS

QUEUE_STATES = [*REVIEW_STATES, "waiting", "all"]


class ReviewQueueFilterSchema(ma.Schema):
    form_id = ma.fields.String(load_default=None)
    district_id = ma.fields.Integer(load_default=None)
    submitter_id = ma.fields.UUID(load_default=None, metadata={"description": "enumerator"})
    state = ma.fields.String(
        load_default="waiting",
        validate=ma.validate.OneOf(QUEUE_STATES),
        metadata={"description": "a review state, `waiting` (not decided yet) or `all`"},
    )
    since = ma.fields.Date(load_default=None, metadata={"description": "received on or after"})
    until = ma.fields.Date(load_default=None, metadata={"description": "received on or before"})


class ReviewQueueQuerySchema(ReviewQueueFilterSchema):
    order = ma.fields.String(
        load_default="newest", validate=ma.validate.OneOf(["newest", "oldest"])
    )
    after = ma.fields.String(
        load_default=None, metadata={"description": "`next_cursor` of the previous page"}
    )
    before = ma.fields.String(
        load_default=None, metadata={"description": "`previous_cursor` to page back"}
    )
    per_page = ma.fields.Integer(load_default=50, validate=ma.validate.Range(1, 200))


class ReviewQueueItemSchema(ma.Schema):
    id = ma.fields.UUID()
    form_id = ma.fields.Function(lambda s: s.form.form_id)
    form_title = ma.fields.Function(lambda s: s.form.title)
    instance_id = ma.fields.String()
    instance_name = ma.fields.String(allow_none=True)
    submitter = ma.fields.Function(lambda s: s.submitter.username if s.submitter else None)
    district = ma.fields.Function(lambda s: s.district.name if s.district else None)
    received_at = ma.fields.DateTime()
    processing_state = ma.fields.String()
    review_state = ma.fields.String()


class ReviewQueuePageSchema(ma.Schema):
    total = ma.fields.Integer()
    next_cursor = ma.fields.String(allow_none=True)
    previous_cursor = ma.fields.String(allow_none=True)
    submissions = ma.fields.List(ma.fields.Nested(ReviewQueueItemSchema), attribute="rows")


class ReviewDecisionSchema(ma.Schema):
    state = ma.fields.String(required=True, validate=ma.validate.OneOf(DECISIONS))
    expected_version = ma.fields.Integer(
        required=True,
        validate=ma.validate.Range(0),
        metadata={"description": "the `review_version` you read; 409 when it moved on"},
    )
    comment = ma.fields.String(load_default="", validate=ma.validate.Length(max=5000))


class ReviewDecisionResultSchema(ma.Schema):
    review_state = ma.fields.Function(lambda d: d.submission.review_state)
    review_version = ma.fields.Function(lambda d: d.transition.seq)
    registry_changes = ma.fields.Integer(
        metadata={"description": "registry changes applied (approval) or discarded (rejection)"}
    )


class ReviewCommentInSchema(ma.Schema):
    body = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=5000))


class ReviewCommentSchema(ma.Schema):
    id = ma.fields.Integer()
    author = ma.fields.String(attribute="author_name")
    body = ma.fields.String()
    review_state = ma.fields.Function(lambda c: c.transition.to_state if c.transition else None)
    at = ma.fields.DateTime()


class SubmissionEditInSchema(ma.Schema):
    expected_version = ma.fields.Integer(required=True, validate=ma.validate.Range(0))
    changes = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Raw(allow_none=True),
        required=True,
        metadata={
            "description": "answer path (`head/national_id`, `member[2]/full_name`) → new "
            "value (text, or a list for select_multiple; null clears)"
        },
    )


class SubmissionEditSchema(ma.Schema):
    version = ma.fields.Integer()
    changed_fields = ma.fields.Dict(metadata={"description": "path → [before, after]"})
    editor = ma.fields.String(attribute="editor_name")
    at = ma.fields.DateTime()


class SubmissionEditWithDataSchema(SubmissionEditSchema):
    data = ma.fields.Raw()


class ReviewTransitionSchema(ma.Schema):
    seq = ma.fields.Integer()
    from_state = ma.fields.String()
    to_state = ma.fields.String()
    actor = ma.fields.String(attribute="actor_name")
    at = ma.fields.DateTime()


class ReviewPendingChangeSchema(ma.Schema):
    list_name = ma.fields.String()
    entity_id = ma.fields.UUID()
    create = ma.fields.Boolean()
    update = ma.fields.Boolean()
    label = ma.fields.String(allow_none=True)
    properties = ma.fields.Dict()
    state = ma.fields.String()
    message = ma.fields.String(allow_none=True)


class ReviewCandidateSchema(ma.Schema):
    id = ma.fields.Integer()
    entity_id = ma.fields.UUID()
    candidate_id = ma.fields.UUID()
    probability = ma.fields.Float()
    band = ma.fields.String()
    state = ma.fields.String()


class ReviewSchema(ma.Schema):
    submission = ma.fields.Nested(SubmissionDetailSchema)
    review_state = ma.fields.Function(lambda r: r.submission.review_state)
    review_version = ma.fields.Integer(attribute="version")
    transitions = ma.fields.List(ma.fields.Nested(ReviewTransitionSchema))
    comments = ma.fields.List(ma.fields.Nested(ReviewCommentSchema))
    edits = ma.fields.List(ma.fields.Nested(SubmissionEditSchema))
    pending_changes = ma.fields.List(ma.fields.Nested(ReviewPendingChangeSchema))
    candidates = ma.fields.List(ma.fields.Nested(ReviewCandidateSchema))
    conflicts = ma.fields.Function(lambda r: [conflict.id for conflict in r.conflicts])


class ReviewBulkApproveSchema(ReviewQueueFilterSchema):
    cutoff = ma.fields.AwareDateTime(
        load_default=None,
        default_timezone=None,
        metadata={"description": "only submissions received at or before this moment"},
    )


class ReviewBulkResultSchema(ma.Schema):
    approved = ma.fields.Integer()
    skipped = ma.fields.Integer()
    registry_changes = ma.fields.Integer()
    reasons = ma.fields.List(ma.fields.String())


class ReviewDistrictCountSchema(ma.Schema):
    name = ma.fields.String()
    counts = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    total = ma.fields.Integer()


class ReviewEnumeratorCountSchema(ReviewDistrictCountSchema):
    username = ma.fields.String()


class ReviewRejectionCountSchema(ReviewEnumeratorCountSchema):
    rejected = ma.fields.Integer()


class ReviewDayCountSchema(ma.Schema):
    day = ma.fields.Date()
    count = ma.fields.Integer()


class ReviewDashboardSchema(ma.Schema):
    by_state = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    by_district = ma.fields.List(ma.fields.Nested(ReviewDistrictCountSchema))
    by_enumerator = ma.fields.List(ma.fields.Nested(ReviewEnumeratorCountSchema))
    most_rejected = ma.fields.List(ma.fields.Nested(ReviewRejectionCountSchema))
    per_day = ma.fields.List(ma.fields.Nested(ReviewDayCountSchema))
    oldest_waiting = ma.fields.Nested(ReviewQueueItemSchema, allow_none=True)
    open_candidates = ma.fields.Integer()
    open_conflicts = ma.fields.Integer()
