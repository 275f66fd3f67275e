"""Supervisor review of submissions: the review states ODK Central has (received, has
issues, edited, approved, rejected), a comment thread, versioned edits of the data, the
queue, bulk approval and the dashboard; and the reads the registry pages need.

Approving applies the submission's pending registry changes; rejecting discards them.
Every action goes to the audit log. Each state change (an edit is one: it sets "edited")
takes the next step number of its submission; a page sends the number it was drawn
from, so of two supervisors acting on the same version the second gets a 409.
"""

from __future__ import annotations

import base64
import binascii
import copy
import csv
import datetime as dt
import io
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Select, and_, false, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, load_only

from forms.definition import DEFAULT_LANGUAGE, FormDefinition, Question
from forms.instance import typed_value
from server.accounts.models import District, User, user_district
from server.accounts.service import (
    audit,
    can,
    require,
    require_district,
    scope_to_districts,
    visible_district_ids,
)
from server.blobs import BlobStore
from server.catalog import service as catalog
from server.catalog.models import Form, FormVersion
from server.db import as_utc, utcnow
from server.errors import Conflict, ValidationFailed
from server.i18n import _
from server.intake import service as intake
from server.intake.models import DECIDED_REVIEW_STATES, REVIEW_STATES, Submission
from server.registry import service as registry
from server.registry.models import (
    Entity,
    EntityConflict,
    MatchCandidate,
    Merge,
    PendingChange,
)
from server.review.models import ReviewTransition, SubmissionComment, SubmissionEdit

# Waiting for a decision; a decision is final (approval applied registry changes,
# rejection discarded them).
WAITING = ("received", "has_issues", "edited")
FINAL = DECIDED_REVIEW_STATES
# What a supervisor sets; "edited" comes from editing the data.
DECISIONS = ("has_issues", "approved", "rejected")
STATE_LABELS = {
    "received": "Received",
    "has_issues": "Has issues",
    "edited": "Edited",
    "approved": "Approved",
    "rejected": "Rejected",
}
MAX_COMMENT_CHARS = 5000
BULK_LIMIT = 1000
# Question types a supervisor may correct. Metadata (start, end, deviceid…), notes and
# files are what the device recorded and stay as they are.
EDITABLE_TYPES = frozenset(
    {
        "text",
        "integer",
        "decimal",
        "range",
        "date",
        "time",
        "dateTime",
        "select_one",
        "select_multiple",
        "select_one_from_file",
        "select_multiple_from_file",
        "select_one_external",
        "calculate",
        "barcode",
        "geopoint",
        "hidden",
    }
)


def state_label(state: str) -> str:
    return _(STATE_LABELS.get(state, state))


# ------------------------------------------------------------------------ access


def get_submission(session: Session, actor: User, submission_id: uuid.UUID | str) -> Submission:
    """A submission the actor may read (district-scoped), or 403/404."""
    return intake.get_submission(session, actor, submission_id)


def _require_reviewer(actor: User, submission: Submission) -> None:
    require(actor, "submissions.review")
    require_district(actor, submission.district_id)


def review_version(session: Session, submission: Submission) -> int:
    """How many state changes the submission has had: the optimistic-lock token."""
    return (
        session.scalar(
            select(func.max(ReviewTransition.seq)).where(
                ReviewTransition.submission_id == submission.id
            )
        )
        or 0
    )


def _stale(session: Session, submission: Submission) -> Conflict:
    last = session.scalar(
        select(ReviewTransition)
        .where(ReviewTransition.submission_id == submission.id)
        .order_by(ReviewTransition.seq.desc())
        .limit(1)
    )
    who = f" by {last.actor_name}" if last is not None and last.actor_name else ""
    return Conflict(
        _(
            "someone else reviewed this submission since you opened it (it is now "
            "%(state)s%(who)s); reload it and decide again",
            state=state_label(submission.review_state),
            who=who,
        ),
        {"review_state": submission.review_state, "version": review_version(session, submission)},
    )


def _lock(session: Session, submission: Submission, expected_version: int | None) -> int:
    """Lock the submission and check it is still at the version the page was drawn from;
    returns that version."""
    # On PostgreSQL a second supervisor waits here for the first one's commit, then reads
    # the new state; SQLite already runs one writer at a time.
    session.refresh(submission, ["review_state", "processing_state"], with_for_update=True)
    current = review_version(session, submission)
    if expected_version is not None and expected_version != current:
        raise _stale(session, submission)
    return current


def _record_transition(
    session: Session, actor: User, submission: Submission, current: int, to_state: str
) -> ReviewTransition:
    step = ReviewTransition(
        submission_id=submission.id,
        seq=current + 1,
        from_state=submission.review_state,
        to_state=to_state,
        actor_id=actor.id,
        actor_name=actor.username,
    )
    try:
        with session.begin_nested():
            session.add(step)
            session.flush()
    except IntegrityError:
        # The same step number was taken by a concurrent action that committed first.
        raise _stale(session, submission) from None
    return step


