"""Intake: decide what a posted submission is, and store it durably before saying so.

`receive` is the one place that decides the outcome of a submission (created, duplicate,
conflict, edit, unknown form, closed, …); `STATUS` is the one table mapping outcomes to
HTTP statuses. The OpenRosa endpoint and the batch sync API both go through it.
"""

from __future__ import annotations

import enum
import functools
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Insert, Select, Table, and_, bindparam, func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from forms.instance import Envelope, InstanceError, read_envelope
from server.accounts.models import User, user_district
from server.accounts.service import can, require, scope_to_districts, visible_district_ids
from server.blobs import StoredBlob
from server.catalog.models import Form, FormVersion, form_district
from server.db import Base, utcnow
from server.errors import Forbidden, NotFound
from server.intake.models import DECIDED_REVIEW_STATES, Submission, SubmissionAttachment


class Outcome(enum.Enum):
    CREATED = "created"
    ATTACHMENTS_ADDED = "attachments_added"
    DUPLICATE = "duplicate"
    EDIT_CREATED = "edit_created"
    CONFLICT = "conflict"
    EDIT_TARGET_UNKNOWN = "edit_target_unknown"
    EDIT_TARGET_REPLACED = "edit_target_replaced"
    UNKNOWN_FORM = "unknown_form"
    UNKNOWN_VERSION = "unknown_version"
    NOT_PUBLISHED = "not_published"
    FORM_CLOSED = "form_closed"
    NOT_ASSIGNED = "not_assigned"
    NOT_ALLOWED = "not_allowed"
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"


STATUS: dict[Outcome, int] = {
    Outcome.CREATED: 201,
    Outcome.ATTACHMENTS_ADDED: 201,
    Outcome.EDIT_CREATED: 201,
    Outcome.DUPLICATE: 202,
    Outcome.MALFORMED: 400,
    Outcome.NOT_ALLOWED: 403,
    Outcome.NOT_ASSIGNED: 403,
    Outcome.FORM_CLOSED: 403,
    Outcome.NOT_PUBLISHED: 403,
    Outcome.UNKNOWN_FORM: 404,
    Outcome.UNKNOWN_VERSION: 404,
    Outcome.EDIT_TARGET_UNKNOWN: 404,
    Outcome.CONFLICT: 409,
    Outcome.EDIT_TARGET_REPLACED: 409,
    Outcome.TOO_LARGE: 413,
}

# Outcomes after which the submission is durably stored: the device may forget it.
STORED = frozenset(
    {Outcome.CREATED, Outcome.ATTACHMENTS_ADDED, Outcome.EDIT_CREATED, Outcome.DUPLICATE}
)


@dataclass(frozen=True)
class IncomingFile:
    name: str
    blob: StoredBlob
    content_type: str | None = None


@dataclass
class IncomingSubmission:
    """What a device posted, with every byte already written to the blob store."""

    xml: bytes
    xml_blob: StoredBlob
    files: list[IncomingFile] = field(default_factory=list)
    incomplete: bool = False
    device_id: str | None = None


@dataclass
class Decision:
    outcome: Outcome
    message: str
    submission: Submission | None = None
    envelope: Envelope | None = None

    @property
    def status(self) -> int:
        return STATUS[self.outcome]

    @property
    def stored(self) -> bool:
        return self.outcome in STORED


def is_safe_attachment_name(name: str) -> bool:
    return (
        bool(name)
        and len(name) <= 255
        and "/" not in name
        and "\\" not in name
        and name not in (".", "..")
        # No NUL, CR/LF or other control characters, and no invisible format characters:
        # a right-to-left override makes "photo<RLO>gpj.exe" read as "photoexe.jpg".
        and not any(unicodedata.category(char) in ("Cc", "Cf") for char in name)
    )


