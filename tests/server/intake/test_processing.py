"""The worker: decrypt, parse into typed data, hand to the registry — and what happens
when any of that fails: reasons kept, transient errors retried with backoff, leases of
dead workers given back, administrators reprocessing."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
import uuid

import pytest
from sqlalchemy import event, select, update

from forms.instance import read_envelope
from server import jobs
from server.blobs import blob_store
from server.db import as_utc, db, utcnow
from server.intake import files, hooks, processing
from server.intake.models import Submission
from sync import crypto
from tests.factories import AdminFactory
from tests.server.intake.conftest import only_submission
from tests.support.submissions import (
    PHOTO,
    PHOTO_NAME,
    Attachment,
    encrypted_household,
)
from tests.support.xlsforms import (
    SELF_MANAGED_PUBLIC_KEY,
    MemberAnswers,
    household_instance_xml,
    minimal_form_xlsx,
)


def _temporary_hooks(on, registered_hooks):
    """Register hooks with `on` for one test; unregister them from `registered_hooks`."""
    registered = []

    def register(hook):
        registered.append(on(hook))
        return hook

    try:
        yield register
    finally:
        for hook in registered:
            registered_hooks.remove(hook)


@pytest.fixture
def temporary_hook():
    """`temporary_hook(fn)` registers an on_processed hook for this test only."""
    yield from _temporary_hooks(hooks.on_processed, hooks._processed_hooks)


@pytest.fixture
def temporary_batch_hook():
    """`temporary_batch_hook(fn)` registers an on_processed_batch hook for this test only."""
    yield from _temporary_hooks(hooks.on_processed_batch, hooks._batch_hooks)


def post_plain(device, **answers) -> str:
    xml = household_instance_xml(**answers)
    response = device.post(xml, [Attachment(PHOTO_NAME, PHOTO, "image/jpeg")])
    assert response.status_code == 201, response.data
    from forms.instance import read_envelope

    return read_envelope(xml).instance_id


def post_encrypted(device, public_key: str, *, tamper=None, **answers):
    submission = encrypted_household(public_key, **answers)
    files = submission.attachments
    if tamper is not None:
        files = tamper(files)
    response = device.post(submission.manifest, files)
    assert response.status_code == 201, response.data
    return submission


def starting_worker(settings, key_encryption_key: str) -> processing.WorkerContext:
    """A worker's context as `diiwaan worker` makes it, not yet running."""
    return processing.WorkerContext(
        database=db, store=blob_store(settings.data_dir), key_encryption_key=key_encryption_key
    )


def test_worker_drains_the_queue_into_typed_data(household, device, session, worker, store):
    members = [
        MemberAnswers("Xaliimo Cabdi Nuur", "female", "1979-01-30", "head", "no"),
        MemberAnswers(
            "Axmed Xaliimo Cabdi", "male", "2011-06-01", "child", "yes", ["seeing", "hearing"]
        ),
    ]
    plain_id = post_plain(device, members=members, monthly_income_usd="87.25")
    sealed_photo = b"a dwelling photo sent encrypted " * 64  # not the plain one's bytes
    encrypted = post_encrypted(device, household.key.public_key, hh_size=4, photo=sealed_photo)

    assert worker() == 2

    plain = only_submission(session, plain_id)
    assert (plain.processing_state, plain.attempts, plain.last_error) == ("processed", 1, None)
    assert plain.processed_at is not None and plain.lease_until is None
    data = plain.data
    assert data["hh_size"] == 2 and isinstance(data["hh_size"], int)
    assert data["monthly_income_usd"] == 87.25
    assert data["location"]["gps"] == {
        "latitude": 2.0469,
        "longitude": 45.3182,
        "altitude": 12.0,
        "accuracy": 4.5,
    }
    assert data["location"]["dwelling_photo"] == PHOTO_NAME
    assert [m["full_name"] for m in data["member"]] == [m.full_name for m in members]
    assert data["member"][1]["difficulties"] == ["seeing", "hearing"]
    assert data["member"][1]["date_of_birth"] == "2011-06-01"
    assert data["member"][0]["difficulties"] is None
    assert plain.parse_problems == []

    decrypted = only_submission(session, encrypted.instance_id)
    assert decrypted.processing_state == "processed"
    assert decrypted.data["hh_size"] == 4
    photo_attachment = decrypted.attachments[0]
    assert (photo_attachment.name, photo_attachment.plain_name) == (f"{PHOTO_NAME}.enc", PHOTO_NAME)
    # The photo was decrypted and verified, and only its digest kept: no plaintext copy.
    assert photo_attachment.plain_sha256 == hashlib.sha256(sealed_photo).hexdigest()
    assert not store.exists(photo_attachment.plain_sha256)
    stored = [path.read_bytes() for path in store.root.rglob("*") if path.is_file()]
    assert PHOTO in stored  # the plain submission's photo, as sent
    assert not any(sealed_photo[:64] in content for content in stored)
    assert decrypted.parse_problems == []
    # What the device sent stays as it was sent.
    assert store.read(decrypted.xml_sha256) == encrypted.manifest


