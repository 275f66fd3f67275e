"""Racing duplicates against the real server: gunicorn with two processes of four threads
each, the same submission fired from eight threads at once. Exactly one is created."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server.intake.live import LiveSite, gunicorn, live_database
from tests.support.submissions import encode_multipart, encrypted_household, openrosa_message
from tests.support.xlsforms import household_instance_xml

THREADS = 8


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    tmp_path: Path = tmp_path_factory.mktemp("live-concurrency")
    with live_database(tmp_path) as site, gunicorn(site, workers=2, threads=4):
        yield site


def race(post: Callable[[], tuple[int, bytes]], threads: int = THREADS) -> list[int]:
    """Run `post` from `threads` threads released together; their statuses."""
    barrier = threading.Barrier(threads)
    results: list[tuple[int, bytes] | BaseException] = [RuntimeError("did not run")] * threads

    def client(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = post()
        except BaseException as error:  # reported below, with the others
            results[index] = error

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    errors = [result for result in results if isinstance(result, BaseException)]
    assert not errors, errors
    statuses = []
    for status, body in results:  # type: ignore[misc]
        nature, _message = openrosa_message(body)
        assert nature == ("" if status in (201, 202) else "error"), body
        statuses.append(status)
    return statuses


def rows_for(site: LiveSite, instance_id: str) -> tuple[int, int]:
    submissions = site.scalar(
        "SELECT count(*) FROM submission WHERE instance_id = :i", i=instance_id
    )
    attachments = site.scalar(
        "SELECT count(*) FROM submission_attachment a JOIN submission s"
        " ON s.id = a.submission_id WHERE s.instance_id = :i",
        i=instance_id,
    )
    return int(submissions or 0), int(attachments or 0)


@pytest.mark.parametrize("round_", range(3))
def test_identical_posts_racing_store_exactly_one(live_server, round_):
    xml = household_instance_xml(instance_id=f"uuid:{uuid.uuid4()}")
    instance_id = xml.split(b"<instanceID>")[1].split(b"<")[0].decode()

    statuses = race(lambda: live_server.post(xml))

    assert Counter(statuses) == {201: 1, 202: THREADS - 1}
    assert rows_for(live_server, instance_id) == (1, 0)


def test_identical_encrypted_posts_with_attachments_racing_store_exactly_one(live_server):
    submission = encrypted_household(live_server.public_key)

    statuses = race(lambda: live_server.post(submission.manifest, submission.attachments))

    # Every post carries every file, so only the first adds anything.
    assert Counter(statuses) == {201: 1, 202: THREADS - 1}
    assert rows_for(live_server, submission.instance_id) == (1, 2)
    state = live_server.scalar(
        "SELECT processing_state FROM submission WHERE instance_id = :i",
        i=submission.instance_id,
    )
    assert state == "queued"


@pytest.mark.parametrize("round_", range(3))
def test_racing_halves_of_an_encrypted_upload_complete_it(live_server, round_):
    """The files of one encrypted submission arriving in parallel POSTs (a retry racing
    the original): each file is kept once, and the submission is complete and queued —
    not left waiting for a file it already has."""
    submission = encrypted_household(live_server.public_key)
    assert live_server.post(submission.manifest)[0] == 201  # no file yet: waiting
    halves = [[attachment] for attachment in submission.attachments]
    counter = iter(range(THREADS))
    lock = threading.Lock()

    def post_a_half() -> tuple[int, bytes]:
        with lock:
            half = halves[next(counter) % 2]
        return live_server.post(submission.manifest, half)

    statuses = race(post_a_half)

    assert Counter(statuses) == {201: 2, 202: THREADS - 2}
    assert rows_for(live_server, submission.instance_id) == (1, 2)
    state = live_server.rows(
        "SELECT processing_state, complete FROM submission WHERE instance_id = :i",
        i=submission.instance_id,
    )
    assert [tuple(row) for row in state] == [("queued", True)]


def test_different_submissions_in_parallel_are_all_created(live_server):
    xmls = [household_instance_xml(instance_id=f"uuid:{uuid.uuid4()}") for _ in range(THREADS)]
    counter = iter(range(THREADS))
    lock = threading.Lock()

    def post_next() -> tuple[int, bytes]:
        with lock:
            xml = xmls[next(counter)]
        return live_server.post(xml)

    assert race(post_next) == [201] * THREADS


def test_a_slow_upload_does_not_hold_up_other_devices(live_server):
    """A tablet on 2G takes minutes to send its body; nothing it holds meanwhile (on SQLite,
    the database's write lock) may make the other tablets wait."""
    body, content_type = encode_multipart(household_instance_xml())
    slow = socket.create_connection(("127.0.0.1", live_server.port), timeout=30)
    try:
        slow.sendall(
            f"POST /key/{live_server.device_token}/submission HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:200]
        )
        time.sleep(0.5)  # the server has authenticated it and is waiting for the rest

        started = time.monotonic()
        status, _body = live_server.post(household_instance_xml(), timeout=20)
        assert status == 201
        assert time.monotonic() - started < 10  # not the 30 s busy timeout

        slow.sendall(body[200:])
        assert slow.recv(64).startswith(b"HTTP/1.1 201")
    finally:
        slow.close()