def receive(session: Session, actor: User, incoming: IncomingSubmission) -> Decision:
    """Decide what this submission is and store it (flush only; the caller commits)."""
    if not can(actor, "forms.fill"):
        return Decision(Outcome.NOT_ALLOWED, f"the {actor.role} role does not submit forms")
    try:
        envelope = read_envelope(incoming.xml)
    except InstanceError as error:
        return Decision(Outcome.MALFORMED, f"xml_submission_file: {error}")
    for incoming_file in incoming.files:
        if not is_safe_attachment_name(incoming_file.name):
            return Decision(
                Outcome.MALFORMED,
                f"attachment name {incoming_file.name[:80]!r} is not a plain file name",
            )

    found = _form_and_version(session, actor, envelope.form_id, envelope.version)
    if found is None:
        return Decision(
            Outcome.UNKNOWN_FORM, f"no form with ID {envelope.form_id!r}", envelope=envelope
        )
    form, version, districts = found
    if envelope.version is None:
        return Decision(
            Outcome.UNKNOWN_VERSION,
            f"the submission names no version of form {envelope.form_id!r}",
            envelope=envelope,
        )
    if version is None:
        return Decision(
            Outcome.UNKNOWN_VERSION,
            f"form {envelope.form_id!r} has no version {envelope.version!r}",
            envelope=envelope,
        )
    if districts.restricted and not districts.shared:
        return Decision(
            Outcome.NOT_ASSIGNED,
            f"form {envelope.form_id!r} is not assigned to your districts",
            envelope=envelope,
        )

    if version.state == "published" and not envelope.deprecated_id:
        # The common case, a new instance of a published version, costs one INSERT (and
        # one for its files) with no lookup first; an instance already stored falls
        # through to the lookup below (a resend, more files, or a conflict).
        submission = _new_submission(actor, incoming, envelope, form, version, districts)
        if _insert_if_new(session, submission):
            return Decision(Outcome.CREATED, "submission received", submission, envelope)

    existing = _by_instance(session, form, envelope.instance_id)
    if existing is not None:
        return _resubmission(existing, incoming, envelope)
    if version.state == "closed":
        return Decision(
            Outcome.FORM_CLOSED,
            f"version {version.version} of form {form.form_id!r} is closed and accepts no "
            "more submissions",
            envelope=envelope,
        )
    if version.state != "published":
        return Decision(
            Outcome.NOT_PUBLISHED,
            f"version {version.version} of form {form.form_id!r} is not published",
            envelope=envelope,
        )

    replaced = None
    if envelope.deprecated_id:
        replaced = _by_instance(session, form, envelope.deprecated_id)
        if replaced is None:
            return Decision(
                Outcome.EDIT_TARGET_UNKNOWN,
                f"the edit replaces instance {envelope.deprecated_id!r}, which this server "
                "does not have",
                envelope=envelope,
            )
        if not replaced.current:
            return Decision(
                Outcome.EDIT_TARGET_REPLACED,
                f"instance {envelope.deprecated_id!r} was already replaced by another edit",
                envelope=envelope,
            )
        replaced.current = False

    submission = _new_submission(actor, incoming, envelope, form, version, districts, replaced)
    session.add(submission)
    session.flush()
    outcome = Outcome.EDIT_CREATED if replaced else Outcome.CREATED
    return Decision(outcome, "submission received", submission, envelope)


def _new_submission(
    actor: User,
    incoming: IncomingSubmission,
    envelope: Envelope,
    form: _FormRef,
    version: _VersionRef,
    districts: _FormDistricts,
    replaced: Submission | None = None,
) -> Submission:
    """A new submission and its attachments, not yet in the session."""
    now = utcnow()
    submission = Submission(
        id=uuid.uuid4(),
        form_pk=form.id,
        form_version_id=version.id,
        instance_id=envelope.instance_id,
        instance_name=(envelope.instance_name or "")[:500] or None,
        deprecated_id=envelope.deprecated_id,
        submitter_id=actor.id,
        device_id=(incoming.device_id or "")[:255] or None,
        district_id=replaced.district_id if replaced else _district_for(actor, districts),
        xml_sha256=incoming.xml_blob.sha256,
        xml_size=incoming.xml_blob.size,
        encrypted=envelope.encrypted,
        received_at=now,
        next_attempt_at=now,
    )
    if envelope.encrypted:
        expected = [*envelope.media_files, envelope.encrypted_xml_file or ""]
        for position, name in enumerate(expected):
            submission.attachments.append(SubmissionAttachment(name=name, position=position))
    _attach(submission, incoming.files)
    _update_completeness(submission, incoming.incomplete, new=True)
    return submission


