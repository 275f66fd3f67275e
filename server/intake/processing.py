"""The processing worker: claim a queued submission with a lease, decrypt, parse against
its form version, store the typed data and hand it to the registry — all of it in one
transaction, so a worker killed at any instruction leaves the item untouched, and the
retry after the lease expires has nothing to undo.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session, configure_mappers, joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from forms.definition import FormDefinition, Question
from forms.instance import InstanceError, parse_instance, read_envelope
from server.accounts.models import District
from server.blobs import BlobStore
from server.catalog import service as catalog
from server.catalog.models import FormVersion
from server.db import Database, rowcount, utcnow
from server.intake.hooks import Processed, run_processed_hooks
from server.intake.models import Submission, SubmissionAttachment
from sync import crypto

log = logging.getLogger("diiwaan.worker")

# What processing reads of a submission's form version; the rest loads on first access.
_VERSION_COLUMNS = (
    FormVersion.id,
    FormVersion.form_pk,
    FormVersion.version,
    FormVersion.state,
    FormVersion.encryption,
    FormVersion.key_id,
    FormVersion.xform_md5,
)

# A submission whose processing raises is retried with backoff and failed at its
# MAX_ATTEMPTS-th attempt. One whose worker stops while processing it (killed, out of
# memory, a crash in a library) is retried at once when its lease runs out, and failed
# at its MAX_WORKER_STOPS-th: that limit stops a submission that kills every worker
# from doing so forever, but a worker also stops for reasons of its own (a deploy, a
# restart, a neighbour's memory), and each stop is charged to what it had in flight.
# At 5, a submission that did nothing wrong was failed in about one run in ten of the
# crash test, which stops a worker about once a second (tests/reliability). A poison
# submission costs 10 worker restarts, one a lease apart, before it is failed.
MAX_ATTEMPTS = 5
MAX_WORKER_STOPS = 10
LEASE_SECONDS = 120
# Submissions per transaction (`diiwaan worker --batch`): one commit, one WAL flush and
# a few statements for the lot. The lease must outlast a batch's work. 50 rather than 20:
# 10–25 % more submissions per second (bench/ingest.py), for a batch's rows — and, for
# forms applied on receipt, the registry's feed lock — held about 0.2 s (on receipt,
# with matching, a second or two) instead of 0.1 (docs/operators.md).
BATCH_SIZE = 50
# Form versions whose keys and definitions a starting worker opens ahead (`warm_up`).
_WARM_VERSIONS = 20


class PermanentFailure(Exception):
    """Retrying cannot help (wrong key, bad signature, unreadable XML)."""


@dataclass
class WorkerContext:
    database: Database
    store: BlobStore
    key_encryption_key: str
    worker_id: str = ""
    lease_seconds: int = LEASE_SECONDS
    _keys: catalog.OpenedKeys = field(init=False, repr=False)
    _definitions: dict[tuple[uuid.UUID, str], FormDefinition] = field(
        default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        self._keys = catalog.OpenedKeys(self.key_encryption_key)
        if not self.worker_id:
            self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def definition(self, version: FormVersion) -> FormDefinition:
        """The parsed definition of a form version. A version's XForm, and so its
        definition, never changes once uploaded (xform_md5 is part of the key all the
        same); its state does, and is always read from the row."""
        key = (version.id, version.xform_md5)
        definition = self._definitions.get(key)
        if definition is None:
            definition = catalog.definition_of(version)
            if len(self._definitions) >= 256:
                self._definitions.clear()
            self._definitions[key] = definition
        return definition

    def private_key(self, session: Session, key_id: uuid.UUID) -> RSAPrivateKey:
        return self._keys.get(session, key_id)


def backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(3600, 30 * 2 ** max(0, attempts - 1)))


def claim(session: Session, worker_id: str, lease_seconds: int) -> uuid.UUID | None:
    """Lease the next ready submission (SKIP LOCKED on PostgreSQL: many workers never
    take the same row; SQLite serialises writers, which is the single-worker mode)."""
    leased = claim_batch(session, worker_id, lease_seconds, 1)
    return leased[0] if leased else None


def claim_batch(
    session: Session, worker_id: str, lease_seconds: int, limit: int
) -> list[uuid.UUID]:
    """Lease up to `limit` ready submissions in one statement each way. Only first
    attempts are leased together: a submission being retried is leased alone, so one
    that kills its worker (out of memory, a crash in a library) uses up only its own
    attempts, never those of the submissions that shared its batch."""
    now = utcnow()
    while True:
        candidates = session.execute(
            select(Submission.id, Submission.attempts)
            .where(
                or_(
                    (Submission.processing_state == "queued") & (Submission.next_attempt_at <= now),
                    (Submission.processing_state == "processing") & (Submission.lease_until < now),
                )
            )
            .order_by(Submission.next_attempt_at, Submission.received_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not candidates:
            return []
        exhausted = [c.id for c in candidates if c.attempts >= MAX_WORKER_STOPS]
        if not exhausted:
            break
        # Failures that raise are counted by _mark_failed; a submission whose every
        # attempt ended with the worker gone (killed, out of memory) would otherwise be
        # retried forever, taking a worker down each time.
        for submission_id, attempts in candidates:
            if attempts < MAX_WORKER_STOPS:
                continue
            session.execute(
                update(Submission)
                .where(Submission.id == submission_id)
                .values(
                    processing_state="failed",
                    lease_until=None,
                    last_error=f"gave up after {attempts} attempts: the worker "
                    "stopped (killed or crashed) while processing it",
                )
            )
    if candidates[0].attempts > 0:
        leased = [candidates[0].id]
    else:
        leased = [c.id for c in candidates if c.attempts == 0]
    session.execute(
        update(Submission)
        .where(Submission.id.in_(leased))
        .values(
            processing_state="processing",
            lease_until=now + dt.timedelta(seconds=lease_seconds),
            leased_by=worker_id,
            attempts=Submission.attempts + 1,
            # Should its worker die, it queues behind the submissions leased before it:
            # retries take turns, so a run of crashes is spread over what was in flight
            # instead of being charged to the oldest submission every time until it
            # gives up.
            next_attempt_at=now,
        )
    )
    return leased


def _district_from_answers(
    session: Session, definition: FormDefinition, data: dict[str, Any]
) -> int | None:
    """A question named `district` answered with a district code places the submission."""
    question = next((q for q in definition.iter_questions() if q.name == "district"), None)
    if question is None:
        return None
    value = _value_at(data, question)
    if not isinstance(value, str) or not value:
        return None
    return session.scalar(select(District.id).where(District.code == value))


def _value_at(data: dict[str, Any], question: Question) -> Any:
    current: Any = data
    for name in question.path.strip("/").split("/"):
        if not isinstance(current, dict):
            return None
        current = current.get(name)
    return current


def decrypt(
    session: Session, context: WorkerContext, submission: Submission
) -> tuple[bytes, dict[str, bytes]]:
    """The plaintext XML and media of an encrypted submission, checking its signature."""
    return _decrypt_with(_decryption_inputs(session, context, submission))


def _decryption_inputs(
    session: Session, context: WorkerContext, submission: Submission
) -> dict[str, Any]:
    """What decrypting `submission` takes — its manifest's fields, its files, the private
    key — read with the session and the blob store (`_decrypt_with` needs neither)."""
    envelope = read_envelope(context.store.read(submission.xml_sha256))
    key_id = submission.form_version.key_id
    if key_id is None:
        raise PermanentFailure("the form version has no server-managed key")
    files = []
    for attachment in submission.attachments:
        if attachment.sha256 is None:
            raise PermanentFailure(f"encrypted file {attachment.name} never arrived")
        files.append((attachment.name, context.store.read(attachment.sha256)))
    return {
        "form_id": envelope.form_id,
        "form_version": envelope.version,
        "instance_id": envelope.instance_id,
        "base64_encrypted_key": envelope.base64_encrypted_key or "",
        "base64_signature": envelope.base64_encrypted_element_signature,
        "encrypted_files": files,
        "encrypted_xml_file": envelope.encrypted_xml_file or "",
        "private_key": context.private_key(session, key_id),
    }


def _decrypt_with(inputs: dict[str, Any]) -> tuple[bytes, dict[str, bytes]]:
    try:
        plain = crypto.decrypt_submission(**inputs)
    except crypto.CryptoError as error:
        raise PermanentFailure(f"{type(error).__name__}: {error}") from None
    if inputs["base64_signature"] is None:
        raise PermanentFailure("the encrypted submission carries no element signature")
    return plain.xml, dict(plain.media)


# A batch's encrypted submissions are decrypted in a thread a little ahead of the one
# being parsed: `cryptography` releases the GIL for its RSA and AES work (the two RSA
# private-key operations are about a third of an item's CPU), so decrypting the next
# submissions overlaps parsing this one, on another core. One thread keeps ahead of the
# parsing; a second, measured on two cores, only added lock contention. At most
# `_DECRYPT_AHEAD` decrypted submissions wait in memory, whatever their files' size.
_DECRYPT_AHEAD = 4
# (A pool starts its threads on first use, so a process that never decrypts has none.)
_decrypter = ThreadPoolExecutor(1, thread_name_prefix="worker-decrypt")


def _server_decrypts(version: FormVersion) -> bool:
    """Whether the server holds the key of `version`'s encrypted submissions (managed
    encryption) rather than the form's owners (self-managed: kept encrypted)."""
    return version.encryption != "self-managed"


