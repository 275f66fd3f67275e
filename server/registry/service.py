"""Registry domain logic: apply entity operations from submissions (create, update with a
base version, offline branches, stale-update conflicts), keep versions and the change feed,
serve entity lists to devices, and merge/unmerge households and members.

Matching (finding suspected duplicates) lives in `server.registry.linking`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, event, func, insert, or_, select, text
from sqlalchemy.orm import Session

from forms.instance import ParsedInstance
from server.accounts.models import District, User
from server.accounts.service import audit, require, scope_to_districts, visible_district_ids
from server.db import utcnow
from server.errors import Conflict, Forbidden, NotFound, ValidationFailed
from server.intake.models import Submission
from server.registry.models import (
    HOUSEHOLDS,
    MEMBERS,
    Entity,
    EntityConflict,
    EntityVersion,
    MatchCandidate,
    Merge,
    PendingChange,
    RegistryChange,
)

FEED_LOCK_ID = 0x44495757  # "DIWW": serialises feed appends on PostgreSQL


# --------------------------------------------------------------------- change feed


def _lock_feed(session: Session) -> None:
    """Feed sequence numbers must be visible in commit order, or a reader holding cursor N
    could miss N-1 committed later. On PostgreSQL registry writers take a transaction
    advisory lock (SQLite already serialises writers)."""
    if session.info.get("feed_locked"):
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": FEED_LOCK_ID})
    session.info["feed_locked"] = True


def _record_change(session: Session, entity: Entity, operation: str) -> RegistryChange:
    _lock_feed(session)
    change = RegistryChange(
        entity_id=entity.id,
        list_name=entity.list_name,
        operation=operation,
        version=entity.version,
        district_id=entity.district_id,
    )
    session.add(change)
    return change


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_soft_rollback")
def _release_feed_flag(session: Session, *_args: Any) -> None:
    """The advisory lock ends with the transaction, and with a rolled-back savepoint that
    took it (the worker processes a batch of submissions in one transaction, each in a
    savepoint): forget it then, so the next registry write takes it again. Taking it
    while still held is harmless (advisory locks stack)."""
    session.info.pop("feed_locked", None)


# ---------------------------------------------------------------------- versions


def _new_version(
    session: Session,
    entity: Entity,
    *,
    properties: dict[str, Any],
    label: str,
    changes: dict[str, Any],
    source: str,
    submission_id: uuid.UUID | None = None,
    actor: User | None = None,
    base_version: int | None = None,
    branch_id: str | None = None,
    operation: str = "update",
) -> EntityVersion:
    version = EntityVersion(
        entity_id=entity.id,
        version=entity.version,
        label=label,
        properties=dict(properties),
        changes=changes,
        source=source,
        submission_id=submission_id,
        actor_id=actor.id if actor else None,
        base_version=base_version,
        branch_id=branch_id,
    )
    session.add(version)
    _record_change(session, entity, operation)
    return version


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        key: [before.get(key), after.get(key)]
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    }


# ---------------------------------------------------- from submissions to changes


def _district_for(
    session: Session,
    submission: Submission,
    properties: dict[str, Any],
    unknown: set[str],
) -> int | None:
    """The district a `district` property names (by code), else the submission's.

    Codes found are remembered for the session's life (one batch of the worker, one
    request): a household and its members, and the households of a batch, name a few
    districts between them. `unknown` holds the codes this submission named that were
    not found, so the next submission looks them up again."""
    code = properties.get("district")
    if not isinstance(code, str) or not code or code in unknown:
        return submission.district_id
    known: dict[str, int] = session.info.setdefault("registry_district_ids", {})
    district_id = known.get(code)
    if district_id is None:
        district_id = session.scalar(select(District.id).where(District.code == code))
        if district_id is None:
            unknown.add(code)
            return submission.district_id
        known[code] = district_id
    return district_id


def record_changes(session: Session, processed: Sequence[tuple[Submission, ParsedInstance]]) -> int:
    """Turn processed submissions' entity blocks into pending changes, then apply them at
    once when the form says "on receipt". Reprocessing replaces what was not applied yet.
    Returns how many changes were recorded (none for a submission whose changes are in
    the registry already). The worker hands on a batch at a time, so the states of their
    existing changes are read in one query and the new changes go in as plain rows in
    one executemany INSERT rather than as ORM objects; only a submission processed
    before has any to delete. Submissions of "on receipt" forms are then applied in
    their order. A rejected submission (an administrator reprocessing it) gets none:
    rejecting discarded its changes for good."""
    with_entities = [(s, p) for s, p in processed if p.entities and s.review_state != "rejected"]
    if not with_entities:
        return 0
    session.flush()  # what the session holds of these submissions' changes, in the rows
    states: dict[uuid.UUID, set[str]] = {}
    for submission_id, state in session.connection().execute(
        select(PendingChange.submission_id, PendingChange.state).where(
            PendingChange.submission_id.in_([s.id for s, _ in with_entities])
        )
    ):
        states.setdefault(submission_id, set()).add(state)
    rows: list[dict[str, Any]] = []
    replaced: list[uuid.UUID] = []
    on_receipt: list[Submission] = []
    for submission, parsed in with_entities:
        existing = states.get(submission.id, set())
        if "applied" in existing:
            continue  # already in the registry; reprocessing must not apply twice
        if existing:
            replaced.append(submission.id)
        new_rows = _pending_rows(session, submission, parsed)
        rows.extend(new_rows)
        if new_rows and submission.form.registry_mode == "receipt":
            on_receipt.append(submission)
    if replaced:
        session.execute(delete(PendingChange).where(PendingChange.submission_id.in_(replaced)))
    if rows:
        # Core, not the ORM's bulk insert, which would split the rows by the None among them.
        session.connection().execute(insert(PendingChange), rows)
    for submission in on_receipt:
        apply_submission_changes(session, submission, actor=None)
    return len(rows)


def _pending_rows(
    session: Session, submission: Submission, parsed: ParsedInstance
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    household_id: uuid.UUID | None = None
    unknown_districts: set[str] = set()
    now = utcnow()
    for position, action in enumerate(parsed.entities):
        try:
            entity_id = uuid.UUID(action.id)
        except ValueError:
            continue  # forms/ already recorded the bad id as a parse problem
        properties = dict(action.properties)
        if action.dataset == HOUSEHOLDS and not action.repeat_index:
            household_id = entity_id
        rows.append(
            {
                "submission_id": submission.id,
                "position": position,
                "list_name": action.dataset,
                "entity_id": entity_id,
                "create": action.create,
                "update": action.update,
                "label": action.label,
                "properties": properties,
                "base_version": action.base_version,
                "trunk_version": action.trunk_version,
                "branch_id": action.branch_id,
                "parent_entity_id": household_id if action.dataset == MEMBERS else None,
                "district_id": _district_for(session, submission, properties, unknown_districts),
                "state": "pending",
                "message": None,
                "created_at": now,
            }
        )
    return rows


def pending_changes(session: Session, submission: Submission) -> list[PendingChange]:
    return list(
        session.scalars(
            select(PendingChange)
            .where(PendingChange.submission_id == submission.id)
            .order_by(PendingChange.position)
        )
    )


def apply_submission_changes(
    session: Session, submission: Submission, actor: User | None
) -> list[PendingChange]:
    """Apply a submission's pending changes (on approval, or on receipt)."""
    from server.registry import linking

    applied = []
    created: list[Entity] = []
    for change in pending_changes(session, submission):
        if change.state == "pending":
            result = apply_change(session, change, actor)
            applied.append(change)
            if result.created is not None:
                created.append(result.created)
    # Match once the whole household is in: a household is compared with its members.
    for entity in sorted(created, key=lambda e: e.list_name != HOUSEHOLDS):
        linking.index_and_match(session, entity, actor)
    return applied