def _insert_if_new(session: Session, submission: Submission) -> bool:
    """INSERT the submission unless its instance ID is already stored (ON CONFLICT DO
    NOTHING: a racing upload of the same instance waits for the other to commit), then
    its attachments; False, inserting nothing, when it was already there. Core
    statements: the ORM's unit of work cost more CPU than everything else in intake."""
    insert_submission, insert_attachments = _insert_statements(session.get_bind().dialect.name)
    connection = session.connection()
    if connection.execute(insert_submission, _row(submission)).first() is None:
        return False
    if submission.attachments:
        rows = []
        for attachment in submission.attachments:
            attachment.id = uuid.uuid4()
            attachment.submission_id = submission.id
            # Every column in every row, as one executemany needs (no JSON among them).
            state = vars(attachment)
            rows.append({key: state.get(key) for key in _column_keys(SubmissionAttachment)})
        connection.execute(insert_attachments, rows)
    return True


@functools.cache
def _insert_statements(dialect: str) -> tuple[Insert, Insert]:
    """The submission's INSERT … ON CONFLICT DO NOTHING and its attachments' INSERT, built
    once per dialect rather than (with their cache keys) on every request: ~30 µs of CPU."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    table = cast(Table, Submission.__table__)
    submission = (
        insert(table)
        .on_conflict_do_nothing(index_elements=[table.c.form_pk, table.c.instance_id])
        .returning(table.c.id)  # rowcount says -1 here on PostgreSQL: read the row instead
    )
    return submission, insert(cast(Table, SubmissionAttachment.__table__))


@functools.cache
def _column_keys(model: type[Base]) -> tuple[str, ...]:
    return tuple(column.key for column in sa_inspect(model).column_attrs)


def _row(instance: Submission) -> dict[str, Any]:
    """The column values set on a new ORM object; columns left unset take their defaults.
    (None is left out too: a JSON column would store it as JSON null, not SQL NULL.)"""
    state = vars(instance)
    return {key: state[key] for key in _column_keys(type(instance)) if state.get(key) is not None}


def _by_instance(session: Session, form: _FormRef, instance_id: str) -> Submission | None:
    # Locked until the commit: two POSTs adding files to one submission, or two edits of
    # one instance, take turns, so the second sees what the first did (PostgreSQL).
    return session.scalar(
        select(Submission)
        .where(Submission.form_pk == form.id, Submission.instance_id == instance_id)
        .options(selectinload(Submission.attachments))
        .with_for_update()
    )


def _resubmission(
    existing: Submission, incoming: IncomingSubmission, envelope: Envelope
) -> Decision:
    if existing.xml_sha256 != incoming.xml_blob.sha256:
        return Decision(
            Outcome.CONFLICT,
            f"instance {envelope.instance_id!r} was already received with different content",
            existing,
            envelope,
        )
    added = _attach(existing, incoming.files)
    was_waiting = existing.processing_state == "waiting"
    _update_completeness(existing, incoming.incomplete)
    if (
        added
        and existing.processing_state == "processed"
        and existing.review_state not in DECIDED_REVIEW_STATES
    ):
        # Files that came after processing (a client that sends them later): processed
        # again, so its attachment links and "never received" problems see them.
        # Processing replaces what it wrote; what reached the registry stays applied once.
        # Not once a supervisor has decided: reprocessing would make a rejected
        # submission's discarded registry changes pending again.
        existing.processing_state = "queued"
        existing.attempts = 0
        existing.next_attempt_at = utcnow()
    if added or (was_waiting and existing.processing_state != "waiting"):
        return Decision(Outcome.ATTACHMENTS_ADDED, "attachments received", existing, envelope)
    return Decision(Outcome.DUPLICATE, "this submission was already received", existing, envelope)


def _attach(submission: Submission, files: Sequence[IncomingFile]) -> int:
    """Record arrived files; a file already received keeps its first bytes."""
    by_name = {attachment.name: attachment for attachment in submission.attachments}
    added = 0
    now = utcnow()
    for incoming_file in files:
        attachment = by_name.get(incoming_file.name)
        if attachment is None:
            attachment = SubmissionAttachment(
                name=incoming_file.name, position=len(submission.attachments)
            )
            submission.attachments.append(attachment)
            by_name[incoming_file.name] = attachment
        if attachment.sha256 is not None:
            continue
        attachment.sha256 = incoming_file.blob.sha256
        attachment.size = incoming_file.blob.size
        attachment.content_type = (incoming_file.content_type or "")[:100] or None
        attachment.received_at = now
        added += 1
    return added


def _update_completeness(
    submission: Submission, incomplete_post: bool, *, new: bool = False
) -> None:
    """Encrypted: complete when every listed file arrived. Plain: when a POST came without
    `*isIncomplete*` (Collect marks every POST but the last of a split upload)."""
    if submission.encrypted:
        complete = all(a.sha256 is not None for a in submission.attachments)
    else:
        complete = (not new and submission.complete) or not incomplete_post
    submission.complete = complete
    if new:
        submission.processing_state = "queued" if complete else "waiting"
    elif complete and submission.processing_state == "waiting":
        submission.processing_state = "queued"
        submission.next_attempt_at = utcnow()


def _district_for(actor: User, districts: _FormDistricts) -> int | None:
    """The district a new submission belongs to, when the submitter's districts and the
    form's assignment leave only one; processing may refine it from the answers."""
    candidates = districts.form if actor.role == "admin" else districts.shared
    return next(iter(candidates)) if len(candidates) == 1 else None