class _Decryptions:
    """The decrypted contents of a batch's submissions that need decrypting, each taken
    once and in the batch's order (`take`), each started up to `_DECRYPT_AHEAD - 1`
    submissions before it is taken. What decrypting a submission raises is raised when it
    is taken, so it fails that submission only."""

    def __init__(
        self, session: Session, context: WorkerContext, submissions: list[Submission]
    ) -> None:
        self._session = session
        self._context = context
        self._waiting = deque(
            s for s in submissions if s.encrypted and _server_decrypts(s.form_version)
        )
        self._started: dict[uuid.UUID, Future[tuple[bytes, dict[str, bytes]]]] = {}

    def take(self, submission: Submission) -> tuple[bytes, dict[str, bytes]]:
        while self._waiting and len(self._started) < _DECRYPT_AHEAD:
            self._start(self._waiting.popleft())
        return self._started.pop(submission.id).result()

    def _start(self, submission: Submission) -> None:
        future: Future[tuple[bytes, dict[str, bytes]]]
        try:
            inputs = _decryption_inputs(self._session, self._context, submission)
        except Exception as error:  # noqa: BLE001 - raised again when the submission is taken
            future = Future()
            future.set_exception(error)
        else:
            future = _decrypter.submit(_decrypt_with, inputs)
        self._started[submission.id] = future


