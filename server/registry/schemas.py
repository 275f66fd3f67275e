"""Shapes of registry data that cross the wire."""

from __future__ import annotations

import marshmallow as ma


class EntityVersionSchema(ma.Schema):
    version = ma.fields.Integer()
    label = ma.fields.String()
    properties = ma.fields.Dict()
    changes = ma.fields.Dict()
    source = ma.fields.String()
    submission_id = ma.fields.UUID(allow_none=True)
    base_version = ma.fields.Integer(allow_none=True)
    created_at = ma.fields.DateTime()


class EntitySchema(ma.Schema):
    id = ma.fields.UUID()
    list_name = ma.fields.String()
    label = ma.fields.String()
    version = ma.fields.Integer()
    properties = ma.fields.Dict()
    district = ma.fields.Function(lambda e: e.district.code if e.district else None)
    household_id = ma.fields.UUID(allow_none=True)
    merged_into_id = ma.fields.UUID(allow_none=True)
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class EntityDetailSchema(EntitySchema):
    members = ma.fields.List(ma.fields.Nested(EntitySchema))
    versions = ma.fields.List(ma.fields.Nested(EntityVersionSchema))


class SearchQuerySchema(ma.Schema):
    q = ma.fields.String(load_default="")
    list_name = ma.fields.String(load_default="households")
    district_id = ma.fields.Integer(load_default=None)
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(1, 1_000_000))
    per_page = ma.fields.Integer(load_default=50, validate=ma.validate.Range(1, 500))


class SearchPageSchema(ma.Schema):
    total = ma.fields.Integer()
    page = ma.fields.Integer()
    per_page = ma.fields.Integer()
    entities = ma.fields.List(ma.fields.Nested(EntitySchema))


class ChangesQuerySchema(ma.Schema):
    since = ma.fields.Integer(load_default=0, validate=ma.validate.Range(0))
    limit = ma.fields.Integer(load_default=500, validate=ma.validate.Range(1, 5000))


class EntityChangeSchema(ma.Schema):
    seq = ma.fields.Integer()
    list_name = ma.fields.String()
    entity_id = ma.fields.String()
    operation = ma.fields.String(metadata={"description": "upsert, remove or merge"})
    version = ma.fields.Integer()
    label = ma.fields.String()
    properties = ma.fields.Dict()
    merged_into = ma.fields.String(allow_none=True)


class EntityDeltaSchema(ma.Schema):
    changes = ma.fields.List(ma.fields.Nested(EntityChangeSchema))
    cursor = ma.fields.Integer(metadata={"description": "pass as `since` to get what follows"})
    more = ma.fields.Boolean()


class CandidateSchema(ma.Schema):
    id = ma.fields.Integer()
    list_name = ma.fields.String()
    entity = ma.fields.Nested(EntitySchema)
    candidate = ma.fields.Nested(EntitySchema)
    weight = ma.fields.Float()
    probability = ma.fields.Float()
    contributions = ma.fields.Dict()
    band = ma.fields.String()
    state = ma.fields.String()


class DecisionSchema(ma.Schema):
    decision = ma.fields.String(required=True, validate=ma.validate.OneOf(["merge", "separate"]))


class MergeSchema(ma.Schema):
    id = ma.fields.Integer()
    survivor_id = ma.fields.UUID()
    merged_id = ma.fields.UUID()
    automatic = ma.fields.Boolean()
    created_at = ma.fields.DateTime()
    undone_at = ma.fields.DateTime(allow_none=True)


class ConflictSchema(ma.Schema):
    id = ma.fields.Integer()
    entity_id = ma.fields.UUID()
    submission_id = ma.fields.UUID(allow_none=True)
    base_version = ma.fields.Integer()
    server_version = ma.fields.Integer()
    fields = ma.fields.Dict()
    state = ma.fields.String()


class ResolveSchema(ma.Schema):
    choices = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        required=True,
        metadata={"description": "property → 'server' or 'submitted'"},
    )