def _check_open(submission: Submission) -> None:
    if submission.review_state == "approved":
        raise Conflict(
            _("this submission is already approved: its changes are in the registry"),
            {"review_state": submission.review_state},
        )
    if submission.review_state == "rejected":
        raise Conflict(
            _("this submission is already rejected"), {"review_state": submission.review_state}
        )


# ----------------------------------------------------------------- state changes


@dataclass
class Decision:
    submission: Submission
    transition: ReviewTransition
    comment: SubmissionComment | None = None
    registry_changes: int = 0


def set_review_state(
    session: Session,
    actor: User,
    submission: Submission,
    state: str,
    *,
    expected_version: int | None,
    comment: str = "",
    bulk: bool = False,
) -> Decision:
    """Mark a submission as having issues, approve it (its pending registry changes are
    applied) or reject it (they are discarded), optionally with a comment."""
    _require_reviewer(actor, submission)
    if state not in DECISIONS:
        raise ValidationFailed(
            _("a review decision is one of %(states)s", states=", ".join(DECISIONS)),
            {"state": [state]},
        )
    body = _comment_body(comment) if comment.strip() else ""
    current = _lock(session, submission, expected_version)
    _check_open(submission)
    if state == "approved" and submission.processing_state != "processed":
        raise Conflict(
            _(
                "this submission cannot be approved before it is processed (it is %(state)s)",
                state=submission.processing_state,
            ),
            {"processing_state": submission.processing_state},
        )
    from_state = submission.review_state
    step = _record_transition(session, actor, submission, current, state)
    submission.review_state = state
    decision = Decision(submission, step)
    if body:
        decision.comment = _add_comment(session, actor, submission, body, transition=step)
    if state == "approved":
        decision.registry_changes = len(
            registry.apply_submission_changes(session, submission, actor)
        )
    elif state == "rejected":
        decision.registry_changes = registry.discard_submission_changes(session, submission, actor)
    session.flush()
    audit(
        session,
        actor,
        f"review.{state}",
        submission,
        from_state=from_state,
        version=step.seq,
        registry_changes=decision.registry_changes,
        **({"bulk": True} if bulk else {}),
    )
    return decision


# ---------------------------------------------------------------------- comments


def _comment_body(body: str) -> str:
    text = body.strip()
    if not text:
        raise ValidationFailed(_("write a comment first"), {"body": [_("empty")]})
    if len(text) > MAX_COMMENT_CHARS:
        raise ValidationFailed(
            _("a comment is at most %(n)d characters", n=MAX_COMMENT_CHARS),
            {"body": [_("%(n)d characters", n=len(text))]},
        )
    return text


def _add_comment(
    session: Session,
    actor: User,
    submission: Submission,
    body: str,
    *,
    transition: ReviewTransition | None,
) -> SubmissionComment:
    comment = SubmissionComment(
        submission_id=submission.id,
        author_id=actor.id,
        author_name=actor.username,
        body=body,
        transition_id=transition.id if transition else None,
    )
    session.add(comment)
    session.flush()
    return comment


def add_comment(
    session: Session, actor: User, submission: Submission, body: str
) -> SubmissionComment:
    """Add to the submission's comment thread (it does not change the review state)."""
    _require_reviewer(actor, submission)
    comment = _add_comment(session, actor, submission, _comment_body(body), transition=None)
    audit(session, actor, "review.comment", submission, comment=comment.id)
    return comment


def comments_of(session: Session, submission: Submission) -> list[SubmissionComment]:
    return list(
        session.scalars(
            select(SubmissionComment)
            .where(SubmissionComment.submission_id == submission.id)
            .order_by(SubmissionComment.at, SubmissionComment.id)
        )
    )


# ------------------------------------------------------------------------- edits

_STEP = re.compile(r"^([A-Za-z_][\w.\-]*)(?:\[(\d{1,5})\])?$")


def parse_answer_path(path: str) -> list[str | int]:
    """ "member[2]/full_name" → ["member", 1, "full_name"] (repeat positions 1-based in the
    path, as in XPath, 0-based in the result)."""
    steps: list[str | int] = []
    for part in path.strip("/").split("/"):
        match = _STEP.match(part)
        if not match or (match.group(2) is not None and int(match.group(2)) < 1):
            raise ValidationFailed(
                _("%(path)s is not an answer path", path=path[:200]), {path[:200]: ["bad path"]}
            )
        steps.append(match.group(1))
        if match.group(2) is not None:
            steps.append(int(match.group(2)) - 1)
    return steps