def _load_leased(
    session: Session, context: WorkerContext, submission_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Submission]:
    """The submissions among `submission_ids` still leased to this worker, locked, with
    what processing reads: one round trip for a batch, and one for its attachments."""
    submissions = session.scalars(
        select(Submission)
        .where(
            Submission.id.in_(submission_ids),
            Submission.processing_state == "processing",
            Submission.leased_by == context.worker_id,
        )
        .options(
            selectinload(Submission.attachments),
            # In the same round trip: the form (the registry hook reads its mode) and the
            # version's small columns, not the XForm and its definition (tens of KB each,
            # decoded every time): the parsed definition is kept per worker process.
            joinedload(Submission.form),
            joinedload(Submission.form_version).load_only(*_VERSION_COLUMNS),
        )
        # Only the submissions' rows: the form and version rows stay unlocked, so workers
        # processing submissions of one form do not queue on them.
        .with_for_update(of=Submission)
    ).all()
    return {submission.id: submission for submission in submissions}


def process_one(session: Session, context: WorkerContext, submission_id: uuid.UUID) -> None:
    """Do the work for one leased submission; the caller commits or rolls back."""
    submission = _load_leased(session, context, [submission_id]).get(submission_id)
    if submission is None:
        _log_lost_lease(context, submission_id)
        return
    _write_results(session, [_prepare(session, context, submission)])


def _log_lost_lease(context: WorkerContext, submission_id: uuid.UUID) -> None:
    log.info("submission %s is no longer leased to %s", submission_id, context.worker_id)