def test_district_is_placed_from_the_answers_when_intake_could_not(
    client, household, session, worker, hodan
):
    from tests.server.intake.conftest import Device

    admin = AdminFactory()  # sees both of the form's districts: intake cannot choose
    instance_id = post_plain(Device(client, user=admin), district="hodan")
    assert only_submission(session, instance_id).district_id is None

    worker()
    assert only_submission(session, instance_id).district_id == hodan.id


def test_an_attachment_referenced_but_never_sent_is_recorded_as_a_problem(
    household, device, session, worker
):
    xml = household_instance_xml()
    assert device.post(xml).status_code == 201
    worker()
    (submission,) = session.scalars(select(Submission)).all()
    assert submission.processing_state == "processed"
    assert submission.parse_problems == [
        f"attachment {PHOTO_NAME} was referenced but never received"
    ]


def processed_without_its_photo(device, worker) -> tuple[bytes, str]:
    """A household posted without the photo it references, then processed; (XML, ID)."""
    xml = household_instance_xml()
    assert device.post(xml).status_code == 201
    worker()
    return xml, read_envelope(xml).instance_id


def send_the_photo(device, xml: bytes) -> int:
    return device.post(xml, [Attachment(PHOTO_NAME, PHOTO, "image/jpeg")]).status_code


def test_an_attachment_sent_after_processing_is_processed_again_with_it(
    household, device, session, worker, store
):
    xml, instance_id = processed_without_its_photo(device, worker)
    assert only_submission(session, instance_id).parse_problems

    assert send_the_photo(device, xml) == 201
    requeued = only_submission(session, instance_id)
    assert requeued.processing_state == "queued"

    assert worker() == 1
    session.expire_all()
    done = only_submission(session, instance_id)
    assert (done.processing_state, done.parse_problems) == ("processed", [])
    assert {a.name: store.read(a.sha256) for a in done.attachments} == {PHOTO_NAME: PHOTO}
    # The same files again: nothing new, nothing processed again.
    assert send_the_photo(device, xml) == 202
    assert worker() == 0


def test_a_file_sent_after_a_supervisor_decided_is_stored_but_not_processed_again(
    household, device, session, worker, store
):
    xml, instance_id = processed_without_its_photo(device, worker)
    session.execute(update(Submission).values(review_state="rejected"))
    session.flush()

    assert send_the_photo(device, xml) == 201

    kept = only_submission(session, instance_id)
    assert (kept.processing_state, kept.review_state) == ("processed", "rejected")
    assert {a.name: store.read(a.sha256) for a in kept.attachments} == {PHOTO_NAME: PHOTO}
    assert worker() == 0


def test_encrypted_with_another_key_fails_with_the_reason(household, device, session, worker):
    other_key = crypto.public_key_base64(crypto.generate_key_pair())
    submission = post_encrypted(device, other_key)

    assert worker() == 1

    failed = only_submission(session, submission.instance_id)
    assert failed.processing_state == "failed"
    assert failed.attempts == 1
    assert "WrongKeyError" in failed.last_error
    assert failed.data is None


def flip_first_byte(files: list[Attachment]) -> list[Attachment]:
    media, xml = files
    return [Attachment(media.name, bytes([media.content[0] ^ 0x01]) + media.content[1:]), xml]