def answer_path(steps: Sequence[str | int]) -> str:
    """The inverse of `parse_answer_path`."""
    parts: list[str] = []
    for step in steps:
        if isinstance(step, int):
            parts[-1] += f"[{step + 1}]"
        else:
            parts.append(step)
    return "/".join(parts)


def definition_path(steps: Sequence[str | int]) -> str:
    return "/" + "/".join(step for step in steps if isinstance(step, str))


_MISSING = object()


def _value_at(data: Any, steps: Sequence[str | int]) -> Any:
    current = data
    for step in steps:
        if isinstance(step, int):
            if not isinstance(current, list) or step >= len(current):
                return _MISSING
            current = current[step]
        else:
            if not isinstance(current, dict):
                return _MISSING
            current = current.get(step)
    return current


def _set_value(data: dict[str, Any], steps: Sequence[str | int], value: Any) -> None:
    current: Any = data
    for position, step in enumerate(steps[:-1]):
        following = steps[position + 1]
        if isinstance(step, int):
            current = current[step]
        else:
            if current.get(step) is None:
                current[step] = [] if isinstance(following, int) else {}
            current = current[step]
    current[steps[-1]] = value


def is_editable(question: Question) -> bool:
    return question.type in EDITABLE_TYPES


def typed_answer(
    question: Question, raw: Any, definition: FormDefinition
) -> tuple[Any, str | None]:
    """The stored value for what a supervisor typed or picked, or why it does not fit."""
    if isinstance(raw, list | tuple):
        raw = " ".join(str(item).strip() for item in raw if str(item).strip())
    text = "" if raw is None else str(raw).strip()
    if not text:
        return None, None
    choice_list = definition.choice_lists.get(question.choice_list or "")
    if choice_list is not None and question.type in ("select_one", "select_multiple"):
        names = {choice.name for choice in choice_list.choices}
        unknown = [value for value in text.split() if value not in names]
        if question.type == "select_one" and len(text.split()) != 1:
            return None, _("choose one of the choices")
        if unknown:
            return None, _("%(value)s is not one of the choices", value=", ".join(unknown))
    value, problem = typed_value(question.type, text)
    return value, problem


def entity_text(value: Any) -> str | None:
    """An answer as ODK Entities stores a saved property: text."""
    if value is None:
        return None
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    if isinstance(value, dict) and "latitude" in value:
        parts = [value.get(k) for k in ("latitude", "longitude", "altitude", "accuracy")]
        return " ".join(_number_text(p) for p in parts if p is not None)
    if isinstance(value, float):
        return _number_text(value)
    return str(value)


def _number_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def edits_of(session: Session, submission: Submission) -> list[SubmissionEdit]:
    return list(
        session.scalars(
            select(SubmissionEdit)
            .where(SubmissionEdit.submission_id == submission.id)
            .order_by(SubmissionEdit.version)
        )
    )


def edit_submission(
    session: Session,
    actor: User,
    submission: Submission,
    changes: Mapping[str, Any],
    *,
    expected_version: int | None,
) -> SubmissionEdit | None:
    """Correct answers: a new version of the data, the editor recorded, the state
    "edited", and the registry changes still waiting updated to match. Returns None when
    nothing actually changed."""
    _require_reviewer(actor, submission)
    _check_open(submission)
    if submission.data is None:
        raise Conflict(
            _("this submission has not been processed yet: there is nothing to edit"),
            {"processing_state": submission.processing_state},
        )
    definition = catalog.definition_of(submission.form_version)
    data = copy.deepcopy(submission.data)
    changed: dict[str, list[Any]] = {}
    problems: dict[str, list[str]] = {}
    for path, raw in changes.items():
        steps = parse_answer_path(path)
        question = definition.question_at(definition_path(steps))
        if question is None:
            problems[path] = [_("the form has no such question")]
            continue
        if not is_editable(question):
            problems[path] = [
                _("this answer cannot be edited: files, notes and device records stay as sent")
            ]
            continue
        before = _value_at(data, steps)
        if before is _MISSING:
            problems[path] = [_("the submission has no such answer")]
            continue
        value, problem = typed_answer(question, raw, definition)
        if problem:
            problems[path] = [problem]
            continue
        if value != before:
            _set_value(data, steps, value)
            changed[answer_path(steps)] = [before, value]
    if problems:
        raise ValidationFailed(_("some answers are not valid"), problems)
    if not changed:
        return None
    current = _lock(session, submission, expected_version)
    _check_open(submission)
    step = _record_transition(session, actor, submission, current, "edited")
    versions = edits_of(session, submission)
    if not versions:
        submitter = submission.submitter
        original = SubmissionEdit(
            submission_id=submission.id,
            version=1,
            data=submission.data,
            changed_fields={},
            editor_id=submission.submitter_id,
            editor_name=submitter.username if submitter else "",
            at=submission.processed_at or submission.received_at,
        )
        session.add(original)
        versions = [original]
    edit = SubmissionEdit(
        submission_id=submission.id,
        version=versions[-1].version + 1,
        data=data,
        changed_fields=changed,
        editor_id=actor.id,
        editor_name=actor.username,
    )
    session.add(edit)
    from_state = submission.review_state
    submission.data = data
    submission.review_state = "edited"
    updated = _carry_edits_to_registry(session, submission, definition, data, changed)
    session.flush()
    audit(
        session,
        actor,
        "review.edit",
        submission,
        from_state=from_state,
        version=step.seq,
        data_version=edit.version,
        fields=sorted(changed),
        registry_changes=updated,
    )
    return edit


