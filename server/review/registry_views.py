"""Supervisor pages over the registry: search households, a household with its members
and history, suspected duplicates side by side (merge, keep separate, undo a merge),
and stale-update conflicts (pick per field). The JSON API for the same is the
registry's own (/api/v1/registry)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from server.accounts.auth import login_required, safe_next
from server.accounts.models import User
from server.accounts.service import can, require
from server.db import db
from server.errors import Conflict, DiiwaanError, ValidationFailed
from server.i18n import _
from server.registry import linking
from server.registry import service as registry
from server.registry.models import HOUSEHOLDS, MEMBERS, Entity, MatchCandidate
from server.review import service

pages = Blueprint("registry", __name__, url_prefix="/registry")

# Properties shown first, in this order; the rest follow alphabetically.
PROPERTY_ORDER = (
    "head_name",
    "full_name",
    "name",
    "national_id",
    "phone",
    "sex",
    "date_of_birth",
    "relationship",
    "district",
    "village",
    "hh_size",
    "gps",
)
# Which entity properties a matching comparison field looks at.
COMPARED_PROPERTIES = {
    "name": ("head_name", "full_name", "name"),
    "full_name": ("full_name",),
    "head_name": ("head_name", "name"),
    "head_date_of_birth": ("date_of_birth", "dob"),
    "head_sex": ("sex", "gender"),
    "dob": ("date_of_birth", "dob"),
    "date_of_birth": ("date_of_birth", "dob"),
    "birth": ("date_of_birth", "dob"),
    "sex": ("sex", "gender"),
    "phone": ("phone", "phone_number"),
    "national_id": ("national_id", "id_number"),
    "id": ("national_id", "id_number"),
    "village": ("village",),
    "gps": ("gps", "location", "geopoint"),
    "location": ("gps", "location", "geopoint"),
    "distance": ("gps", "location", "geopoint"),
    "district": ("district",),
}


def _ordered_keys(*property_sets: dict[str, Any]) -> list[str]:
    keys = set().union(*property_sets)
    first = [key for key in PROPERTY_ORDER if key in keys]
    return first + sorted(keys - set(first))


def _same(a: Any, b: Any) -> bool | None:
    if a in (None, "") or b in (None, ""):
        return None
    return " ".join(str(a).lower().split()) == " ".join(str(b).lower().split())


def _names(user_ids: set[Any]) -> dict[Any, str]:
    ids = [user_id for user_id in user_ids if user_id is not None]
    if not ids:
        return {}
    return dict(db.session.execute(select(User.id, User.username).where(User.id.in_(ids))).all())


# ------------------------------------------------------------------------ browse


@pages.get("")
@login_required
def households() -> Any:
    require(g.user, "registry.read")
    list_name = request.args.get("list", HOUSEHOLDS)
    if list_name not in (HOUSEHOLDS, MEMBERS):
        list_name = HOUSEHOLDS
    query = request.args.get("q", "").strip()[:200]
    district_id = request.args.get("district_id", type=int)
    page = max(1, request.args.get("page", 1, type=int))
    rows, total = registry.search_entities(
        db.session,
        g.user,
        registry.EntitySearch(
            query=query, list_name=list_name, district_id=district_id, page=page, per_page=50
        ),
    )
    return render_template(
        "review/households.html",
        rows=rows,
        total=total,
        page=page,
        pages=max(1, -(-total // 50)),
        query=query,
        list_name=list_name,
        district_id=district_id,
        districts=service.districts_for(db.session, g.user),
        members=service.member_counts(db.session, rows) if list_name == HOUSEHOLDS else {},
        can_decide=can(g.user, "registry.decide"),
    )


@pages.get("/entities/<uuid:entity_id>")
@login_required
def entity(entity_id: Any) -> Any:
    record = registry.get_entity(db.session, g.user, entity_id)
    versions = registry.history(db.session, record)
    merges = registry.merges_of(db.session, record)
    household = None
    if record.household_id is not None:
        found = db.session.get(Entity, record.household_id)
        if found is not None and service.entity_visible(g.user, found):
            household = found
    return render_template(
        "review/entity.html",
        entity=record,
        asked_for=entity_id,
        keys=_ordered_keys(record.properties),
        members=registry.members_of(db.session, record) if record.list_name == HOUSEHOLDS else [],
        household=household,
        versions=list(reversed(versions)),
        merges=merges,
        actors=_names({v.actor_id for v in versions} | {m.actor_id for m in merges}),
        candidates=service.candidates_involving(db.session, g.user, record)
        if can(g.user, "registry.decide")
        else [],
        can_decide=can(g.user, "registry.decide"),
    )


# ------------------------------------------------------------ match candidates


@pages.get("/candidates")
@login_required
def candidates() -> Any:
    decided = service.decided_candidates(db.session, g.user)
    return render_template(
        "review/candidates.html",
        open_candidates=registry.list_candidates(db.session, g.user),
        decided=decided,
        merges={
            pair.id: service.merge_of_candidate(db.session, pair)
            for pair in decided
            if pair.state == "merged"
        },
    )


def _comparison(candidate: MatchCandidate) -> dict[str, Any]:
    newer, older = candidate.entity, candidate.candidate
    keys = _ordered_keys(newer.properties, older.properties)
    contributions = dict(candidate.contributions or {})
    rows = []
    for key in keys:
        weight = None
        for field, properties in COMPARED_PROPERTIES.items():
            if field in contributions and key in properties:
                weight = contributions.pop(field)
                break
        if weight is None and key in contributions:
            weight = contributions.pop(key)
        a, b = newer.properties.get(key), older.properties.get(key)
        rows.append({"key": key, "new": a, "old": b, "same": _same(a, b), "weight": weight})
    return {
        "rows": rows,
        "other_contributions": sorted(contributions.items(), key=lambda kv: -abs(kv[1])),
    }


@pages.get("/candidates/<int:candidate_id>")
@login_required
def candidate(candidate_id: int) -> Any:
    pair = registry.get_candidate(db.session, g.user, candidate_id)
    return _candidate_page(pair)


def _candidate_page(pair: MatchCandidate, problem: DiiwaanError | None = None) -> Any:
    households = pair.list_name == HOUSEHOLDS
    return render_template(
        "review/candidate.html",
        pair=pair,
        comparison=_comparison(pair),
        new_members=registry.members_of(db.session, pair.entity) if households else [],
        old_members=registry.members_of(db.session, pair.candidate) if households else [],
        merge=service.merge_of_candidate(db.session, pair),
        new_submission=service.submission_for(db.session, pair.entity.created_by_submission_id),
        old_submission=service.submission_for(db.session, pair.candidate.created_by_submission_id),
        decider=_names({pair.decided_by_id}).get(pair.decided_by_id, ""),
        link_threshold=linking.thresholds().link,
        problem=problem,
    ), (problem.status if problem else 200)


@pages.post("/candidates/<int:candidate_id>/decision")
@login_required
def decide(candidate_id: int) -> Any:
    pair = registry.get_candidate(db.session, g.user, candidate_id)
    decision = request.form.get("decision", "")
    try:
        registry.decide_candidate(db.session, g.user, pair, decision)
    except (Conflict, ValidationFailed) as refused:
        db.session.rollback()
        return _candidate_page(registry.get_candidate(db.session, g.user, candidate_id), refused)
    if decision == "merge":
        flash(
            _(
                "Merged: %(label)s now points to the record already in the registry.",
                label=pair.entity.label,
            )
        )
    else:
        flash(_("Kept as two separate records."))
    return redirect(url_for("registry.candidate", candidate_id=candidate_id))


@pages.post("/merges/<int:merge_id>/undo")
@login_required
def undo_merge(merge_id: int) -> Any:
    record = registry.get_merge(db.session, merge_id)
    registry.unmerge(db.session, g.user, record)
    flash(_("Merge undone: both records are active again."))
    return redirect(safe_next(request.form.get("next")))


# --------------------------------------------------------------------- conflicts


@pages.get("/conflicts")
@login_required
def conflicts() -> Any:
    return render_template(
        "review/conflicts.html",
        conflicts=registry.list_conflicts(db.session, g.user),
    )


@pages.route("/conflicts/<int:conflict_id>", methods=["GET", "POST"])
@login_required
def conflict(conflict_id: int) -> Any:
    item = registry.get_conflict(db.session, g.user, conflict_id)
    problem: DiiwaanError | None = None
    if request.method == "POST":
        choices = {key: request.form.get(f"pick:{key}", "") for key in item.fields}
        try:
            record = registry.resolve_conflict(db.session, g.user, item, choices)
        except (Conflict, ValidationFailed) as refused:
            db.session.rollback()
            problem = refused
            item = registry.get_conflict(db.session, g.user, conflict_id)
        else:
            flash(_("Conflict resolved; the record is at version %(v)d.", v=record.version))
            return redirect(url_for("registry.entity", entity_id=record.id))
    return render_template(
        "review/conflict.html",
        conflict=item,
        submission=service.submission_for(db.session, item.submission_id),
        resolver=_names({item.resolved_by_id}).get(item.resolved_by_id, ""),
        problem=problem,
    ), (problem.status if problem else 200)