def discard_submission_changes(session: Session, submission: Submission, actor: User | None) -> int:
    count = 0
    for change in pending_changes(session, submission):
        if change.state in ("pending", "held"):
            change.state = "discarded"
            count += 1
    session.flush()
    return count


# --------------------------------------------------------------- entity operations


@dataclass
class ApplyResult:
    state: str
    message: str = ""
    conflict: EntityConflict | None = None
    created: Entity | None = None


def apply_change(session: Session, change: PendingChange, actor: User | None) -> ApplyResult:
    """Apply one entity operation following ODK Entities, never overwriting a newer value
    from a stale base: non-overlapping changes merge, overlapping ones go to review."""
    _lock_feed(session)
    entity = session.get(Entity, change.entity_id, with_for_update=True)
    submission_id = change.submission_id
    if entity is not None and entity.merged_into_id is not None and change.update:
        # The device still holds a merged-away id: update the survivor instead.
        entity = _resolve(session, entity)
    if entity is None:
        if change.create:
            entity = _create(session, change, actor)
            change.state = "applied"
            session.flush()
            _release_held(session, entity, actor)
            return ApplyResult("applied", created=entity)
        change.state = "held"
        change.message = "the entity this update is for has not arrived yet"
        session.flush()
        return ApplyResult("held", change.message)
    already = session.scalar(
        select(EntityVersion.id).where(
            EntityVersion.entity_id == entity.id, EntityVersion.submission_id == submission_id
        )
    )
    if already is not None:
        change.state = "applied"
        return ApplyResult("applied", "already applied")
    if not change.update:
        change.state = "failed"
        change.message = f"entity {entity.id} already exists in {entity.list_name}"
        session.flush()
        return ApplyResult("failed", change.message)
    result = _update(session, entity, change, actor)
    session.flush()
    if result.state == "applied":
        _release_held(session, entity, actor)
    return result