def _carry_edits_to_registry(
    session: Session,
    submission: Submission,
    definition: FormDefinition,
    data: dict[str, Any],
    changed: Mapping[str, list[Any]],
) -> int:
    """Put corrected answers into the entity operations still waiting for approval."""
    waiting = [
        change
        for change in registry.pending_changes(session, submission)
        if change.state in ("pending", "held")
    ]
    touched: set[int] = set()
    for path, (_before, after) in changed.items():
        steps = parse_answer_path(path)
        question = definition.question_at(definition_path(steps))
        if question is None or not question.save_to or not question.entity_list:
            continue
        declaration = definition.entity_declaration(question.entity_list)
        if declaration is None:
            continue
        of_list = [change for change in waiting if change.list_name == question.entity_list]
        targets: list[PendingChange] = of_list[:1]
        if declaration.repeat_path is not None:
            # One entity per repeat instance, in document order: the n-th change is the
            # n-th instance — when every instance made one (create_if may skip some).
            positions = [i for i, step in enumerate(steps) if isinstance(step, int)]
            targets = []
            if positions:
                instances = _value_at(data, steps[: positions[-1]])
                index = steps[positions[-1]]
                if isinstance(instances, list) and len(of_list) == len(instances):
                    targets = [of_list[int(index)]]
        text = entity_text(after)
        for change in targets:
            change.properties = {**change.properties, question.save_to: text}
            if (declaration.label_expression or "").strip() == f"${{{question.name}}}":
                change.label = text
            touched.add(change.id)
    return len(touched)


# ------------------------------------------------------------------- the queue


@dataclass
class QueueFilter:
    form_id: str | None = None
    district_id: int | None = None
    submitter_id: uuid.UUID | None = None
    # A review state, "waiting" (received, has issues, edited) or "all".
    state: str = "waiting"
    since: dt.date | None = None
    until: dt.date | None = None
    order: str = "newest"
    after: str | None = None
    before: str | None = None
    per_page: int = 50

    def query_args(self) -> dict[str, Any]:
        """The filter as query-string arguments (without the page position)."""
        values = {
            "form_id": self.form_id,
            "district_id": self.district_id,
            "submitter_id": self.submitter_id,
            "state": self.state,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "order": self.order if self.order != "newest" else None,
        }
        return {key: value for key, value in values.items() if value not in (None, "")}


@dataclass
class QueuePage:
    rows: list[Submission]
    total: int
    next_cursor: str | None = None
    previous_cursor: str | None = None


def encode_cursor(submission: Submission) -> str:
    raw = f"{as_utc(submission.received_at).isoformat()}|{submission.id.hex}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _sep, key = raw.partition("|")
        return as_utc(dt.datetime.fromisoformat(moment)), uuid.UUID(hex=key)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed(
            _("the page position is not valid; start from the first page"),
            {"cursor": [cursor[:80]]},
        ) from None


def _state_condition(state: str) -> Any:
    if state == "waiting":
        return Submission.review_state.in_(WAITING)
    if state == "all":
        return None
    if state not in REVIEW_STATES:
        raise ValidationFailed(
            _("unknown review state %(state)s", state=state[:40]),
            {"state": [*REVIEW_STATES, "waiting", "all"]},
        )
    return Submission.review_state == state


def _filtered(session: Session, actor: User, filters: QueueFilter, *columns: Any) -> Select[Any]:
    require(actor, "submissions.read")
    statement = scope_to_districts(
        select(*columns) if columns else select(Submission), Submission.district_id, actor
    )
    # `WHERE current` (not `current IS TRUE`) so PostgreSQL uses the partial index.
    statement = statement.where(Submission.current)
    condition = _state_condition(filters.state)
    if condition is not None:
        statement = statement.where(condition)
    if filters.form_id:
        form_pk = session.scalar(select(Form.id).where(Form.form_id == filters.form_id))
        statement = statement.where(Submission.form_pk == form_pk if form_pk else false())
    if filters.district_id is not None:
        statement = statement.where(Submission.district_id == filters.district_id)
    if filters.submitter_id is not None:
        statement = statement.where(Submission.submitter_id == filters.submitter_id)
    if filters.since:
        statement = statement.where(Submission.received_at >= _midnight(filters.since))
    if filters.until:
        statement = statement.where(
            Submission.received_at < _midnight(filters.until + dt.timedelta(days=1))
        )
    return statement


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def count_queue(session: Session, actor: User, filters: QueueFilter) -> int:
    statement = _filtered(session, actor, filters, func.count())
    return session.scalar(statement) or 0