def test_tampered_encrypted_file_fails_on_its_signature(household, device, session, worker):
    submission = post_encrypted(device, household.key.public_key, tamper=flip_first_byte)

    worker()

    failed = only_submission(session, submission.instance_id)
    assert failed.processing_state == "failed"
    assert "SignatureMismatchError" in failed.last_error
    assert failed.data is None
    assert all(a.plain_sha256 is None for a in failed.attachments)


def test_self_managed_form_is_kept_encrypted_for_offline_decryption(
    session, settings, server_key, device, worker, hodan
):
    from tests.server.intake.conftest import upload

    upload(
        session,
        settings,
        minimal_form_xlsx("self_keyed", "1", public_key=SELF_MANAGED_PUBLIC_KEY),
        [hodan],
        attachments=[],
    )
    xml = (
        b"<data id='self_keyed' version='1'><name>Ayaan</name>"
        b"<meta><instanceID>uuid:self-1</instanceID></meta></data>"
    )
    encrypted = crypto.encrypt_submission(
        xml=xml,
        media=[],
        instance_id="uuid:self-1",
        form_id="self_keyed",
        form_version="1",
        public_key=crypto.load_public_key(SELF_MANAGED_PUBLIC_KEY),
    )
    files = [Attachment(name, content) for name, content in encrypted.files]
    assert device.post(encrypted.manifest_xml, files).status_code == 201

    worker()
    kept = only_submission(session, "uuid:self-1")
    assert (kept.processing_state, kept.data, kept.last_error) == ("encrypted", None, None)


def test_transient_error_is_retried_with_backoff_and_applies_once(
    household, device, session, worker, temporary_hook
):
    calls = []

    def flaky_registry(hook_session, submission, parsed, definition):
        calls.append(submission.instance_id)
        submission.review_state = "has_issues"  # a write that must not survive a failure
        if len(calls) == 1:
            raise RuntimeError("registry briefly unavailable")

    temporary_hook(flaky_registry)
    instance_id = post_plain(device)

    before = utcnow()
    assert worker() == 1
    retrying = only_submission(session, instance_id)
    assert retrying.processing_state == "queued"
    assert retrying.attempts == 1
    assert retrying.last_error == "RuntimeError: registry briefly unavailable"
    assert retrying.data is None and retrying.review_state == "received"
    delay = as_utc(retrying.next_attempt_at) - before
    assert dt.timedelta(seconds=29) <= delay <= dt.timedelta(seconds=60)

    assert worker() == 0  # not due yet
    make_due(session, instance_id)
    assert worker() == 1

    done = only_submission(session, instance_id)
    assert (done.processing_state, done.attempts, done.last_error) == ("processed", 2, None)
    assert done.review_state == "has_issues"
    assert calls == [instance_id, instance_id]


def test_in_a_batch_a_failing_submission_rolls_back_alone(
    household, device, session, worker, temporary_hook
):
    """The worker processes a batch in one transaction, each submission in a savepoint:
    one that fails (here transiently, and one permanently) leaves no write behind and
    is recorded as failed; the others of the batch are processed and keep theirs."""
    first, flaky, last = (
        post_plain(device, head_first_name=name) for name in ("Abdi", "Cumar", "Xasan")
    )
    bad = post_encrypted(device, household.key.public_key, tamper=flip_first_byte)

    def registry(hook_session, submission, parsed, definition):
        submission.review_state = "has_issues"  # must not survive the failure
        if submission.instance_id == flaky:
            raise RuntimeError("registry briefly unavailable")

    temporary_hook(registry)
    assert worker() == 4
    rows = {i: only_submission(session, i) for i in (first, flaky, last, bad.instance_id)}
    assert {i: (r.processing_state, r.attempts) for i, r in rows.items()} == {
        first: ("processed", 1),
        flaky: ("queued", 1),
        last: ("processed", 1),
        bad.instance_id: ("failed", 1),
    }
    assert rows[first].review_state == rows[last].review_state == "has_issues"
    assert (rows[flaky].review_state, rows[flaky].data) == ("received", None)
    assert rows[flaky].last_error == "RuntimeError: registry briefly unavailable"
    assert "signature" in (rows[bad.instance_id].last_error or "").lower()


