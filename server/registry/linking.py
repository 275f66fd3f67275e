"""Deduplication in the registry: blocking keys in an indexed table, candidate pairs scored
by the Fellegi–Sunter model of `server.registry.matching`, and the three bands (link
automatically, send to review as a match candidate, or treat as new).

Property names read from entities (from the forms' `save_to`): households `head_name`
(or `name`), `national_id`, `phone`, `village`, `gps`; members `full_name` (or `name`),
`sex`, `date_of_birth`, `national_id`, `phone`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from functools import lru_cache, partial
from typing import Any, Protocol, cast

from sqlalchemy import (
    Select,
    bindparam,
    case,
    delete,
    event,
    func,
    insert,
    null,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session, aliased

from server.accounts.models import User
from server.db import as_utc, utcnow
from server.registry import matching
from server.registry.models import HOUSEHOLDS, Entity, MatchCandidate, MatchKey, MatchModel

log = logging.getLogger("diiwaan.registry")

DEFAULT_MAX_CANDIDATES = 30
MAX_CANDIDATES = DEFAULT_MAX_CANDIDATES
# The least a household must share with a new one (keys counted with
# `matching.key_weight`) to be its candidate: two keys, or a phone or an ID. A household
# sharing one name key alone — a namesake of another village, nothing else in common —
# is not compared (docs/matching.md, "The households' floor"). People have no floor.
DEFAULT_HOUSEHOLD_MIN_SHARED = 2
HOUSEHOLD_MIN_SHARED = DEFAULT_HOUSEHOLD_MIN_SHARED
_thresholds: dict[str, matching.Thresholds] = {}
_models: dict[tuple[str, Any], matching.FellegiSunterModel] = {}  # see `model_for`


def configure(
    link: float | None = None,
    review: float | None = None,
    max_candidates: int | None = None,
    household_min_shared: int | None = None,
) -> None:
    """Thresholds (log2 weights), the cap on candidates per record and the households'
    floor from configuration; the module's defaults otherwise."""
    global MAX_CANDIDATES, HOUSEHOLD_MIN_SHARED
    MAX_CANDIDATES = DEFAULT_MAX_CANDIDATES if max_candidates is None else max_candidates
    HOUSEHOLD_MIN_SHARED = (
        DEFAULT_HOUSEHOLD_MIN_SHARED if household_min_shared is None else household_min_shared
    )
    _thresholds.clear()
    if link is not None or review is not None:
        default = matching.DEFAULT_THRESHOLDS
        _thresholds["*"] = matching.Thresholds(
            link=default.link if link is None else link,
            review=default.review if review is None else review,
        )


def thresholds() -> matching.Thresholds:
    return _thresholds.get("*", matching.DEFAULT_THRESHOLDS)