def queue(session: Session, actor: User, filters: QueueFilter) -> QueuePage:
    """One page of the review queue, by keyset on (received_at, id): every page costs
    the same however deep, and a submission arriving meanwhile shifts nothing."""
    per_page = max(1, min(filters.per_page, 200))
    newest_first = filters.order != "oldest"
    backwards = bool(filters.before) and not filters.after
    statement = _filtered(session, actor, filters)
    cursor = filters.after or filters.before
    if cursor:
        moment, key = decode_cursor(cursor)
        # Rows beyond the cursor in reading order (or before it, going back).
        later = newest_first == backwards
        if later:
            statement = statement.where(
                Submission.received_at >= moment,
                or_(
                    Submission.received_at > moment,
                    and_(Submission.received_at == moment, Submission.id > key),
                ),
            )
        else:
            statement = statement.where(
                Submission.received_at <= moment,
                or_(
                    Submission.received_at < moment,
                    and_(Submission.received_at == moment, Submission.id < key),
                ),
            )
    descending = newest_first != backwards
    order = (
        (Submission.received_at.desc(), Submission.id.desc())
        if descending
        else (Submission.received_at.asc(), Submission.id.asc())
    )
    rows = list(
        session.scalars(
            statement.order_by(*order)
            .limit(per_page + 1)
            .options(
                load_only(
                    Submission.id,
                    Submission.form_pk,
                    Submission.form_version_id,
                    Submission.instance_id,
                    Submission.instance_name,
                    Submission.submitter_id,
                    Submission.district_id,
                    Submission.received_at,
                    Submission.processing_state,
                    Submission.review_state,
                    Submission.encrypted,
                ),
                joinedload(Submission.form).load_only(Form.form_id, Form.title),
                joinedload(Submission.submitter).load_only(User.username, User.display_name),
                joinedload(Submission.district).load_only(District.name),
            )
        ).unique()
    )
    more = len(rows) > per_page
    rows = rows[:per_page]
    if backwards:
        rows.reverse()
    page = QueuePage(rows=rows, total=count_queue(session, actor, filters))
    if rows:
        if more or backwards:
            page.next_cursor = encode_cursor(rows[-1])
        if cursor and (more or not backwards):
            page.previous_cursor = encode_cursor(rows[0])
    return page


def describe_filter(session: Session, filters: QueueFilter) -> list[tuple[str, str]]:
    """The filter in words, for a confirmation: [(what, value)]."""
    words = [
        (
            _("State"),
            _("Waiting for review")
            if filters.state == "waiting"
            else (_("All") if filters.state == "all" else state_label(filters.state)),
        )
    ]
    if filters.form_id:
        title = session.scalar(select(Form.title).where(Form.form_id == filters.form_id))
        words.append((_("Form"), title or filters.form_id))
    if filters.district_id is not None:
        name = session.scalar(select(District.name).where(District.id == filters.district_id))
        words.append((_("District"), name or str(filters.district_id)))
    if filters.submitter_id is not None:
        person = session.get(User, filters.submitter_id)
        words.append((_("Enumerator"), person.display_name if person else _("unknown")))
    if filters.since:
        words.append((_("From"), filters.since.isoformat()))
    if filters.until:
        words.append((_("Until"), filters.until.isoformat()))
    return words


def approvable_filter(filters: QueueFilter) -> QueueFilter:
    """The same filter narrowed to what bulk approval acts on: waiting submissions."""
    state = filters.state if filters.state in WAITING else "waiting"
    return replace(filters, state=state, after=None, before=None)


def _approvable(
    session: Session, actor: User, filters: QueueFilter, cutoff: dt.datetime | None, *columns: Any
) -> Select[Any]:
    statement = _filtered(session, actor, approvable_filter(filters), *columns).where(
        Submission.processing_state == "processed"
    )
    if cutoff is not None:
        statement = statement.where(Submission.received_at <= cutoff)
    return statement


def count_approvable(
    session: Session, actor: User, filters: QueueFilter, cutoff: dt.datetime | None = None
) -> int:
    require(actor, "submissions.review")
    return session.scalar(_approvable(session, actor, filters, cutoff, func.count())) or 0


@dataclass
class BulkResult:
    approved: int = 0
    skipped: int = 0
    registry_changes: int = 0
    reasons: list[str] = field(default_factory=list)