# Built once: building and hashing a statement costs as much CPU as running it. The
# columns SET are those of the parameters given.
_UPDATE_BY_ID = {
    model: update(model).where(model.id == bindparam("row_id"))
    for model in (Submission, SubmissionAttachment)
}


@dataclass
class _Result:
    """What processing made of one submission, not yet written: the worker works out a
    whole batch first, then writes it in a few statements."""

    submission: Submission
    values: dict[str, Any]  # the submission's columns
    # Decrypted media: (attachment, plain name, sha256 of the plaintext). Only the digest
    # is kept; the file stays encrypted in the store (`server.intake.files`).
    plain_files: list[tuple[SubmissionAttachment, str, str]] = field(default_factory=list)
    processed: Processed | None = None  # what the hooks get; None when nothing was read


def _prepare(
    session: Session,
    context: WorkerContext,
    submission: Submission,
    decryptions: _Decryptions | None = None,
) -> _Result:
    """Decrypt (or take from `decryptions`) and parse one loaded, locked, leased
    submission, writing nothing to the database and nothing to the blob store: decrypted
    media are verified (the element signature covers them) and their digests kept, but
    they are not stored (`server.intake.files` decrypts them again when they are read)."""
    version = submission.form_version
    if submission.encrypted and not _server_decrypts(version):
        return _Result(submission, {"processing_state": "encrypted", "lease_until": None})
    result = _Result(submission, {})
    if submission.encrypted:
        if decryptions is not None:
            xml, media = decryptions.take(submission)
        else:
            xml, media = decrypt(session, context, submission)
        for attachment in submission.attachments:
            plain_name = attachment.name.removesuffix(".enc")
            if plain_name in media:
                digest = hashlib.sha256(media[plain_name]).hexdigest()
                result.plain_files.append((attachment, plain_name, digest))
    else:
        xml = context.store.read(submission.xml_sha256)
    definition = context.definition(version)
    try:
        parsed = parse_instance(xml, definition)
    except InstanceError as error:
        raise PermanentFailure(f"the submission XML cannot be read: {error}") from None
    instance_name = submission.instance_name
    if instance_name is None and parsed.envelope.instance_name:
        # An encrypted manifest carries no instanceName; the decrypted instance does.
        instance_name = parsed.envelope.instance_name[:500]
    plain_names = {id(a): name for a, name, _digest in result.plain_files}
    received = {
        plain_names.get(id(a), a.plain_name or a.name) for a in submission.attachments if a.sha256
    }
    missing = [name for name in parsed.attachments if name not in received]
    district_id = submission.district_id
    if district_id is None:
        district_id = _district_from_answers(session, definition, parsed.data)
    result.values = {
        "data": parsed.data,
        "instance_name": instance_name,
        "parse_problems": parsed.problems
        + [f"attachment {name} was referenced but never received" for name in missing],
        "district_id": district_id,
        "processing_state": "processed",
        "processed_at": utcnow(),
        "lease_until": None,
        "last_error": None,
    }
    result.processed = Processed(submission, parsed, definition)
    return result


def _write_results(session: Session, results: list[_Result]) -> None:
    """Write what processing made of `results` — one executemany per table — then hand
    them to the hooks, which see their submissions already processed. The columns are
    written with plain UPDATEs and set on the ORM objects as already written (not as
    changes to flush): the unit of work costs more CPU than the rest of an item's
    statements together. A hook's own changes to the objects are still flushed as usual.
    If the caller's savepoint rolls back, it expires what the session holds, so that
    nothing written here is believed."""
    plain_files = [
        (attachment, {"plain_sha256": digest, "plain_name": name})
        for result in results
        for attachment, name, digest in result.plain_files
    ]
    _update_rows(session, SubmissionAttachment, plain_files)
    _update_rows(session, Submission, [(r.submission, r.values) for r in results])
    run_processed_hooks(session, [r.processed for r in results if r.processed is not None])
    session.flush()