@dataclass(frozen=True)
class _FormDistricts:
    form: set[int]  # the districts the form is assigned to
    restricted: bool  # False: the actor sees every district (visible_district_ids is None)
    shared: set[int]  # the form's districts the actor may see (all of them if unrestricted)


@dataclass(frozen=True)
class _FormRef:
    id: uuid.UUID
    form_id: str


@dataclass(frozen=True)
class _VersionRef:
    id: uuid.UUID
    version: str
    state: str


def _form_and_version_statement() -> Select[Any]:
    forms, versions = cast(Table, Form.__table__), cast(Table, FormVersion.__table__)
    return (
        select(
            forms.c.id,
            forms.c.form_id,
            versions.c.id,
            versions.c.version,
            versions.c.state,
            form_district.c.district_id,
            user_district.c.user_id,
        )
        .select_from(forms)
        # A version of None compares as NULL and joins no version row.
        .outerjoin(
            versions,
            and_(versions.c.form_pk == forms.c.id, versions.c.version == bindparam("version")),
        )
        .outerjoin(form_district, form_district.c.form_id == forms.c.id)
        .outerjoin(
            user_district,
            and_(
                user_district.c.district_id == form_district.c.district_id,
                user_district.c.user_id == bindparam("user_id"),
            ),
        )
        .where(forms.c.form_id == bindparam("form_id"))
    )


# Built once: building it and its cache key on every submission took ~0.9 ms of CPU,
# more than twice what running it takes; table columns keep it off the ORM's execution
# path (another ~0.1 ms).
_FORM_AND_VERSION = _form_and_version_statement()