def _resolve(session: Session, entity: Entity) -> Entity:
    seen = set()
    while entity.merged_into_id is not None and entity.id not in seen:
        seen.add(entity.id)
        survivor = session.get(Entity, entity.merged_into_id)
        if survivor is None:
            break
        entity = survivor
    return entity


def _create(session: Session, change: PendingChange, actor: User | None) -> Entity:
    submission = session.get(Submission, change.submission_id)
    properties = {k: v for k, v in change.properties.items() if v is not None}
    household_id = change.parent_entity_id
    if household_id is not None and session.get(Entity, household_id) is None:
        household_id = None
    entity = Entity(
        id=change.entity_id,
        list_name=change.list_name,
        label=(change.label or "")[:500],
        properties=properties,
        version=1,
        district_id=change.district_id,
        household_id=household_id,
        created_by_submission_id=change.submission_id,
        enumerator_id=submission.submitter_id if submission else None,
    )
    session.add(entity)
    session.flush()
    _new_version(
        session,
        entity,
        properties=properties,
        label=entity.label,
        changes={k: [None, v] for k, v in properties.items()},
        source="submission",
        submission_id=change.submission_id,
        actor=actor,
        operation="create",
        branch_id=change.branch_id,
    )
    return entity


def _branch_base(session: Session, entity: Entity, change: PendingChange) -> int | None:
    """For offline chains, the device counted versions on top of `trunk_version`; the
    server's version of the branch's previous update is the real base."""
    if change.branch_id is None or change.base_version is None or change.trunk_version is None:
        return change.base_version
    if change.base_version <= change.trunk_version:
        return change.base_version
    steps = change.base_version - change.trunk_version
    branch_versions = list(
        session.scalars(
            select(EntityVersion.version)
            .where(
                EntityVersion.entity_id == entity.id, EntityVersion.branch_id == change.branch_id
            )
            .order_by(EntityVersion.version)
        )
    )
    if len(branch_versions) < steps:
        return None  # the previous update of this branch has not arrived
    return branch_versions[steps - 1]


