"""Registry API: search, records with history, change feed, match candidates, merges,
conflicts. (The supervisor pages for the same live in server/review.)"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from server.accounts.auth import current_user
from server.accounts.service import require
from server.api import api_blueprint
from server.db import db
from server.registry import service
from server.registry.schemas import (
    CandidateSchema,
    ChangesQuerySchema,
    ConflictSchema,
    DecisionSchema,
    EntityDeltaSchema,
    EntityDetailSchema,
    MergeSchema,
    ResolveSchema,
    SearchPageSchema,
    SearchQuerySchema,
)

api_bp = api_blueprint("registry_api", __name__, "/registry", "The household registry")


@api_bp.route("/entities")
class Entities(MethodView):
    @api_bp.arguments(SearchQuerySchema, location="query")
    @api_bp.response(200, SearchPageSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Search households (or members) by name, id, national ID or phone, in your districts."""
        rows, total = service.search_entities(
            db.session,
            current_user(),
            service.EntitySearch(
                query=query["q"],
                list_name=query["list_name"],
                district_id=query["district_id"],
                page=query["page"],
                per_page=query["per_page"],
            ),
        )
        return {
            "total": total,
            "page": query["page"],
            "per_page": query["per_page"],
            "entities": rows,
        }


@api_bp.route("/entities/<uuid:entity_id>")
class EntityItem(MethodView):
    @api_bp.response(200, EntityDetailSchema)
    def get(self, entity_id: Any) -> Any:
        """A household or member with its members and full history; merged-away ids
        answer with the record they were merged into."""
        entity = service.get_entity(db.session, current_user(), entity_id)
        entity.members = service.members_of(db.session, entity)  # type: ignore[attr-defined]
        return entity


@api_bp.route("/changes")
class Changes(MethodView):
    @api_bp.arguments(ChangesQuerySchema, location="query")
    @api_bp.response(200, EntityDeltaSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """The change feed for your districts after `since` (a sequence number)."""
        user = current_user()
        require(user, "registry.read")
        return service.entity_delta(db.session, user, since=query["since"], limit=query["limit"])


@api_bp.route("/candidates")
class Candidates(MethodView):
    @api_bp.response(200, CandidateSchema(many=True))
    def get(self) -> Any:
        """Open match candidates (suspected duplicates), strongest first."""
        return service.list_candidates(db.session, current_user())


@api_bp.route("/candidates/<int:candidate_id>/decision")
class CandidateDecision(MethodView):
    @api_bp.arguments(DecisionSchema)
    @api_bp.response(200, CandidateSchema)
    def post(self, body: dict[str, Any], candidate_id: int) -> Any:
        """Merge the pair or keep them separate."""
        user = current_user()
        candidate = service.get_candidate(db.session, user, candidate_id)
        return service.decide_candidate(db.session, user, candidate, body["decision"])


@api_bp.route("/merges/<int:merge_id>/undo")
class MergeUndo(MethodView):
    @api_bp.response(200, MergeSchema)
    def post(self, merge_id: int) -> Any:
        """Undo a merge: both records are active again."""
        return service.unmerge(db.session, current_user(), service.get_merge(db.session, merge_id))


@api_bp.route("/conflicts")
class Conflicts(MethodView):
    @api_bp.response(200, ConflictSchema(many=True))
    def get(self) -> Any:
        """Offline updates made on stale versions whose overlapping fields wait for you."""
        return service.list_conflicts(db.session, current_user())


@api_bp.route("/conflicts/<int:conflict_id>/resolve")
class ConflictResolve(MethodView):
    @api_bp.arguments(ResolveSchema)
    @api_bp.response(200, ConflictSchema)
    def post(self, body: dict[str, Any], conflict_id: int) -> Any:
        """Pick, per property, the registry's value or the submitted one."""
        user = current_user()
        conflict = service.get_conflict(db.session, user, conflict_id)
        service.resolve_conflict(db.session, user, conflict, body["choices"])
        return conflict