def _update_rows(
    session: Session,
    model: type[Submission] | type[SubmissionAttachment],
    rows: list[tuple[Any, dict[str, Any]]],
) -> None:
    """One executemany per set of columns (a self-managed submission sets fewer)."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row, values in rows:
        by_columns.setdefault(tuple(values), []).append({"row_id": row.id, **values})
        for key, value in values.items():
            set_committed_value(row, key, value)
    for parameters in by_columns.values():
        session.connection().execute(_UPDATE_BY_ID[model], parameters)


def _record_failure(
    context: WorkerContext, submission_id: uuid.UUID, reason: str, permanent: bool
) -> None:
    with context.database.job_session() as session:
        _mark_failed(session, context, submission_id, reason, permanent)


def _mark_failed(
    session: Session,
    context: WorkerContext,
    submission_id: uuid.UUID,
    reason: str,
    permanent: bool,
) -> None:
    submission = session.get(Submission, submission_id)
    if submission is None or submission.leased_by != context.worker_id:
        return
    submission.last_error = reason[:4000]
    submission.lease_until = None
    if permanent or submission.attempts >= MAX_ATTEMPTS:
        submission.processing_state = "failed"
    else:
        submission.processing_state = "queued"
        submission.next_attempt_at = utcnow() + backoff(submission.attempts)


def _failure(submission_id: uuid.UUID, error: Exception) -> tuple[str, bool]:
    """Log why processing a submission failed; (the reason kept for admins, permanent)."""
    if isinstance(error, PermanentFailure):
        log.warning("submission %s failed: %s", submission_id, error)
        return str(error), True
    log.exception("submission %s failed, will retry", submission_id)  # with backoff
    return f"{type(error).__name__}: {error}", False


def _work(context: WorkerContext, submission_id: uuid.UUID) -> None:
    """Process one leased submission in a transaction of its own; a failure rolls all of
    it back and is recorded in another."""
    try:
        with context.database.job_session() as session:
            process_one(session, context, submission_id)
    except Exception as error:
        _record_failure(context, submission_id, *_failure(submission_id, error))


def _work_batch(
    context: WorkerContext, claimed: list[uuid.UUID], *, batch: int
) -> tuple[int, list[uuid.UUID]]:
    """Process the leased `claimed` (or lease up to `batch` first) in one transaction,
    and lease the next batch in that same transaction: one commit — one WAL flush — for
    the lot instead of one each. Each submission is decrypted and parsed first, then
    what they all became is written in a few statements (`_write_results`). A submission
    that cannot be processed is recorded as failed in the batch's transaction; the
    others keep their results. Should writing the batch fail (a hook raises for one
    submission), it is rolled back to its savepoint and written again one submission at
    a time, each in a savepoint of its own, so only the one at fault fails. A worker
    killed mid-batch commits none of it, and every submission of the batch is retried,
    alone (see `claim_batch`). If the transaction itself fails (the connection drops,
    the commit fails), each submission is processed again on its own. Returns (items
    handled, next leased)."""
    leased = claimed
    if not leased:
        with context.database.job_session() as session:
            leased = claim_batch(session, context.worker_id, context.lease_seconds, batch)
        if not leased:
            return 0, []
    if len(leased) == 1:  # a retry, or the queue's last item: the next call leases a batch
        _work(context, leased[0])
        return 1, []
    try:
        with context.database.job_session() as session:
            submissions = _load_leased(session, context, leased)
            decryptions = _Decryptions(
                session, context, [submissions[i] for i in leased if i in submissions]
            )
            results, failures = [], []
            for submission_id in leased:
                submission = submissions.get(submission_id)
                if submission is None:
                    _log_lost_lease(context, submission_id)
                    continue
                try:
                    results.append(_prepare(session, context, submission, decryptions))
                except Exception as error:
                    failures.append((submission_id, *_failure(submission_id, error)))
            _write_batch(session, context, results)
            for submission_id, reason, permanent in failures:
                _mark_failed(session, context, submission_id, reason, permanent)
            next_leased = claim_batch(session, context.worker_id, context.lease_seconds, batch)
    except Exception:
        log.exception("a batch of %d submissions failed as a whole; one at a time", len(leased))
        for submission_id in leased:
            _work(context, submission_id)
        return len(leased), []
    return len(leased), next_leased


def _write_batch(session: Session, context: WorkerContext, results: list[_Result]) -> None:
    """Write a batch's results together; if that fails, one at a time."""
    try:
        with session.begin_nested():
            _write_results(session, results)
        return
    except Exception:
        # The savepoint's writes are gone; `_write_results` set them on the objects as
        # if committed, so reload whatever is read from here on.
        session.expire_all()
        log.info("writing a batch of %d failed; one submission at a time", len(results))
    for result in results:
        submission_id = result.submission.id
        try:
            with session.begin_nested():
                _write_results(session, [result])
        except Exception as error:
            session.expire_all()
            _mark_failed(session, context, submission_id, *_failure(submission_id, error))