def _update(
    session: Session, entity: Entity, change: PendingChange, actor: User | None
) -> ApplyResult:
    base = _branch_base(session, entity, change)
    if change.base_version is None:
        base = entity.version
    if base is None or base > entity.version:
        change.state = "held"
        change.message = "an earlier update from the same device has not arrived yet"
        return ApplyResult("held", change.message)
    submitted = {k: v for k, v in change.properties.items() if v is not None}
    current = dict(entity.properties)
    overlapping: dict[str, Any] = {}
    if base == entity.version:
        to_apply = {k: v for k, v in submitted.items() if current.get(k) != v}
    else:
        base_snapshot = (
            session.scalar(
                select(EntityVersion.properties).where(
                    EntityVersion.entity_id == entity.id, EntityVersion.version == base
                )
            )
            or {}
        )
        device_changed = {k: v for k, v in submitted.items() if base_snapshot.get(k) != v}
        to_apply = {}
        for key, value in device_changed.items():
            if current.get(key) == base_snapshot.get(key):
                to_apply[key] = value  # nobody else touched it: the device's change stands
            elif current.get(key) != value:
                overlapping[key] = {
                    "base": base_snapshot.get(key),
                    "server": current.get(key),
                    "submitted": value,
                }
    label = entity.label
    if change.label and change.label != entity.label and not overlapping.get("__label"):
        label = change.label[:500]
    conflict = None
    if overlapping:
        conflict = EntityConflict(
            entity_id=entity.id,
            submission_id=change.submission_id,
            base_version=base,
            server_version=entity.version,
            fields=overlapping,
        )
        session.add(conflict)
    if to_apply or label != entity.label:
        after = {**current, **to_apply}
        entity.version += 1
        entity.properties = after
        entity.label = label
        entity.updated_at = utcnow()
        if "district" in to_apply:
            entity.district_id = change.district_id or entity.district_id
        _new_version(
            session,
            entity,
            properties=after,
            label=label,
            changes=_diff(current, after),
            source="submission",
            submission_id=change.submission_id,
            actor=actor,
            base_version=change.base_version,
            branch_id=change.branch_id,
        )
    elif change.branch_id:
        # Record the branch step even when nothing changed, so later steps find their base.
        entity.version += 1
        _new_version(
            session,
            entity,
            properties=current,
            label=entity.label,
            changes={},
            source="submission",
            submission_id=change.submission_id,
            actor=actor,
            base_version=change.base_version,
            branch_id=change.branch_id,
        )
    change.state = "applied"
    if conflict is not None:
        change.message = (
            f"{len(overlapping)} propert(y/ies) changed since version {base} wait for review"
        )
        return ApplyResult("applied", change.message, conflict)
    return ApplyResult("applied")


def _release_held(session: Session, entity: Entity, actor: User | None) -> None:
    """Apply updates that were waiting for this entity or its previous version."""
    for _ in range(100):
        held = session.scalars(
            select(PendingChange)
            .where(PendingChange.entity_id == entity.id, PendingChange.state == "held")
            .order_by(PendingChange.base_version, PendingChange.id)
        ).all()
        progressed = False
        for change in held:
            submission = session.get(Submission, change.submission_id)
            if (
                submission is not None
                and submission.form.registry_mode == "approval"
                and (submission.review_state != "approved")
            ):
                change.state = "pending"  # arrived now; still waits for its approval
                progressed = True
                continue
            change.state = "pending"
            result = apply_change(session, change, actor)
            progressed = progressed or result.state == "applied"
        if not progressed:
            return


# ------------------------------------------------------------------ conflicts


def list_conflicts(session: Session, actor: User, state: str = "open") -> list[EntityConflict]:
    require(actor, "registry.decide")
    statement = scope_to_districts(
        select(EntityConflict).join(EntityConflict.entity).where(EntityConflict.state == state),
        Entity.district_id,
        actor,
    )
    return list(session.scalars(statement.order_by(EntityConflict.created_at)))


def get_conflict(session: Session, actor: User, conflict_id: int) -> EntityConflict:
    require(actor, "registry.decide")
    conflict = session.get(EntityConflict, conflict_id)
    if conflict is None:
        raise NotFound(f"no conflict {conflict_id}")
    _require_entity_access(actor, conflict.entity)
    return conflict