def _text(properties: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = properties.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def _gps(properties: dict[str, Any]) -> tuple[float | None, float | None]:
    raw = _text(properties, "gps", "location", "geopoint")
    if raw:
        parts = raw.replace(",", " ").split()
        try:
            return float(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            pass
    return None, None


class EntityFields(Protocol):
    """What a matching record is read from: an `Entity`, or a row of these columns."""

    @property
    def id(self) -> Any: ...
    @property
    def label(self) -> str: ...
    @property
    def properties(self) -> dict[str, Any]: ...
    @property
    def district_id(self) -> int | None: ...


class CandidateFields(EntityFields, Protocol):
    """What `candidates` returns of a record: a row of these columns (no ORM object: only
    a few of the candidates are compared with their members, and none is changed), with
    a household's number of members (None for people)."""

    @property
    def list_name(self) -> str: ...
    @property
    def created_by_submission_id(self) -> Any: ...
    @property
    def member_count(self) -> int | None: ...
    @property
    def member_births(self) -> str | None: ...


def person_record(entity: EntityFields) -> matching.PersonRecord:
    properties = entity.properties
    latitude, longitude = _gps(properties)
    return matching.PersonRecord(
        id=str(entity.id),
        name=_text(properties, "full_name", "name", "head_name") or entity.label,
        date_of_birth=_text(properties, "date_of_birth", "dob"),
        sex=_text(properties, "sex", "gender"),
        phone=_text(properties, "phone", "phone_number"),
        national_id=_text(properties, "national_id", "id_number"),
        village=_text(properties, "village"),
        latitude=latitude,
        longitude=longitude,
        district=str(entity.district_id) if entity.district_id is not None else None,
    )


# A member's relationship to the head that makes her the head.
HEAD_RELATIONSHIPS = frozenset({"head", "head_of_household", "household_head", "hoh", "self"})


def other_members(
    head: matching.PersonRecord, members: Sequence[EntityFields]
) -> list[matching.PersonRecord]:
    """The members of a household other than its head, as records. Forms list the head
    among the members too (the household form's roster starts with her); she is compared
    as the head already, and counted again among the members she made two namesakes'
    households share a member — at a million households most of the wrong automatic links.
    She is the member whose relationship says so, else the first named as the head."""
    if not members:  # a candidate read without its members (`_worth_comparing`)
        return []
    people = [person_record(member) for member in members]
    for index, member in enumerate(members):
        relationship = _text(member.properties, "relationship", "relation_to_head")
        if relationship is not None and relationship.strip().lower() in HEAD_RELATIONSHIPS:
            return people[:index] + people[index + 1 :]
    head_name = matching.name_tokens(head.name)
    for index, person in enumerate(people):
        if head_name and matching.name_tokens(person.name) == head_name:
            return people[:index] + people[index + 1 :]
    return people


def household_record(
    session: Session, entity: EntityFields, members: Sequence[EntityFields] | None = None
) -> matching.HouseholdRecord:
    """The household as the matcher sees it: its head, and its other members
    (`other_members`); `members` (all of them) when the caller has them already."""
    head = person_record(entity)  # the household's own place, phone and ID are the head's
    if members is None:
        from server.registry.service import members_of

        members = members_of(session, cast(Entity, entity))
    return matching.HouseholdRecord(
        id=head.id,
        head=head,
        members=other_members(head, members),
        village=head.village,
        latitude=head.latitude,
        longitude=head.longitude,
        phone=head.phone,
        national_id=head.national_id,
        district=head.district,
    )


def _record(session: Session, entity: Entity) -> Any:
    if entity.list_name == HOUSEHOLDS:
        return household_record(session, entity)
    return person_record(entity)


@lru_cache(maxsize=1)
def _members_statement() -> Select[Any]:
    """The members of the households given as `households`, built once (as
    `_candidate_statement`)."""
    return (
        select(Entity.household_id, Entity.id, Entity.label, Entity.properties, Entity.district_id)
        .where(
            Entity.household_id.in_(bindparam("households", expanding=True)),
            Entity.merged_into_id.is_(None),
            Entity.deleted.is_(False),
        )
        .order_by(Entity.created_at, Entity.label)
    )


def _records(
    session: Session,
    entities: Sequence[CandidateFields],
    bare: dict[Any, matching.HouseholdRecord] | None = None,
) -> dict[Any, Any]:
    """Records of many entities by id; the households' members come in one query (the
    same members as `service.members_of`), as plain rows: only four columns are read, and
    hundreds of ORM objects per new household would cost more than the query. A household
    in `bare` (read without its members by `_worth_comparing`) gets its members added."""
    members: dict[Any, list[EntityFields]] = {
        entity.id: [] for entity in entities if entity.list_name == HOUSEHOLDS
    }
    if members:
        for member in session.execute(_members_statement(), {"households": list(members)}):
            members[member.household_id].append(member)
    records: dict[Any, Any] = {}
    for entity in entities:
        if entity.id not in members:
            records[entity.id] = person_record(entity)
        elif bare is not None and entity.id in bare:
            record = records[entity.id] = bare[entity.id]
            record.members = other_members(record.head, members[entity.id])
        else:
            records[entity.id] = household_record(session, entity, members[entity.id])
    return records


def _comparer(record: Any) -> Callable[[Any], matching.ComparisonVector]:
    """A function comparing `record` with another record of its list."""
    if isinstance(record, matching.HouseholdRecord):
        return matching.HouseholdComparer(record).compare
    return partial(matching.compare_people, record)


def _compare(a: Any, b: Any) -> matching.ComparisonVector:
    return _comparer(a)(b)


def _worth_comparing(
    session: Session,
    model: matching.FellegiSunterModel,
    record: Any,
    others: list[CandidateFields],
    review: float,
    *,
    comparer: matching.HouseholdComparer | None = None,
    bare: dict[Any, matching.HouseholdRecord] | None = None,
) -> list[CandidateFields]:
    """The candidates that can still reach `review`. Loading and comparing two households'
    members is most of the cost of a pair, so households are first compared without them:
    when even the best members level the two households' sizes allow would leave a pair
    below review, it is new whatever the members say (weights add up), and their members
    are neither loaded nor compared. The households read without members are left in
    `bare` for `_records`, and `comparer` keeps their normalised fields for the pairs kept."""
    if not isinstance(record, matching.HouseholdRecord) or "members" not in model.fields:
        return others
    comparer = comparer or matching.HouseholdComparer(record)
    bare = {} if bare is None else bare
    births = [matching.birth_year(member.date_of_birth) for member in record.members]
    # By (`member_count`, pairs the birth years allow): the 30 share a few between them.
    bounds: dict[tuple[int, int | None], float] = {}
    kept = []
    for other in others:
        other_record = bare[other.id] = household_record(session, other, members=[])
        count, theirs = other.member_count or 0, _member_births(other)
        paired = None if theirs is None else matching.members_paired_at_most(births, theirs)
        at_most = bounds.get((count, paired))
        if at_most is None:
            at_most = bounds[count, paired] = _members_bound(model, len(births), count, paired)
        if comparer.can_reach(other_record, model, review, members_at_most=at_most):
            kept.append(other)
    return kept


def _members_bound(
    model: matching.FellegiSunterModel, size: int, count: int, paired: int | None
) -> float:
    """The most the members can add to a pair of a household of `size` other members and
    a candidate of `count` members, of whom at most `paired` can pair by their birth
    years (`matching.members_paired_at_most`; None: not known). `member_count` counts the
    head too when she is listed among the members (`other_members` leaves her out): the
    bound is taken over both, and the pairs the years allow were counted with her among
    them, which can only count more."""
    return max(
        matching.members_weight_at_most(model, size, count, paired),
        matching.members_weight_at_most(model, size, max(0, count - 1), paired),
    )


def identifier_keys(query: str) -> list[str]:
    """Blocking keys for a national ID or phone typed into a search box."""
    probe = matching.PersonRecord(id="", name="", phone=query, national_id=query)
    return sorted(key for key in matching.blocking_keys(probe) if not key.startswith("d:"))


def index(session: Session, entity: Entity, record: Any | None = None) -> set[str]:
    record = record if record is not None else _record(session, entity)
    keys = _keys_of(record)
    session.execute(delete(MatchKey).where(MatchKey.entity_id == entity.id))
    session.add_all(
        MatchKey(list_name=entity.list_name, key=key, entity_id=entity.id) for key in keys
    )
    return keys


def _keys_of(record: Any) -> set[str]:
    return {key[:200] for key in matching.blocking_keys(record)}


def _index_all(session: Session, entities: Sequence[Entity], records: dict[Any, Any]) -> None:
    """`index` for many records: one DELETE and one INSERT for the lot."""
    session.execute(delete(MatchKey).where(MatchKey.entity_id.in_([e.id for e in entities])))
    rows = [
        {"list_name": entity.list_name, "key": key, "entity_id": entity.id}
        for entity in entities
        for key in _keys_of(records[entity.id])
    ]
    if rows:
        session.execute(insert(MatchKey), rows)


@lru_cache(maxsize=16)
def _candidate_statement(weights: tuple[int, ...], households: bool) -> Select[Any]:
    """The candidate query for keys of these weights (besides 1), with the keys, the
    record and the caps as parameters: built and compiled once, not once per record (with
    its keys as literals, building the statement took a third of the query's time).
    Households come with their number of members, counted as `_records` reads them."""
    shared = (
        func.sum(
            case(
                *(
                    (MatchKey.key.in_(bindparam(f"weight_{weight}", expanding=True)), weight)
                    for weight in weights
                ),
                else_=1,
            )
        )
        if weights
        else func.count()
    )
    # Ranked from the key index alone, then merged and deleted records (which keep their
    # keys) dropped: looking up every posting's record first was most of the query's time
    # at a million households. Twice the cap leaves room for them.
    shared_label = shared.label("shared")
    ranked = (
        select(MatchKey.entity_id, shared_label)
        .where(
            MatchKey.list_name == bindparam("list_name"),
            MatchKey.key.in_(bindparam("keys", expanding=True)),
            MatchKey.entity_id != bindparam("entity_id"),
        )
        .group_by(MatchKey.entity_id)
        .having(shared >= bindparam("floor"))
        .order_by(shared_label.desc(), MatchKey.entity_id)
        .limit(bindparam("ranked"))
        .subquery()
    )
    best = (
        select(
            Entity.id,
            Entity.list_name,
            Entity.label,
            Entity.properties,
            Entity.district_id,
            Entity.created_by_submission_id,
            ranked.c.shared,
        )
        .join(ranked, Entity.id == ranked.c.entity_id)
        .where(Entity.merged_into_id.is_(None), Entity.deleted.is_(False))
        .order_by(ranked.c.shared.desc(), Entity.id)
        .limit(bindparam("cap"))
        .subquery()
    )
    # Counted for the capped candidates only, after the limit; with their birth dates
    # (`_member_births`), which can show before their members are read that too few of
    # them could pair with the new household's.
    member = aliased(Entity)

    def of_members(column: Any) -> Any:
        if not households:
            return null()
        return (
            select(column)
            .where(
                member.household_id == best.c.id,
                member.merged_into_id.is_(None),
                member.deleted.is_(False),
            )
            .scalar_subquery()
        )

    birth = func.coalesce(
        func.nullif(member.properties["date_of_birth"].as_string(), ""),
        func.nullif(member.properties["dob"].as_string(), ""),
        "",
    )
    return select(
        best.c.id,
        best.c.list_name,
        best.c.label,
        best.c.properties,
        best.c.district_id,
        best.c.created_by_submission_id,
        of_members(func.count()).label("member_count"),
        of_members(func.aggregate_strings(birth, _BIRTHS_SEPARATOR)).label("member_births"),
    ).order_by(best.c.shared.desc(), best.c.id)


_BIRTHS_SEPARATOR = "\x1f"


def _member_births(candidate: CandidateFields) -> list[int | None] | None:
    """The birth years of a candidate household's members (the head among them), as
    `person_record` would read them, from the dates the candidate query gathered; None
    when they cannot be told apart (a date holding the separator), so that nothing is
    assumed of them."""
    count = candidate.member_count or 0
    births = (candidate.member_births or "").split(_BIRTHS_SEPARATOR) if count else []
    if len(births) != count:
        return None
    return [matching.birth_year(text) for text in births]


def candidates(session: Session, entity: Entity, keys: set[str]) -> list[CandidateFields]:
    """The `MAX_CANDIDATES` records sharing the most keys with this one, counted with
    `matching.key_weight`, best first. In a large district a common name pair names
    hundreds of households; a returning family shares more with its earlier record —
    another name pair, the same name pairs within its village, a phone or an ID — and
    ranks first, so only the few best are loaded and compared, whatever the size of the
    registry. A household must share at least `HOUSEHOLD_MIN_SHARED`."""
    if not keys:
        return []
    by_weight: dict[int, list[str]] = {}
    for key in sorted(keys):
        by_weight.setdefault(matching.key_weight(key), []).append(key)
    weighted = tuple(sorted(weight for weight in by_weight if weight != 1))
    parameters: dict[str, Any] = {
        "list_name": entity.list_name,
        "keys": sorted(keys),
        "entity_id": entity.id,
        "ranked": 2 * MAX_CANDIDATES,
        "cap": MAX_CANDIDATES,
        "floor": HOUSEHOLD_MIN_SHARED if entity.list_name == HOUSEHOLDS else 1,
    }
    parameters |= {f"weight_{weight}": by_weight[weight] for weight in weighted}
    statement = _candidate_statement(weighted, entity.list_name == HOUSEHOLDS)
    found: list[CandidateFields] = list(session.execute(statement, parameters))
    if entity.created_by_submission_id is not None and entity.list_name != HOUSEHOLDS:
        # Members registered together in one household are different people.
        found = [e for e in found if e.created_by_submission_id != entity.created_by_submission_id]
    return found


# Lists found with no stored model, in the session's current transaction: a stored
# model stays in the session's identity map, but its absence does not, and each record
# applied (a household and each of its members) asked the database again.
_NO_MODEL = "registry_lists_without_model"


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_missing_models(session: Session, *_args: Any) -> None:
    session.info.pop(_NO_MODEL, None)


@event.listens_for(Session, "pending_to_persistent")
def _model_stored(session: Session, instance: object) -> None:
    if isinstance(instance, MatchModel):  # `relink` fitted one in this transaction
        session.info.pop(_NO_MODEL, None)


def _stored_model(session: Session, list_name: str) -> MatchModel | None:
    missing: set[str] = session.info.setdefault(_NO_MODEL, set())
    if list_name in missing:
        return None
    stored = session.get(MatchModel, list_name)
    if stored is None:
        missing.add(list_name)
    return stored


def model_for(session: Session, list_name: str) -> matching.FellegiSunterModel:
    """The list's fitted model, or the default one. Built once per fit and kept (a model
    is never changed in place; `relink` stores a new one with a new `fitted_at`), since
    building it again for every new record cost as much as a query. A list without a
    stored model is looked up once per transaction. A stored fit that
    `matching.implausible_fit` refuses (stored before fits were checked) is not used:
    the default model is."""
    stored = _stored_model(session, list_name)
    fitted = stored is not None and bool(stored.parameters)
    version = (list_name, stored.fitted_at if stored is not None and fitted else None)
    model = _models.get(version)
    if model is None:
        if len(_models) > 32:
            _models.clear()
        model = matching.default_model(household=list_name == HOUSEHOLDS)
        if stored is not None and fitted:
            refit = matching.FellegiSunterModel.from_dict(stored.parameters)
            refused = matching.implausible_fit(refit)
            if refused is None:
                model = refit
            else:  # stored by a relink from before fits were checked
                log.warning("the stored %s model is not used: %s", list_name, refused)
        _models[version] = model
    return model


def index_and_match(session: Session, entity: Entity, actor: User | None) -> list[MatchCandidate]:
    """Index a new or changed record and look for its duplicates in the registry."""
    from server.registry.service import merge

    record = _record(session, entity)
    keys = index(session, entity, record)
    session.flush()
    if not entity.active:
        return []  # already merged (e.g. with its household): nothing left to find
    model = model_for(session, entity.list_name)
    limits = thresholds()
    found: list[MatchCandidate] = []
    # One comparer for the whole search: the new record's fields, and each candidate's,
    # are normalised once.
    comparer = (
        matching.HouseholdComparer(record) if isinstance(record, matching.HouseholdRecord) else None
    )
    bare: dict[Any, matching.HouseholdRecord] = {}
    others = _worth_comparing(
        session,
        model,
        record,
        candidates(session, entity, keys),
        limits.review,
        comparer=comparer,
        bare=bare,
    )
    records = _records(session, others, bare)
    compare = comparer.compare if comparer is not None else _comparer(record)
    existing: dict[Any, MatchCandidate] | None = None
    for other in others:
        vector = compare(records[other.id])
        score = model.score(vector)
        band = matching.band_of(score, vector, limits)
        if band == "new":
            continue
        if existing is None:  # this record's earlier pairs, fetched once when one is needed
            existing = {
                pair.candidate_id: pair
                for pair in session.scalars(
                    select(MatchCandidate).where(MatchCandidate.entity_id == entity.id)
                )
            }
        pair = existing.get(other.id)
        if pair is None:
            pair = MatchCandidate(
                entity_id=entity.id, candidate_id=other.id, list_name=entity.list_name
            )
            session.add(pair)
        pair.weight = float(score.weight)
        pair.probability = float(score.probability)
        pair.contributions = {k: float(v) for k, v in score.contributions.items()}
        pair.band = band
        pair.district_id = entity.district_id
        if pair.state is None:
            pair.state = "open"
        found.append(pair)
    session.flush()
    links = sorted(
        (p for p in found if p.band == "link" and p.state == "open"),
        key=lambda p: p.weight,
        reverse=True,
    )
    # Households link automatically. A person found in another household is a question
    # for a supervisor (moved? registered twice?), never merged behind the households'
    # backs; members merge automatically only when their households do.
    if links and entity.list_name == HOUSEHOLDS:
        best = links[0]
        survivor = session.get(Entity, best.candidate_id)
        if survivor is not None and survivor.active and entity.active:
            merge(session, None, survivor, entity, candidate=best, automatic=True)
    return found


# Records a transaction in `relink`: each chunk is committed before the next is read, so
# memory follows the chunk rather than the registry, and workers indexing records of
# their own wait a chunk at most, not the whole relink.
RELINK_CHUNK = 500


def relink(
    sessions: Callable[[], AbstractContextManager[Session]],
    list_name: str,
    *,
    refit: bool = True,
    progress: Callable[[int], None] | None = None,
    chunk: int = RELINK_CHUNK,
) -> dict[str, Any]:
    """Re-match a whole list, `chunk` records a transaction (`sessions()` opens one and
    commits it when the block ends), in passes over its records in id order:

    1. every record's blocking keys are filed again;
    2. with `refit`, the candidate pairs' levels are counted and the model re-estimated
       with EM on the counts — when `REFIT_MIN_LIKELY` of the pairs are likely
       duplicates under the current model (`_refit`);
    3. every candidate pair is scored again: open pairs are updated, new ones added, a
       pair now below review is dropped, decided pairs keep their decision, and a strong
       link goes to review (a batch relink never merges unseen).

    Each pair is compared once, from the first of its two records to list the other (the
    pairs in flight are the only state carried between chunks). A relink stopped half way
    leaves the chunks done committed; running it again finishes the work. Returns counts
    of records, pairs, pairs for review and strong links among them, and with `refit`
    the pairs the model was refitted on (0: kept) and the likely duplicates counted, and
    `refused`, why, when EM's fit was refused (`matching.implausible_fit`)."""
    counts: dict[str, Any] = {"records": 0, "pairs": 0, "review": 0, "link": 0}
    for session, entities in _in_chunks(sessions, list_name, chunk):
        _index_all(session, entities, _records(session, entities))
        counts["records"] += len(entities)
        if progress:
            progress(len(entities))
    with sessions() as session:
        # The keys were all filed again (for a list matched for the first time, filed at
        # all): without fresh statistics PostgreSQL planned the candidate query for
        # members at 65 ms instead of 0.2 (10k households' 43,796 people), for the rest of
        # the relink and for the workers beside it.
        session.execute(text(f"ANALYZE {MatchKey.__tablename__}"))
    counts["refitted"] = 0
    if refit:
        counts["refitted"], counts["likely"], refused = _refit(sessions, list_name, chunk, progress)
        if refused is not None:
            counts["refused"] = refused
    limits = thresholds()
    listed: dict[Any, set[Any]] = {}
    for session, entities in _in_chunks(sessions, list_name, chunk):
        model = model_for(session, list_name)
        pairs = _pairs(session, entities, listed)
        ids = [entity.id for entity in entities]
        existing = {
            frozenset((pair.entity_id, pair.candidate_id)): pair
            for pair in session.scalars(
                select(MatchCandidate).where(
                    MatchCandidate.list_name == list_name,
                    or_(MatchCandidate.entity_id.in_(ids), MatchCandidate.candidate_id.in_(ids)),
                )
            )
        }
        for newer, older, vector in pairs:
            counts["pairs"] += 1
            score = model.score(vector)
            band = matching.band_of(score, vector, limits)
            pair = existing.get(frozenset((newer.id, older.id)))
            if pair is not None and pair.state != "open":
                continue
            if band == "new":
                if pair is not None:
                    session.delete(pair)
                continue
            counts[band] += 1
            if pair is None:
                pair = MatchCandidate(
                    entity_id=newer.id, candidate_id=older.id, list_name=list_name, state="open"
                )
                session.add(pair)
            pair.weight, pair.probability = float(score.weight), float(score.probability)
            pair.contributions = {k: float(v) for k, v in score.contributions.items()}
            pair.band = "review" if band == "link" else band  # batch relink never merges unseen
            pair.district_id = newer.district_id
        if progress:
            progress(len(entities))
    return counts


# EM learns what duplicates look like from the candidate pairs. A registry with few
# duplicates gives it none to learn from: fitted on the 10k-household bench registry
# (no duplicates), it took the likeliest namesakes for matches, and 180 household pairs
# went to review instead of 20. So a refit needs this many pairs that the current model
# already links; otherwise the model is kept.
REFIT_MIN_LIKELY = 50


def _refit(
    sessions: Callable[[], AbstractContextManager[Session]],
    list_name: str,
    chunk: int,
    progress: Callable[[int], None] | None,
) -> tuple[int, int, str | None]:
    """`relink`'s second pass: EM on the levels of every candidate pair, counted, when
    `REFIT_MIN_LIKELY` of them are likely duplicates under the current model, and kept
    unless `matching.implausible_fit` refuses it. Returns (pairs fitted on, 0 when the
    model was kept; likely duplicates among them; why the fit was refused, if it was)."""
    with sessions() as session:
        model = model_for(session, list_name)
    link = thresholds().link
    counted: Counter[tuple[str, ...]] = Counter()
    likely = 0
    listed: dict[Any, set[Any]] = {}
    for session, entities in _in_chunks(sessions, list_name, chunk):
        vectors = [vector for _, _, vector in _pairs(session, entities, listed)]
        counted += matching.patterns(vectors, model)
        likely += sum(1 for vector in vectors if model.weight(vector) >= link)
        if progress:
            progress(len(entities))
    pairs = sum(counted.values())
    if likely < REFIT_MIN_LIKELY:
        return 0, likely, None
    fitted = matching.estimate_em(counted, model)
    refused = matching.implausible_fit(fitted)
    if refused is not None:
        log.warning("relink of %s kept its model: EM's fit was refused, %s", list_name, refused)
        return 0, likely, refused
    with sessions() as session:
        stored = session.get(MatchModel, list_name) or MatchModel(list_name=list_name)
        stored.parameters = fitted.to_dict()
        stored.fitted_at = utcnow()
        stored.pairs = pairs
        session.add(stored)
    return pairs, likely, None


def _in_chunks(
    sessions: Callable[[], AbstractContextManager[Session]], list_name: str, chunk: int
) -> Iterator[tuple[Session, list[Entity]]]:
    """The list's active records in id order, `chunk` at a time, each chunk with a session
    of its own that commits once the caller is done with the chunk."""
    after = None
    while True:
        with sessions() as session:
            statement = (
                select(Entity)
                .where(
                    Entity.list_name == list_name,
                    Entity.merged_into_id.is_(None),
                    Entity.deleted.is_(False),
                )
                .order_by(Entity.id)
                .limit(chunk)
            )
            if after is not None:
                statement = statement.where(Entity.id > after)
            entities = list(session.scalars(statement))
            if not entities:
                return
            yield session, entities
            after = entities[-1].id


def _pairs(
    session: Session, entities: list[Entity], listed: dict[Any, set[Any]]
) -> list[tuple[CandidateFields, CandidateFields, matching.ComparisonVector]]:
    """The candidate pairs of a chunk of records (taken in id order), each as (newer,
    older, comparison) and each once over the whole list: a pair is compared from the
    record of the two that comes first, and `listed` remembers it for the other, which
    comes in a later chunk (and drops it then)."""
    keys: dict[Any, set[str]] = {entity.id: set() for entity in entities}
    for entity_id, key in session.execute(
        select(MatchKey.entity_id, MatchKey.key).where(MatchKey.entity_id.in_(list(keys)))
    ):
        keys[entity_id].add(key)
    found = {entity.id: candidates(session, entity, keys[entity.id]) for entity in entities}
    others = {c.id: c for listed_ones in found.values() for c in listed_ones}
    records = _records(session, [*entities, *others.values()])
    created = {entity.id: entity.created_at for entity in entities}
    if others:
        statement = select(Entity.id, Entity.created_at).where(Entity.id.in_(list(others)))
        created.update({row.id: row.created_at for row in session.execute(statement)})
    pairs = []
    for entity in entities:
        seen = listed.pop(entity.id, set())
        for other in found[entity.id]:
            if other.id in seen:
                continue
            if other.id > entity.id:  # comes later: it must not compare this pair again
                listed.setdefault(other.id, set()).add(entity.id)
            older, newer = sorted(
                (cast(CandidateFields, entity), other),
                key=lambda e: (as_utc(created[e.id]), e.id),
            )
            pairs.append((newer, older, _compare(records[newer.id], records[older.id])))
    return pairs


def reconcile_members(session: Session, household_merge: Any, actor: User | None) -> None:
    """After two households merge, pair the people of the merged one with the survivor's
    one-to-one: strong pairs are merged (and undone with the household merge), weaker
    ones become match candidates for a supervisor."""
    import uuid

    from server.registry.service import merge

    moved_ids = {uuid.UUID(str(value)) for value in household_merge.moved_member_ids}
    people = list(
        session.scalars(
            select(Entity).where(
                Entity.household_id == household_merge.survivor_id,
                Entity.merged_into_id.is_(None),
                Entity.deleted.is_(False),
            )
        )
    )
    moved = [p for p in people if p.id in moved_ids]
    staying = [p for p in people if p.id not in moved_ids]
    if not moved or not staying:
        return
    by_id = {str(p.id): p for p in people}
    limits = thresholds()
    pairs = matching.align_members(
        [person_record(p) for p in moved],
        [person_record(p) for p in staying],
        minimum_weight=limits.review,
    )
    if not pairs:
        return
    # One query for the pairs already recorded, one flush for the new ones (the merges
    # point at them), one flush for all the merges: a few statements per household, not
    # a few per member.
    existing = {
        (candidate.entity_id, candidate.candidate_id): candidate
        for candidate in session.scalars(
            select(MatchCandidate).where(MatchCandidate.entity_id.in_([p.id for p in moved]))
        )
    }
    decided: list[tuple[Entity, Entity, MatchCandidate]] = []
    for pair in pairs:
        newer, older = by_id[pair.a_id], by_id[pair.b_id]
        candidate = existing.get((newer.id, older.id)) or MatchCandidate(
            entity_id=newer.id, candidate_id=older.id, list_name=newer.list_name, state="open"
        )
        candidate.weight = float(pair.score.weight)
        candidate.probability = float(pair.score.probability)
        candidate.contributions = {k: float(v) for k, v in pair.score.contributions.items()}
        candidate.band = matching.classify(pair.score, limits)
        candidate.district_id = older.district_id
        session.add(candidate)
        decided.append((newer, older, candidate))
    session.flush()
    for newer, older, candidate in decided:
        if candidate.band == "link" and candidate.state == "open":
            merge(
                session,
                actor,
                older,
                newer,
                candidate=candidate,
                automatic=True,
                parent=household_merge,
            )
    session.flush()