def _form_and_version(
    session: Session, actor: User, form_id: str, version_name: str | None
) -> tuple[_FormRef, _VersionRef | None, _FormDistricts] | None:
    """The form, its version `version_name` (id, version and state: not the XForm and its
    definition, tens of KB each), the form's districts and which of them are the actor's,
    in one round trip instead of four (form, its districts, version, the actor's
    districts), as plain columns rather than ORM objects. None when there is no such form."""
    rows = session.execute(
        _FORM_AND_VERSION, {"form_id": form_id, "version": version_name, "user_id": actor.id}
    ).all()
    if not rows:
        return None
    first = rows[0]
    form = _FormRef(first[0], first[1])
    version = _VersionRef(first[2], first[3], first[4]) if first[2] is not None else None
    form_ids = {row[5] for row in rows if row[5] is not None}
    if actor.role != "admin" and "districts" not in vars(actor):
        # visible_district_ids(actor) would load the actor's districts: the join above
        # already says which of the form's districts are among them.
        shared = {row[5] for row in rows if row[6] is not None}
        return form, version, _FormDistricts(form_ids, True, shared)
    allowed = visible_district_ids(actor)
    if allowed is None:
        return form, version, _FormDistricts(form_ids, False, form_ids)
    return form, version, _FormDistricts(form_ids, True, form_ids & allowed)


# ----------------------------------------------------------------------------- reads


@dataclass
class SubmissionFilter:
    form_id: str | None = None
    version: str | None = None
    processing_state: str | None = None
    review_state: str | None = None
    district_id: int | None = None
    submitter: str | None = None
    since: Any = None
    until: Any = None
    current_only: bool = True
    page: int = 1
    per_page: int = 50


def _scoped(actor: User) -> Select[tuple[Submission]]:
    require(actor, "submissions.read")
    return scope_to_districts(select(Submission), Submission.district_id, actor)


def list_submissions(
    session: Session, actor: User, filters: SubmissionFilter
) -> tuple[list[Submission], int]:
    statement = _scoped(actor)
    if filters.form_id:
        statement = statement.join(Submission.form).where(Form.form_id == filters.form_id)
    if filters.version:
        statement = statement.join(Submission.form_version).where(
            FormVersion.version == filters.version
        )
    if filters.processing_state:
        statement = statement.where(Submission.processing_state == filters.processing_state)
    if filters.review_state:
        statement = statement.where(Submission.review_state == filters.review_state)
    if filters.district_id is not None:
        statement = statement.where(Submission.district_id == filters.district_id)
    if filters.submitter:
        statement = statement.join(Submission.submitter).where(User.username == filters.submitter)
    if filters.since:
        statement = statement.where(Submission.received_at >= filters.since)
    if filters.until:
        statement = statement.where(Submission.received_at < filters.until)
    if filters.current_only:
        statement = statement.where(Submission.current.is_(True))
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    per_page = max(1, min(filters.per_page, 500))
    rows = session.scalars(
        statement.order_by(Submission.received_at.desc(), Submission.id)
        .limit(per_page)
        .offset((max(filters.page, 1) - 1) * per_page)
        .options(selectinload(Submission.attachments))
    ).all()
    return list(rows), total


def get_submission(session: Session, actor: User, submission_id: uuid.UUID | str) -> Submission:
    try:
        key = (
            submission_id if isinstance(submission_id, uuid.UUID) else uuid.UUID(str(submission_id))
        )
    except ValueError:
        raise NotFound(f"no submission {submission_id}") from None
    submission = session.get(Submission, key)
    if submission is None:
        raise NotFound(f"no submission {submission_id}")
    require(actor, "submissions.read")
    allowed = visible_district_ids(actor)
    if allowed is not None and submission.district_id not in allowed:
        raise Forbidden("this submission belongs to a district you are not assigned to")
    return submission


def processing_counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Submission.processing_state, func.count()).group_by(Submission.processing_state)
    )
    return {state: count for state, count in rows}