def resolve_conflict(
    session: Session, actor: User, conflict: EntityConflict, choices: dict[str, str]
) -> Entity:
    """Pick per field: "server" keeps the registry's value, "submitted" takes the device's."""
    require(actor, "registry.decide")
    _require_entity_access(actor, conflict.entity)
    if conflict.state != "open":
        raise Conflict("this conflict was already resolved")
    unknown = set(choices) - set(conflict.fields)
    bad = {k: v for k, v in choices.items() if v not in ("server", "submitted")}
    if unknown or bad or set(conflict.fields) - set(choices):
        raise ValidationFailed(
            "choose 'server' or 'submitted' for every conflicting property",
            {"fields": sorted(conflict.fields)},
        )
    entity = conflict.entity
    _lock_feed(session)
    current = dict(entity.properties)
    after = dict(current)
    for key, pick in choices.items():
        if pick == "submitted":
            after[key] = conflict.fields[key]["submitted"]
    if after != current:
        entity.version += 1
        entity.properties = after
        entity.updated_at = utcnow()
        _new_version(
            session,
            entity,
            properties=after,
            label=entity.label,
            changes=_diff(current, after),
            source="conflict",
            actor=actor,
            submission_id=conflict.submission_id,
        )
    conflict.state = "resolved"
    conflict.resolution = choices
    conflict.resolved_by_id = actor.id
    conflict.resolved_at = utcnow()
    session.flush()
    audit(
        session, actor, "registry.conflict.resolve", entity, conflict=conflict.id, choices=choices
    )
    return entity


def conflicts_for_submissions(session: Session, instance_ids: list[str]) -> dict[str, list[str]]:
    """For devices: which of their submissions made updates that wait for a supervisor."""
    if not instance_ids:
        return {}
    rows = session.execute(
        select(Submission.instance_id, EntityConflict)
        .join(EntityConflict, EntityConflict.submission_id == Submission.id)
        .where(Submission.instance_id.in_(instance_ids), EntityConflict.state == "open")
    ).all()
    result: dict[str, list[str]] = {}
    for instance_id, conflict in rows:
        result.setdefault(instance_id, []).append(
            f"update of {conflict.entity.list_name} {conflict.entity_id} was based on version "
            f"{conflict.base_version} but the registry was at {conflict.server_version}; "
            f"{', '.join(sorted(conflict.fields))} wait for a supervisor"
        )
    return result


# ---------------------------------------------------------------------- reads


def _require_entity_access(actor: User, entity: Entity) -> None:
    allowed = visible_district_ids(actor)
    if allowed is not None and entity.district_id not in allowed:
        raise Forbidden("this record belongs to a district you are not assigned to")


def get_entity(session: Session, actor: User, entity_id: uuid.UUID | str) -> Entity:
    """An entity by id; merged-away ids resolve to their survivor (old ids keep working)."""
    require(actor, "registry.read")
    try:
        key = entity_id if isinstance(entity_id, uuid.UUID) else uuid.UUID(str(entity_id))
    except ValueError:
        raise NotFound(f"no registry record {entity_id}") from None
    entity = session.get(Entity, key)
    if entity is None:
        raise NotFound(f"no registry record {entity_id}")
    entity = _resolve(session, entity)
    _require_entity_access(actor, entity)
    return entity


def members_of(session: Session, household: Entity) -> list[Entity]:
    return list(
        session.scalars(
            select(Entity)
            .where(
                Entity.household_id == household.id,
                Entity.merged_into_id.is_(None),
                Entity.deleted.is_(False),
            )
            .order_by(Entity.created_at, Entity.label)
        )
    )


@dataclass
class EntitySearch:
    query: str = ""
    list_name: str = HOUSEHOLDS
    district_id: int | None = None
    page: int = 1
    per_page: int = 50