def bulk_approve(
    session: Session,
    actor: User,
    filters: QueueFilter,
    *,
    cutoff: dt.datetime | None = None,
    limit: int = BULK_LIMIT,
) -> BulkResult:
    """Approve the processed, waiting submissions the filter selects (oldest first, at
    most `limit`), received no later than `cutoff` — the moment the person confirmed, so
    what arrived after is not approved unseen. Each one is approved on its own: one that
    someone else decided meanwhile is skipped and counted."""
    require(actor, "submissions.review")
    ids = list(
        session.scalars(
            _approvable(session, actor, filters, cutoff, Submission.id)
            .order_by(Submission.received_at, Submission.id)
            .limit(max(1, min(limit, BULK_LIMIT)))
        )
    )
    result = BulkResult()
    for submission_id in ids:
        submission = session.get(Submission, submission_id)
        if submission is None:
            continue
        try:
            with session.begin_nested():
                decision = set_review_state(
                    session, actor, submission, "approved", expected_version=None, bulk=True
                )
        except Conflict as refused:
            result.skipped += 1
            if len(result.reasons) < 20:
                result.reasons.append(f"{submission.instance_id}: {refused.message}")
            continue
        result.approved += 1
        result.registry_changes += decision.registry_changes
    audit(
        session,
        actor,
        "review.bulk_approve",
        None,
        approved=result.approved,
        skipped=result.skipped,
        filters={k: str(v) for k, v in approvable_filter(filters).query_args().items()},
    )
    return result


# ---------------------------------------------------------------- one submission


@dataclass
class SubmissionReview:
    """Everything the submission page shows, read in one place."""

    submission: Submission
    definition: FormDefinition
    version: int
    transitions: list[ReviewTransition]
    comments: list[SubmissionComment]
    edits: list[SubmissionEdit]
    pending_changes: list[PendingChange]
    created_entities: list[Entity]
    candidates: list[MatchCandidate]
    hidden_candidates: int
    conflicts: list[EntityConflict]

    @property
    def can_decide(self) -> bool:
        return self.submission.review_state not in FINAL

    def data_version(self, number: int | None) -> SubmissionEdit | None:
        return next((edit for edit in self.edits if edit.version == number), None)


def review_of(session: Session, actor: User, submission: Submission) -> SubmissionReview:
    transitions = list(
        session.scalars(
            select(ReviewTransition)
            .where(ReviewTransition.submission_id == submission.id)
            .order_by(ReviewTransition.seq)
        )
    )
    created = list(
        session.scalars(
            select(Entity)
            .where(Entity.created_by_submission_id == submission.id)
            .order_by(Entity.list_name.desc(), Entity.created_at)
        )
    )
    candidates: list[MatchCandidate] = []
    hidden = 0
    if created:
        ids = [entity.id for entity in created]
        for candidate in session.scalars(
            select(MatchCandidate)
            .where(or_(MatchCandidate.entity_id.in_(ids), MatchCandidate.candidate_id.in_(ids)))
            .order_by(MatchCandidate.weight.desc())
        ):
            if entity_visible(actor, candidate.entity) and entity_visible(
                actor, candidate.candidate
            ):
                candidates.append(candidate)
            else:
                hidden += 1
    conflicts = list(
        session.scalars(
            select(EntityConflict)
            .where(EntityConflict.submission_id == submission.id)
            .order_by(EntityConflict.id)
        )
    )
    return SubmissionReview(
        submission=submission,
        definition=catalog.definition_of(submission.form_version),
        version=transitions[-1].seq if transitions else 0,
        transitions=transitions,
        comments=comments_of(session, submission),
        edits=edits_of(session, submission),
        pending_changes=registry.pending_changes(session, submission),
        created_entities=created,
        candidates=candidates,
        hidden_candidates=hidden,
        conflicts=conflicts,
    )


@dataclass
class ActivityItem:
    at: dt.datetime
    who: str
    kind: str  # received | processed | state | edit | comment
    state: str | None = None
    text: str = ""
    changes: dict[str, Any] = field(default_factory=dict)
    version: int | None = None


def activity(review: SubmissionReview) -> list[ActivityItem]:
    """The submission's story, newest first: receipt, decisions, edits, comments."""
    submission = review.submission
    submitter = submission.submitter.username if submission.submitter else ""
    items = [ActivityItem(as_utc(submission.received_at), submitter, "received")]
    said_with = {c.transition_id: c for c in review.comments if c.transition_id is not None}
    for step in review.transitions:
        if step.to_state == "edited":
            continue  # shown with its edit
        comment = said_with.get(step.id)
        items.append(
            ActivityItem(
                as_utc(step.at),
                step.actor_name,
                "state",
                step.to_state,
                comment.body if comment else "",
            )
        )
    for edit in review.edits:
        if edit.version > 1:
            items.append(
                ActivityItem(
                    as_utc(edit.at),
                    edit.editor_name,
                    "edit",
                    changes=edit.changed_fields,
                    version=edit.version,
                )
            )
    for comment in review.comments:
        if comment.transition_id is None:
            items.append(
                ActivityItem(as_utc(comment.at), comment.author_name, "comment", None, comment.body)
            )
    items.sort(key=lambda item: item.at, reverse=True)
    return items