def test_in_a_batch_a_submission_failing_after_decryption_keeps_nothing_of_the_attempt(
    household, device, session, worker, temporary_hook
):
    """The worker writes a submission's outcome (data, state, decrypted attachments)
    before its hooks run; a hook that fails rolls all of it back, in the database and in
    what the batch's session believes, so the failure is recorded on the row as it was
    and the retry starts from there."""
    before = post_plain(device, head_first_name="Abdi")
    encrypted = post_encrypted(device, household.key.public_key, hh_size=4)
    after = post_plain(device, head_first_name="Xasan")
    failing = {encrypted.instance_id}

    def registry(hook_session, submission, parsed, definition):
        if submission.instance_id in failing:
            raise RuntimeError("registry briefly unavailable")

    temporary_hook(registry)
    assert worker() == 3
    assert [only_submission(session, i).processing_state for i in (before, after)] == [
        "processed",
        "processed",
    ]
    failed = only_submission(session, encrypted.instance_id)
    assert (failed.processing_state, failed.attempts, failed.last_error) == (
        "queued",
        1,
        "RuntimeError: registry briefly unavailable",
    )
    assert (failed.data, failed.processed_at, failed.lease_until, failed.parse_problems) == (
        None,
        None,
        None,
        [],
    )
    assert [(a.plain_name, a.plain_sha256) for a in failed.attachments] == [(None, None)] * 2

    failing.clear()
    make_due(session, encrypted.instance_id)
    session.commit()
    assert worker() == 1
    done = only_submission(session, encrypted.instance_id)
    assert (done.processing_state, done.attempts, done.data["hh_size"]) == ("processed", 2, 4)
    assert done.attachments[0].plain_name == PHOTO_NAME