def _give_back(context: WorkerContext, submission_ids: list[uuid.UUID]) -> None:
    """Return submissions leased ahead but not started (the worker is stopping) to the
    queue as they were, so they do not wait for their lease to expire."""
    if not submission_ids:
        return
    with context.database.job_session() as session:
        session.execute(
            update(Submission)
            .where(
                Submission.id.in_(submission_ids),
                Submission.processing_state == "processing",
                Submission.leased_by == context.worker_id,
            )
            .values(
                processing_state="queued",
                lease_until=None,
                leased_by=None,
                attempts=Submission.attempts - 1,
            )
        )


def run(
    context: WorkerContext,
    *,
    drain: bool = False,
    poll_seconds: float = 2.0,
    batch: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Process submissions, up to `batch` per transaction; with `drain`, stop when the
    queue is empty."""
    done = 0
    claimed: list[uuid.UUID] = []
    warm_up(context)
    try:
        while not should_stop():
            worked, claimed = _work_batch(context, claimed, batch=max(1, batch))
            if worked:
                done += worked
                if progress:
                    progress(done)
                continue
            if drain:
                break
            time.sleep(poll_seconds)
    finally:
        _give_back(context, claimed)
    return done


def warm_up(context: WorkerContext) -> None:
    """Before the first lease: open what processing the waiting submissions takes — the
    ORM's mappers, their form versions' keys and definitions. On a fresh worker these
    took about 0.3 s of a first item that otherwise takes 0.04 s, inside its lease, so a
    worker stopped then (a deploy, a restart) was charged to that submission. A key or a
    definition that cannot be opened is left for processing, which fails the submission
    with the reason."""
    configure_mappers()
    waiting = (
        select(Submission.form_version_id)
        .where(Submission.processing_state.in_(["queued", "processing"]))
        .distinct()
    )
    with context.database.job_session() as session:
        versions = session.scalars(
            select(FormVersion).where(FormVersion.id.in_(waiting)).limit(_WARM_VERSIONS)
        ).all()
        for version in versions:
            try:
                context.definition(version)
                if version.key_id is not None and _server_decrypts(version):
                    context.private_key(session, version.key_id)
            except Exception:  # noqa: BLE001 - processing reports it, per submission
                log.info("form version %s could not be opened ahead", version.id, exc_info=True)


def requeue_expired_leases(database: Database) -> int:
    """Scheduler job: give items of dead workers back to the queue."""
    with database.job_session() as session:
        result = session.execute(
            update(Submission)
            .where(Submission.processing_state == "processing", Submission.lease_until < utcnow())
            .values(processing_state="queued", lease_until=None, leased_by=None)
        )
        return rowcount(result)


def reprocess(
    session: Session, *, failed_only: bool, submission_ids: list[uuid.UUID] | None = None
) -> int:
    """Put submissions back in the queue (after a fix, a new key, a registry change)."""
    statement = update(Submission).values(
        processing_state="queued",
        attempts=0,
        next_attempt_at=utcnow(),
        lease_until=None,
        leased_by=None,
        last_error=None,
    )
    if failed_only:
        statement = statement.where(Submission.processing_state == "failed")
    else:
        statement = statement.where(Submission.processing_state.in_(["failed", "processed"]))
    if submission_ids:
        statement = statement.where(Submission.id.in_(submission_ids))
    return rowcount(session.execute(statement))