# ------------------------------------------------------------------ the dashboard


@dataclass
class Dashboard:
    by_state: dict[str, int]
    by_district: list[dict[str, Any]]
    by_enumerator: list[dict[str, Any]]
    per_day: list[tuple[dt.date, int]]
    oldest_waiting: Submission | None
    most_rejected: list[dict[str, Any]]
    open_candidates: int
    open_conflicts: int

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    @property
    def waiting(self) -> int:
        return sum(self.by_state.get(state, 0) for state in WAITING)


def dashboard(session: Session, actor: User, *, days: int = 30) -> Dashboard:
    """Counts for a supervisor's districts (everything for an administrator)."""
    everything = QueueFilter(state="all")

    # One pass over the (index-covered) rows, counted by district, enumerator and state.
    statement = _filtered(
        session,
        actor,
        everything,
        Submission.district_id,
        Submission.submitter_id,
        Submission.review_state,
        func.count(),
    ).group_by(Submission.district_id, Submission.submitter_id, Submission.review_state)
    by_state = {state: 0 for state in REVIEW_STATES}
    by_district: dict[int | None, dict[str, int]] = {}
    by_enumerator: dict[uuid.UUID | None, dict[str, int]] = {}
    for district_id, submitter_id, state, number in session.execute(statement):
        by_state[state] = by_state.get(state, 0) + number
        counts = by_district.setdefault(district_id, {})
        counts[state] = counts.get(state, 0) + number
        counts = by_enumerator.setdefault(submitter_id, {})
        counts[state] = counts.get(state, 0) + number
    district_names = dict(
        session.execute(
            select(District.id, District.name).where(
                District.id.in_([d for d in by_district if d is not None])
            )
        ).all()
    )
    people = {
        user.id: user
        for user in session.scalars(
            select(User).where(User.id.in_([u for u in by_enumerator if u is not None]))
        )
    }

    def row(key: Any, name: str, counts: dict[str, int]) -> dict[str, Any]:
        return {"id": key, "name": name, "counts": counts, "total": sum(counts.values())}

    districts = sorted(
        (
            row(key, district_names.get(key, _("no district")) if key else _("no district"), c)
            for key, c in by_district.items()
        ),
        key=lambda r: (-r["total"], r["name"]),
    )
    enumerators = sorted(
        (
            row(
                key,
                people[key].display_name if key in people else _("unknown"),
                counts,
            )
            | {"username": people[key].username if key in people else ""}
            for key, counts in by_enumerator.items()
        ),
        key=lambda r: (-r["total"], r["name"]),
    )
    most_rejected = sorted(
        (
            e | {"rejected": e["counts"].get("rejected", 0)}
            for e in enumerators
            if e["counts"].get("rejected", 0)
        ),
        key=lambda r: (-r["rejected"], -r["rejected"] / r["total"], r["name"]),
    )[:5]

    today = utcnow().date()
    first_day = today - dt.timedelta(days=days - 1)
    day = func.date(Submission.received_at)
    statement = _filtered(session, actor, everything, day, func.count()).where(
        Submission.received_at >= _midnight(first_day)
    )
    counted = {
        _as_date(value): number for value, number in session.execute(statement.group_by(day))
    }
    per_day = [
        (first_day + dt.timedelta(days=n), counted.get(first_day + dt.timedelta(days=n), 0))
        for n in range(days)
    ]
    oldest = session.scalar(
        _filtered(session, actor, QueueFilter(state="waiting"))
        .order_by(Submission.received_at, Submission.id)
        .limit(1)
    )
    return Dashboard(
        by_state=by_state,
        by_district=districts,
        by_enumerator=enumerators[:15],
        per_day=per_day,
        oldest_waiting=oldest,
        most_rejected=most_rejected,
        open_candidates=_count_open(session, actor, MatchCandidate),
        open_conflicts=_count_open(session, actor, EntityConflict),
    )


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _count_open(session: Session, actor: User, model: Any) -> int:
    if not can(actor, "registry.decide"):
        return 0
    if model is MatchCandidate:
        statement = scope_to_districts(
            select(func.count(MatchCandidate.id)).where(MatchCandidate.state == "open"),
            MatchCandidate.district_id,
            actor,
        )
    else:
        statement = scope_to_districts(
            select(func.count(EntityConflict.id))
            .join(EntityConflict.entity)
            .where(EntityConflict.state == "open"),
            Entity.district_id,
            actor,
        )
    return session.scalar(statement) or 0