def search_entities(
    session: Session, actor: User, search: EntitySearch
) -> tuple[list[Entity], int]:
    """Search by name, id, national ID or phone within the districts the actor may see."""
    require(actor, "registry.read")
    statement = scope_to_districts(
        select(Entity).where(
            Entity.list_name == search.list_name,
            Entity.merged_into_id.is_(None),
            Entity.deleted.is_(False),
        ),
        Entity.district_id,
        actor,
    )
    if search.district_id is not None:
        statement = statement.where(Entity.district_id == search.district_id)
    query = search.query.strip()
    if query:
        conditions = [Entity.label.ilike(f"%{query}%")]
        with contextlib.suppress(ValueError):
            conditions.append(Entity.id == uuid.UUID(query))
        digits = "".join(ch for ch in query if ch.isdigit())
        matching_keys = []
        if digits and len(digits) >= 4:
            from server.registry.linking import identifier_keys

            matching_keys = identifier_keys(query)
        if matching_keys:
            from server.registry.models import MatchKey

            conditions.append(
                Entity.id.in_(select(MatchKey.entity_id).where(MatchKey.key.in_(matching_keys)))
            )
        statement = statement.where(or_(*conditions))
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = session.scalars(
        statement.order_by(Entity.label, Entity.id)
        .limit(search.per_page)
        .offset((max(1, search.page) - 1) * search.per_page)
    ).all()
    return list(rows), total


def history(session: Session, entity: Entity) -> list[EntityVersion]:
    return list(
        session.scalars(
            select(EntityVersion)
            .where(EntityVersion.entity_id == entity.id)
            .order_by(EntityVersion.version)
        )
    )


# ------------------------------------------------------------- entity lists, deltas


def _visible_entities(session: Session, user: User, list_name: str) -> Any:
    return scope_to_districts(
        select(Entity).where(
            Entity.list_name == list_name,
            Entity.merged_into_id.is_(None),
            Entity.deleted.is_(False),
        ),
        Entity.district_id,
        user,
    )


def entity_list_csv(session: Session, user: User, list_name: str) -> bytes:
    """`name,label,__version,<properties…>` for the entities in the user's districts."""
    entities = list(
        session.scalars(_visible_entities(session, user, list_name).order_by(Entity.id))
    )
    properties = sorted({key for entity in entities for key in entity.properties})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "label", "__version", *properties])
    for entity in entities:
        writer.writerow(
            [
                str(entity.id),
                _csv_cell(entity.label),
                entity.version,
                *[_csv_cell(entity.properties.get(key)) for key in properties],
            ]
        )
    return buffer.getvalue().encode("utf-8")


# What Excel and LibreOffice read as the start of a formula (OWASP's list).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    # A lone carriage return is not quoted by a writer ending lines with "\n", and a
    # reader takes it for the end of the row: a label could forge rows of the list.
    text_value = str(value).replace("\r\n", "\n").replace("\r", "\n")
    # Neutralise spreadsheet formulas: a device never needs them, a data clerk opening the
    # file in Excel must not run them. Plain numbers (-3, +252...) keep their value.
    if str(value)[:1] in _FORMULA_STARTS and not _PLAIN_NUMBER.fullmatch(text_value):
        return "'" + text_value
    return text_value


def feed_position(session: Session, user: User, list_name: str) -> int:
    """The newest feed sequence touching this list within the user's districts."""
    statement = select(func.max(RegistryChange.seq)).where(RegistryChange.list_name == list_name)
    allowed = visible_district_ids(user)
    if allowed is not None:
        statement = statement.where(RegistryChange.district_id.in_(sorted(allowed) or [-1]))
    return session.scalar(statement) or 0


@dataclass
class EntityChange:
    seq: int
    list_name: str
    entity_id: str
    operation: str  # upsert | remove | merge
    version: int
    label: str
    properties: dict[str, Any]
    merged_into: str | None = None


@dataclass
class EntityDelta:
    changes: list[EntityChange] = field(default_factory=list)
    cursor: int = 0
    more: bool = False