def test_a_batch_is_written_in_one_statement_per_table_and_handed_on_at_once(
    household, device, session, worker, temporary_batch_hook
):
    """A batch's results are written together — one executemany UPDATE of the
    submissions, one of the decrypted files — and batch hooks get the whole batch in one
    call, each submission already marked processed."""
    plain = [post_plain(device, head_first_name=name) for name in ("Abdi", "Cumar")]
    encrypted = [post_encrypted(device, household.key.public_key, hh_size=n) for n in (3, 4)]
    calls = []

    def registry(hook_session, processed):
        states = hook_session.execute(
            select(Submission.instance_id, Submission.processing_state).where(
                Submission.id.in_([item.submission.id for item in processed])
            )
        ).all()
        calls.append(dict(states))

    temporary_batch_hook(registry)
    updates = []

    def count_updates(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith(("UPDATE submission ", "UPDATE submission_attachment ")):
            updates.append((statement.split()[1], executemany))

    assert db.engine is not None
    event.listen(db.engine, "before_cursor_execute", count_updates)
    try:
        assert worker() == 4
    finally:
        event.remove(db.engine, "before_cursor_execute", count_updates)
    instance_ids = [*plain, *(e.instance_id for e in encrypted)]
    assert calls == [dict.fromkeys(instance_ids, "processed")]
    # Besides leasing the batch (one UPDATE), one statement for each table.
    assert sorted(updates) == [
        ("submission", False),
        ("submission", True),
        ("submission_attachment", True),
    ]


def test_a_batch_hook_that_fails_fails_only_the_submission_at_fault(
    household, device, session, worker, temporary_batch_hook
):
    """When writing the batch fails, it is written again one submission at a time: the
    others keep their results, and only the one at fault is retried later."""
    first, flaky, last = (
        post_plain(device, head_first_name=name) for name in ("Abdi", "Cumar", "Xasan")
    )
    seen = []

    def registry(hook_session, processed):
        instance_ids = [item.submission.instance_id for item in processed]
        seen.append(instance_ids)
        for item in processed:
            item.submission.review_state = "has_issues"  # must not survive the failure
        if flaky in instance_ids:
            raise RuntimeError("registry briefly unavailable")

    temporary_batch_hook(registry)
    assert worker() == 3
    assert seen == [[first, flaky, last], [first], [flaky], [last]]
    rows = {i: only_submission(session, i) for i in (first, flaky, last)}
    assert {i: (r.processing_state, r.review_state) for i, r in rows.items()} == {
        first: ("processed", "has_issues"),
        flaky: ("queued", "received"),
        last: ("processed", "has_issues"),
    }
    assert (rows[flaky].data, rows[flaky].last_error) == (
        None,
        "RuntimeError: registry briefly unavailable",
    )


def test_a_batch_decrypted_ahead_fails_each_bad_submission_with_its_own_reason(
    household, device, session, worker
):
    """The batch's encrypted submissions are decrypted in a thread a few ahead of the one
    being parsed; each is still read with its own key and data, and one encrypted for
    another key or tampered with fails alone, with its own reason."""
    names = ["Abdi", "Cumar", "Xasan", "Faadumo", "Hodan", "Sahra", "Yusuf"]
    good = {
        name: post_encrypted(device, household.key.public_key, head_first_name=name)
        for name in names
    }
    other_key = crypto.public_key_base64(crypto.generate_key_pair())
    wrong_key = post_encrypted(device, other_key, head_first_name="Warsame")
    tampered = post_encrypted(
        device, household.key.public_key, tamper=flip_first_byte, head_first_name="Nuur"
    )

    assert worker() == len(names) + 2

    for name, submission in good.items():
        row = only_submission(session, submission.instance_id)
        assert row.processing_state == "processed", row.last_error
        assert row.data["head"]["head_first_name"] == name
        assert {a.plain_name for a in row.attachments if a.plain_sha256} == {PHOTO_NAME}
    failures = {
        s.instance_id: only_submission(session, s.instance_id) for s in (wrong_key, tampered)
    }
    assert {i: r.processing_state for i, r in failures.items()} == dict.fromkeys(failures, "failed")
    assert "WrongKeyError" in failures[wrong_key.instance_id].last_error
    assert "SignatureMismatchError" in failures[tampered.instance_id].last_error


def test_a_batch_is_decrypted_only_a_few_submissions_ahead(
    household, device, session, settings, monkeypatch
):
    """However large the batch (and its files), at most `_DECRYPT_AHEAD` submissions are
    decrypted and waiting in memory; each is taken in the batch's order."""
    posted = [
        post_encrypted(device, household.key.public_key, head_first_name=f"Abdi{number}")
        for number in range(processing._DECRYPT_AHEAD + 3)
    ]
    started = []
    real_decrypt_with = processing._decrypt_with

    def counted(inputs):
        started.append(inputs["instance_id"])
        return real_decrypt_with(inputs)

    monkeypatch.setattr(processing, "_decrypt_with", counted)
    context = starting_worker(settings, settings.key_encryption_key)
    submissions = [only_submission(session, s.instance_id) for s in posted]
    decryptions = processing._Decryptions(session, context, submissions)
    for number, submission in enumerate(submissions):
        xml, media = decryptions.take(submission)
        assert read_envelope(xml).instance_id == submission.instance_id
        assert set(media) == {PHOTO_NAME}
        assert len(decryptions._started) <= processing._DECRYPT_AHEAD - 1
        waiting_or_taken = min(number + processing._DECRYPT_AHEAD, len(submissions))
        assert len(decryptions._started) + number + 1 == waiting_or_taken
    processing._decrypter.submit(lambda: None).result(10)  # the thread is done
    assert sorted(started) == sorted(s.instance_id for s in posted)


def test_in_a_batch_a_submission_leased_away_meanwhile_is_left_alone(
    household, device, session, settings
):
    """The batch loads its submissions once, as leased to this worker: one that another
    worker has taken over since (its lease expired) is neither read nor written."""
    ours, taken = post_plain(device), post_plain(device)
    with db.job_session() as job_session:
        leased = processing.claim_batch(job_session, "slow-worker", 60, 20)
    assert len(leased) == 2
    taken_id = only_submission(session, taken).id
    session.execute(update(Submission).where(Submission.id == taken_id).values(leased_by="other"))
    session.commit()
    context = processing.WorkerContext(
        database=db,
        store=blob_store(settings.data_dir),
        key_encryption_key=settings.key_encryption_key,
        worker_id="slow-worker",
    )
    assert processing._work_batch(context, leased, batch=20)[0] == 2
    assert only_submission(session, ours).processing_state == "processed"
    left = only_submission(session, taken)
    assert (left.processing_state, left.leased_by, left.data) == ("processing", "other", None)


def test_backoff_doubles_and_gives_up_after_the_last_attempt(
    household, device, session, worker, temporary_hook
):
    def broken(*_):
        raise ConnectionError("registry down")

    temporary_hook(broken)
    instance_id = post_plain(device)
    for _attempt in range(processing.MAX_ATTEMPTS):
        make_due(session, instance_id)
        assert worker() == 1
    failed = only_submission(session, instance_id)
    assert (failed.processing_state, failed.attempts) == ("failed", processing.MAX_ATTEMPTS)
    assert failed.last_error == "ConnectionError: registry down"
    assert [processing.backoff(n).total_seconds() for n in (1, 2, 3, 8, 20)] == [
        30,
        60,
        120,
        3600,
        3600,
    ]


def make_due(session, instance_id: str) -> None:
    session.execute(
        update(Submission)
        .where(Submission.instance_id == instance_id)
        .values(next_attempt_at=utcnow() - dt.timedelta(seconds=1))
    )
    session.flush()


def test_reprocess_command_requeues_failed_submissions(app, household, device, session, worker):
    submission = post_encrypted(device, crypto.public_key_base64(crypto.generate_key_pair()))
    processed_id = post_plain(device)
    worker()
    assert only_submission(session, submission.instance_id).processing_state == "failed"
    runner = app.test_cli_runner()

    refused = runner.invoke(args=["submissions", "reprocess"])
    assert refused.exit_code == 2
    assert "--failed" in refused.output

    result = runner.invoke(args=["submissions", "reprocess", "--failed"])
    assert result.exit_code == 0, result.output
    assert "requeued 1 submission(s)" in result.output
    requeued = only_submission(session, submission.instance_id)
    assert (requeued.processing_state, requeued.attempts, requeued.last_error) == (
        "queued",
        0,
        None,
    )
    assert only_submission(session, processed_id).processing_state == "processed"

    by_id = runner.invoke(args=["submissions", "reprocess", str(requeued.id)])
    assert by_id.exit_code == 0 and "requeued 0" in by_id.output  # queued, not failed

    stats = runner.invoke(args=["submissions", "stats"])
    assert "processed" in stats.output and "queued" in stats.output


def test_expired_leases_are_given_back_and_live_ones_kept(household, device, session, app):
    dead_id, alive_id = post_plain(device), post_plain(device)
    with db.job_session() as job_session:
        dead = processing.claim(job_session, "dead-worker", lease_seconds=60)
        alive = processing.claim(job_session, "busy-worker", lease_seconds=60)
    assert {dead, alive} == {
        only_submission(session, dead_id).id,
        only_submission(session, alive_id).id,
    }
    session.execute(
        update(Submission)
        .where(Submission.id == dead)
        .values(lease_until=utcnow() - dt.timedelta(seconds=1))
    )
    session.flush()

    assert processing.requeue_expired_leases(db) == 1
    session.expire_all()
    given_back, kept = session.get(Submission, dead), session.get(Submission, alive)
    assert (given_back.processing_state, given_back.leased_by) == ("queued", None)
    assert (kept.processing_state, kept.leased_by) == ("processing", "busy-worker")


def test_a_worker_takes_over_an_expired_lease_without_the_scheduler(
    household, device, session, worker
):
    instance_id = post_plain(device)
    with db.job_session() as job_session:
        processing.claim(job_session, "killed-worker", lease_seconds=60)
    assert worker() == 0  # the lease still runs

    session.execute(update(Submission).values(lease_until=utcnow() - dt.timedelta(seconds=1)))
    session.flush()
    assert worker() == 1
    done = only_submission(session, instance_id)
    assert (done.processing_state, done.attempts) == ("processed", 2)


def test_submissions_whose_workers_died_are_retried_in_turn(household, device, session):
    first, second = post_plain(device), post_plain(device)
    with db.job_session() as job_session:
        leased = processing.claim_batch(job_session, "killed-worker", 60, limit=2)
    assert len(leased) == 2

    def worker_dies() -> None:
        session.execute(update(Submission).values(lease_until=utcnow() - dt.timedelta(seconds=1)))
        session.flush()

    def retried() -> uuid.UUID | None:
        with db.job_session() as job_session:
            return processing.claim(job_session, "next-worker", lease_seconds=60)

    worker_dies()
    oldest = retried()
    assert oldest == only_submission(session, first).id  # received first, retried first
    worker_dies()  # the retry's worker dies too: the other one's turn
    assert retried() == only_submission(session, second).id
    worker_dies()
    assert retried() == oldest
    session.expire_all()
    assert [only_submission(session, i).attempts for i in (first, second)] == [3, 2]


def test_a_submission_that_keeps_killing_workers_is_failed_not_retried_forever(
    household, device, session, worker
):
    instance_id = post_plain(device)
    session.execute(
        update(Submission).values(
            processing_state="processing",
            leased_by="oom-killed",
            attempts=processing.MAX_WORKER_STOPS,
            lease_until=utcnow() - dt.timedelta(seconds=1),
        )
    )
    session.flush()

    assert worker() == 0
    failed = only_submission(session, instance_id)
    assert failed.processing_state == "failed"
    assert "stopped" in failed.last_error
    assert f"after {processing.MAX_WORKER_STOPS} attempts" in failed.last_error


def test_a_starting_worker_opens_what_the_waiting_submissions_need_before_leasing(
    household, device, session, settings
):
    encrypted = post_encrypted(device, household.key.public_key)
    context = starting_worker(settings, settings.key_encryption_key)

    processing.warm_up(context)

    # Opened ahead, so the first lease does not carry the worker's start-up ...
    assert list(context._keys.opened) == [household.key.id]
    assert [version_id for version_id, _md5 in context._definitions] == [household.id]
    # ... and nothing was leased or charged an attempt meanwhile.
    waiting = only_submission(session, encrypted.instance_id)
    assert (waiting.processing_state, waiting.attempts, waiting.leased_by) == ("queued", 0, None)


def test_a_key_that_cannot_be_opened_ahead_is_reported_when_processing(
    household, device, session, settings
):
    encrypted = post_encrypted(device, household.key.public_key)
    context = starting_worker(settings, "not the key it was sealed with, 32 bytes+")

    processing.warm_up(context)  # does not stop the worker
    assert context._keys.opened == {}

    assert processing.run(context, drain=True) == 1
    # Processing meets the error and records it; a wrong key-encryption key is the
    # operator's to fix, so the submission is retried later rather than failed.
    retried = only_submission(session, encrypted.instance_id)
    assert (retried.processing_state, retried.attempts) == ("queued", 1)
    assert "sealed under another key-encryption key" in retried.last_error


def test_a_worker_that_lost_its_lease_changes_nothing(household, device, session, settings):
    instance_id = post_plain(device)
    with db.job_session() as job_session:
        submission_id = processing.claim(job_session, "slow-worker", lease_seconds=60)
        job_session.execute(
            update(Submission).where(Submission.id == submission_id).values(leased_by="other")
        )
    context = processing.WorkerContext(
        database=db, store=None, key_encryption_key="", worker_id="slow-worker"
    )
    with db.job_session() as job_session:
        processing.process_one(job_session, context, submission_id)
    unchanged = only_submission(session, instance_id)
    assert (unchanged.processing_state, unchanged.leased_by, unchanged.data) == (
        "processing",
        "other",
        None,
    )


def test_scheduler_jobs_have_stable_ids_and_replace_existing(app, monkeypatch):
    from apscheduler.schedulers.blocking import BlockingScheduler

    assert [job.id for job in jobs.JOBS] == [
        "requeue-expired-leases",
        "purge-incomplete-uploads",
        "purge-expired-web-sessions",
    ]
    added = []
    real_add_job = BlockingScheduler.add_job

    def recording_add_job(self, func, trigger=None, **options):
        added.append(options)
        return real_add_job(self, func, trigger, **options)

    monkeypatch.setattr(BlockingScheduler, "add_job", recording_add_job)
    scheduler = jobs.build_scheduler(app)

    assert [job.id for job in scheduler.get_jobs()] == [job.id for job in jobs.JOBS]
    assert all(options["replace_existing"] for options in added)
    assert [options["id"] for options in added] == [job.id for job in jobs.JOBS]


def test_scheduled_requeue_job_runs_in_the_app_context(app, household, device, session):
    instance_id = post_plain(device)
    with db.job_session() as job_session:
        processing.claim(job_session, "dead-worker", lease_seconds=60)
    session.execute(update(Submission).values(lease_until=utcnow() - dt.timedelta(seconds=1)))
    session.flush()

    requeue = next(job for job in jobs.JOBS if job.id == "requeue-expired-leases")
    jobs._run_in_context(app, requeue)
    assert only_submission(session, instance_id).processing_state == "queued"


def test_purge_removes_stale_partial_files_and_stops_waiting_for_lost_attachments(
    household, device, session, store, settings
):
    xml = household_instance_xml()
    assert device.post(xml, incomplete=True).status_code == 201
    (waiting,) = session.scalars(select(Submission)).all()
    assert waiting.processing_state == "waiting"
    tmp = store.root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    stale, fresh = tmp / "stale-upload", tmp / "fresh-upload"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - 3 * 86400
    os.utime(stale, (old, old))
    session.execute(update(Submission).values(received_at=utcnow() - dt.timedelta(days=3)))
    session.flush()

    removed = jobs.purge_incomplete_uploads(db, settings.data_dir, dt.timedelta(days=2))

    assert removed == 1
    assert not stale.exists() and fresh.exists()
    fresh.unlink()
    session.expire_all()
    assert session.get(Submission, waiting.id).processing_state == "queued"


def test_failures_page_lists_reasons_and_reprocesses(browser, household, device, session, worker):
    submission = post_encrypted(device, crypto.public_key_base64(crypto.generate_key_pair()))
    worker()
    admin = AdminFactory()
    browser.login(admin.username)

    page = browser.get("/processing")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert submission.instance_id in text and "WrongKeyError" in text

    failed = only_submission(session, submission.instance_id)
    response = browser.post("/processing/reprocess", {"submission_id": str(failed.id)})
    assert response.status_code == 302
    assert only_submission(session, submission.instance_id).processing_state == "queued"

    bad = browser.post("/processing/reprocess", {"submission_id": "not-a-uuid"})
    assert bad.status_code == 400


def test_failures_page_is_for_administrators(browser, household, hodan):
    from tests.factories import SupervisorFactory

    supervisor = SupervisorFactory(districts=[hodan])
    browser.login(supervisor.username)
    assert browser.get("/processing").status_code == 403


def test_decrypted_copies_that_earlier_versions_stored_are_forgotten_once(
    app, household, device, session, worker, store
):
    """Before every read decrypted, the worker stored a plaintext copy of each encrypted
    media file; `diiwaan submissions forget-decrypted-copies` deletes those, except a copy
    whose bytes are also another file the store keeps (here a plain submission's photo),
    and the photos are still served, decrypted."""
    sealed_photo = b"a dwelling photo sent encrypted " * 64
    post_plain(device)  # its photo is PHOTO, as sent
    encrypted = [
        post_encrypted(device, household.key.public_key, photo=photo)
        for photo in (sealed_photo, PHOTO)
    ]
    assert worker() == 3
    rows = [only_submission(session, e.instance_id) for e in encrypted]
    for photo in (sealed_photo, PHOTO):
        store.put_bytes(photo)  # as the worker of earlier versions did
    copy = rows[0].attachments[0].plain_sha256
    assert store.exists(copy)

    result = app.test_cli_runner().invoke(args=["submissions", "forget-decrypted-copies"])

    assert result.exit_code == 0, result.output
    assert "deleted 1 decrypted copy; 1 kept" in result.output
    assert not store.exists(copy)
    assert store.read(rows[1].attachments[0].plain_sha256) == PHOTO  # the plain one's photo
    for row, photo in zip(rows, (sealed_photo, PHOTO), strict=True):
        found = files.read(
            session,
            row,
            PHOTO_NAME,
            store=store,
            key_encryption_key=app.config["DIIWAAN"].key_encryption_key,
        )
        assert found is not None and found.read() == photo
    again = app.test_cli_runner().invoke(args=["submissions", "forget-decrypted-copies"])
    assert "deleted 0 decrypted copies; 1 kept" in again.output