# -------------------------------------------------------- choices for the filters


def enumerators_for(session: Session, actor: User) -> list[User]:
    """Enumerators working in the districts the actor may see (for the queue's filter)."""
    require(actor, "submissions.read")
    statement = select(User).where(User.role == "enumerator")
    allowed = visible_district_ids(actor)
    if allowed is not None:
        statement = statement.where(
            User.id.in_(
                select(user_district.c.user_id).where(
                    user_district.c.district_id.in_(sorted(allowed) or [-1])
                )
            )
        )
    return list(session.scalars(statement.order_by(User.display_name)))


def districts_for(session: Session, actor: User) -> list[District]:
    allowed = visible_district_ids(actor)
    statement = select(District).order_by(District.name)
    if allowed is not None:
        statement = statement.where(District.id.in_(sorted(allowed) or [-1]))
    return list(session.scalars(statement))


def forms_for(session: Session, actor: User) -> list[Form]:
    return catalog.list_forms(session, actor)


# ------------------------------------------------------------ choices from files

MAX_CHOICE_ROWS = 20_000


def attached_choices(
    store: BlobStore, version: FormVersion
) -> Callable[[str], dict[str, dict[str, str]]]:
    """Look up choice labels in the CSV files attached to a form version (for
    select_one_from_file): {file: {choice name: {language: label}}}, read once each."""
    read: dict[str, dict[str, dict[str, str]]] = {}
    by_name = {attachment.filename: attachment for attachment in version.attachments}

    def choices(filename: str) -> dict[str, dict[str, str]]:
        if filename not in read:
            read[filename] = {}
            attachment = by_name.get(filename)
            if attachment is not None and filename.lower().endswith(".csv"):
                try:
                    text = store.read(attachment.sha256).decode("utf-8-sig")
                except (OSError, UnicodeDecodeError, KeyError):
                    return read[filename]
                for position, row in enumerate(csv.DictReader(io.StringIO(text))):
                    if position >= MAX_CHOICE_ROWS:
                        break
                    name = (row.get("name") or "").strip()
                    if not name:
                        continue
                    labels = {}
                    for column, value in row.items():
                        if column == "label":
                            labels[DEFAULT_LANGUAGE] = value or ""
                        elif column and column.startswith("label::"):
                            labels[column.removeprefix("label::")] = value or ""
                    read[filename][name] = labels
        return read[filename]

    return choices


# --------------------------------------------------------- registry, for the pages


def entity_visible(actor: User, entity: Entity) -> bool:
    allowed = visible_district_ids(actor)
    return allowed is None or entity.district_id in allowed


def member_counts(session: Session, households: Sequence[Entity]) -> dict[uuid.UUID, int]:
    if not households:
        return {}
    rows = session.execute(
        select(Entity.household_id, func.count(Entity.id))
        .where(
            Entity.household_id.in_([household.id for household in households]),
            Entity.merged_into_id.is_(None),
            Entity.deleted.is_(False),
        )
        .group_by(Entity.household_id)
    )
    return {household_id: number for household_id, number in rows}


def merge_of_candidate(session: Session, candidate: MatchCandidate) -> Merge | None:
    """The merge a candidate was decided with (and not undone), if any."""
    return session.scalar(
        select(Merge)
        .where(Merge.candidate_id == candidate.id, Merge.undone_at.is_(None))
        .order_by(Merge.created_at.desc())
        .limit(1)
    )


def candidates_involving(
    session: Session, actor: User, entity: Entity, *, state: str | None = "open"
) -> list[MatchCandidate]:
    statement = select(MatchCandidate).where(
        or_(MatchCandidate.entity_id == entity.id, MatchCandidate.candidate_id == entity.id)
    )
    if state:
        statement = statement.where(MatchCandidate.state == state)
    return [
        candidate
        for candidate in session.scalars(statement.order_by(MatchCandidate.weight.desc()))
        if entity_visible(actor, candidate.entity) and entity_visible(actor, candidate.candidate)
    ]


def decided_candidates(session: Session, actor: User, *, limit: int = 50) -> list[MatchCandidate]:
    """Recently decided pairs, newest first, so a wrong decision can be found and undone."""
    require(actor, "registry.decide")
    statement = scope_to_districts(
        select(MatchCandidate).where(MatchCandidate.state.in_(["merged", "separate", "undone"])),
        MatchCandidate.district_id,
        actor,
    )
    return list(
        session.scalars(
            statement.order_by(MatchCandidate.decided_at.desc().nulls_last()).limit(limit)
        )
    )


def submission_for(session: Session, submission_id: uuid.UUID | None) -> Submission | None:
    if submission_id is None:
        return None
    return session.get(Submission, submission_id)