def entity_delta(session: Session, user: User, *, since: int, limit: int = 500) -> EntityDelta:
    """Entity changes in the user's districts after feed position `since`, newest state of
    each entity once, for devices to bring their local lists up to date."""
    limit = max(1, min(limit, 5000))
    statement = select(RegistryChange).where(RegistryChange.seq > since)
    allowed = visible_district_ids(user)
    if allowed is not None:
        statement = statement.where(RegistryChange.district_id.in_(sorted(allowed) or [-1]))
    rows = list(session.scalars(statement.order_by(RegistryChange.seq).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    delta = EntityDelta(cursor=rows[-1].seq if rows else since, more=more)
    latest: dict[uuid.UUID, RegistryChange] = {}
    for row in rows:
        latest[row.entity_id] = row
    entities = (
        {e.id: e for e in session.scalars(select(Entity).where(Entity.id.in_(list(latest))))}
        if latest
        else {}
    )
    for entity_id, row in sorted(latest.items(), key=lambda item: item[1].seq):
        entity = entities.get(entity_id)
        if entity is None:
            continue
        if entity.merged_into_id is not None:
            operation, merged_into = "merge", str(_resolve(session, entity).id)
        elif entity.deleted or (allowed is not None and entity.district_id not in allowed):
            operation, merged_into = "remove", None
        else:
            operation, merged_into = "upsert", None
        delta.changes.append(
            EntityChange(
                seq=row.seq,
                list_name=entity.list_name,
                entity_id=str(entity.id),
                operation=operation,
                version=entity.version,
                label=entity.label,
                properties=dict(entity.properties) if operation == "upsert" else {},
                merged_into=merged_into,
            )
        )
    return delta


# ------------------------------------------------------------------- merge/unmerge


def _mark(
    session: Session,
    entity: Entity,
    changes: dict[str, Any],
    source: str,
    actor: User | None,
    operation: str = "update",
) -> None:
    """A new version for a change outside the properties (household, merge redirect)."""
    entity.version += 1
    _new_version(
        session,
        entity,
        properties=entity.properties,
        label=entity.label,
        changes=changes,
        source=source,
        actor=actor,
        operation=operation,
    )


def merge(
    session: Session,
    actor: User | None,
    survivor: Entity,
    merged: Entity,
    *,
    candidate: MatchCandidate | None = None,
    automatic: bool = False,
    parent: Merge | None = None,
) -> Merge:
    """Fold `merged` into `survivor`: both rows stay, the merged one redirects; a merged
    household's members move to the survivor (and move back on unmerge). The rows are
    flushed before returning, except for a member merge made under a household's
    (`parent`): `linking.reconcile_members` flushes all of those at once."""
    if actor is not None:
        require(actor, "registry.decide")
        _require_entity_access(actor, survivor)
        _require_entity_access(actor, merged)
    if survivor.id == merged.id or survivor.list_name != merged.list_name:
        raise ValidationFailed("merge two different records of the same list")
    if not survivor.active or not merged.active:
        raise Conflict("one of these records was already merged; reload")
    _lock_feed(session)
    moved: list[str] = []
    if merged.list_name == HOUSEHOLDS:
        for member in members_of(session, merged):
            member.household_id = survivor.id
            moved.append(str(member.id))
            _mark(
                session, member, {"household": [str(merged.id), str(survivor.id)]}, "merge", actor
            )
    merged.merged_into_id = survivor.id
    _mark(session, merged, {"merged_into": [None, str(survivor.id)]}, "merge", actor, "merge")
    record = Merge(
        survivor_id=survivor.id,
        merged_id=merged.id,
        candidate_id=candidate.id if candidate else None,
        automatic=automatic,
        parent_id=parent.id if parent else None,
        moved_member_ids=moved,
        actor_id=actor.id if actor else None,
    )
    session.add(record)
    if candidate is not None:
        candidate.state = "merged"
        candidate.decided_by_id = actor.id if actor else None
        candidate.decided_at = utcnow()
    audit(
        session,
        actor,
        "registry.merge",
        merged,
        flush=False,
        survivor=str(survivor.id),
        automatic=automatic,
        members_moved=len(moved),
    )
    if parent is None:
        session.flush()
    if moved:
        from server.registry import linking

        linking.reconcile_members(session, record, actor)
    return record


def unmerge(session: Session, actor: User, record: Merge) -> Merge:
    """Undo a merge: the merged record is active again with its members back."""
    require(actor, "registry.decide")
    if record.undone_at is not None:
        raise Conflict("this merge was already undone")
    merged = session.get(Entity, record.merged_id)
    survivor = session.get(Entity, record.survivor_id)
    assert merged is not None and survivor is not None
    _require_entity_access(actor, survivor)
    if merged.merged_into_id != survivor.id:
        raise Conflict("the records changed since this merge; undo later merges first")
    _lock_feed(session)
    for child in session.scalars(
        select(Merge).where(Merge.parent_id == record.id, Merge.undone_at.is_(None))
    ):
        unmerge(session, actor, child)
    merged.merged_into_id = None
    _mark(session, merged, {"merged_into": [str(survivor.id), None]}, "unmerge", actor, "unmerge")
    for member_id in record.moved_member_ids:
        member = session.get(Entity, uuid.UUID(member_id))
        if member is not None and member.household_id == survivor.id:
            member.household_id = merged.id
            _mark(
                session, member, {"household": [str(survivor.id), str(merged.id)]}, "unmerge", actor
            )
    record.undone_at = utcnow()
    record.undone_by_id = actor.id
    if record.candidate_id is not None:
        candidate = session.get(MatchCandidate, record.candidate_id)
        if candidate is not None:
            candidate.state = "undone"
    session.flush()
    audit(session, actor, "registry.unmerge", merged, survivor=str(survivor.id))
    return record


def merges_of(session: Session, entity: Entity) -> list[Merge]:
    return list(
        session.scalars(
            select(Merge)
            .where(or_(Merge.survivor_id == entity.id, Merge.merged_id == entity.id))
            .order_by(Merge.created_at)
        )
    )


def get_merge(session: Session, merge_id: int) -> Merge:
    record = session.get(Merge, merge_id)
    if record is None:
        raise NotFound(f"no merge {merge_id}")
    return record


def content_md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# ------------------------------------------------------------- match candidates


def list_candidates(
    session: Session,
    actor: User,
    *,
    state: str = "open",
    list_name: str | None = None,
    limit: int = 200,
) -> list[MatchCandidate]:
    require(actor, "registry.decide")
    statement = scope_to_districts(
        select(MatchCandidate).where(MatchCandidate.state == state),
        MatchCandidate.district_id,
        actor,
    )
    if list_name:
        statement = statement.where(MatchCandidate.list_name == list_name)
    return list(session.scalars(statement.order_by(MatchCandidate.weight.desc()).limit(limit)))


def get_candidate(session: Session, actor: User, candidate_id: int) -> MatchCandidate:
    require(actor, "registry.decide")
    candidate = session.get(MatchCandidate, candidate_id)
    if candidate is None:
        raise NotFound(f"no match candidate {candidate_id}")
    _require_entity_access(actor, candidate.entity)
    _require_entity_access(actor, candidate.candidate)
    return candidate


def decide_candidate(
    session: Session, actor: User, candidate: MatchCandidate, decision: str
) -> MatchCandidate:
    """`merge` folds the newer record into the one already in the registry; `separate`
    records that they are different households (or people)."""
    require(actor, "registry.decide")
    if candidate.state != "open":
        raise Conflict(f"this pair was already decided ({candidate.state})")
    if decision == "merge":
        merge(session, actor, candidate.candidate, candidate.entity, candidate=candidate)
    elif decision == "separate":
        candidate.state = "separate"
        candidate.decided_by_id = actor.id
        candidate.decided_at = utcnow()
        session.flush()
        audit(
            session,
            actor,
            "registry.keep_separate",
            candidate.entity,
            other=str(candidate.candidate_id),
            weight=candidate.weight,
        )
    else:
        raise ValidationFailed("decide 'merge' or 'separate'", {"decision": [decision]})
    return candidate
