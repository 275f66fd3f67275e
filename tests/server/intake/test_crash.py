"""A worker killed with SIGKILL at any moment loses nothing and does nothing twice.

Real processes throughout: submissions posted over HTTP to gunicorn, workers started as
subprocesses (tests/server/intake/crash_worker.py) whose registry hook writes a marker row
in the worker's transaction and then sleeps, so the test can kill them mid-item. Leases
last 5 s (DIIWAAN_WORKER_LEASE_SECONDS), after which another worker takes the item over.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, selectinload

from server.db import as_utc, utcnow
from server.intake import processing
from server.intake.models import Submission
from tests.server.intake.live import ROOT, LiveSite, gunicorn, live_database
from tests.support.submissions import encrypted_household

WORKER_SCRIPT = ROOT / "tests" / "server" / "intake" / "crash_worker.py"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    tmp_path: Path = tmp_path_factory.mktemp("live-crash")
    with live_database(tmp_path) as live, gunicorn(live, workers=2, threads=2):
        with live.engine.begin() as connection:
            connection.execute(
                text(
                    "CREATE TABLE crash_marker"
                    " (instance_id VARCHAR(255) NOT NULL, pid INTEGER NOT NULL)"
                )
            )
        yield live


@pytest.fixture
def started_dir(tmp_path: Path) -> Path:
    return tmp_path


def start_worker(
    site: LiveSite, started_dir: Path, *, pause: float, batch: int = processing.BATCH_SIZE
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT)],
        cwd=ROOT,
        env={
            **site.environment,
            "CRASH_STARTED_DIR": str(started_dir),
            "CRASH_HOOK_SLEEP": str(pause),
            "CRASH_BATCH": str(batch),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_start(worker: subprocess.Popen[str], started_dir: Path, seen: int) -> None:
    """Until the worker has begun one more item than `seen` (its hook ran)."""
    deadline = time.monotonic() + 30
    while len(list(started_dir.iterdir())) <= seen:
        if worker.poll() is not None:
            pytest.fail(f"the worker exited early: {worker.stdout.read() if worker.stdout else ''}")
        if time.monotonic() > deadline:
            pytest.fail("the worker never reached the hook")
        time.sleep(0.02)


def kill(worker: subprocess.Popen[str]) -> None:
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL
    if worker.stdout:
        worker.stdout.close()


def drain(site: LiveSite, started_dir: Path) -> str:
    worker = start_worker(site, started_dir, pause=0)
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output
    return output


def post_submissions(site: LiveSite, count: int) -> list[str]:
    instance_ids = []
    for _ in range(count):
        submission = encrypted_household(site.public_key)
        status, body = site.post(submission.manifest, submission.attachments)
        assert status == 201, body
        instance_ids.append(submission.instance_id)
    return instance_ids


def submissions(site: LiveSite, instance_ids: list[str]) -> dict[str, Submission]:
    with Session(site.engine) as session:
        rows = session.scalars(
            select(Submission)
            .where(Submission.instance_id.in_(instance_ids))
            .options(selectinload(Submission.attachments))
        )
        return {row.instance_id: row for row in rows}


def markers(site: LiveSite, instance_ids: list[str]) -> Counter[str]:
    """How many times the registry hook's write was committed, per submission."""
    rows = site.rows("SELECT instance_id FROM crash_marker")
    return Counter(row[0] for row in rows if row[0] in instance_ids)


def wait_for_leases_to_expire(site: LiveSite, instance_ids: list[str]) -> None:
    leases = [
        as_utc(row.lease_until)
        for row in submissions(site, instance_ids).values()
        if row.processing_state == "processing" and row.lease_until is not None
    ]
    if leases:
        time.sleep(max(0.0, (max(leases) - utcnow()).total_seconds()) + 0.2)


@pytest.mark.parametrize("batch", [1, processing.BATCH_SIZE], ids=["one-by-one", "batch"])
def test_worker_killed_mid_item_leaves_it_to_be_retried_once(site, started_dir, batch):
    instance_ids = post_submissions(site, 3)

    doomed = start_worker(site, started_dir, pause=60, batch=batch)
    wait_for_start(doomed, started_dir, seen=0)
    kill(doomed)

    (started,) = list(started_dir.iterdir())
    rows = submissions(site, instance_ids)
    in_flight = next(
        row for row in rows.values() if started.name.endswith(row.instance_id.replace(":", "_"))
    )
    assert (in_flight.processing_state, in_flight.attempts, in_flight.data) == (
        "processing",
        1,
        None,
    )
    assert in_flight.leased_by and in_flight.lease_until is not None
    assert all(a.plain_sha256 is None for a in in_flight.attachments)
    # The marker was written in the killed transaction, so it is not there.
    assert markers(site, instance_ids) == Counter()
    others = [row for row in rows.values() if row is not in_flight]
    if batch == 1:
        assert [(row.processing_state, row.attempts) for row in others] == [("queued", 0)] * 2
    else:  # leased with it in one transaction, and none of the batch done
        assert [(row.processing_state, row.attempts, row.data) for row in others] == [
            ("processing", 1, None)
        ] * 2

    wait_for_leases_to_expire(site, instance_ids)
    assert "processed 3" in drain(site, started_dir)

    rows = submissions(site, instance_ids)
    assert {row.processing_state for row in rows.values()} == {"processed"}
    # Each leased once by the killed worker, once by the one that finished it.
    expected = {i: 1 for i in instance_ids} if batch == 1 else {}
    expected.update({i: 2 for i in instance_ids if batch != 1 or i == in_flight.instance_id})
    assert {i: row.attempts for i, row in rows.items()} == expected
    assert all(row.data and row.data["hh_size"] == 3 for row in rows.values())
    assert all(row.attachments[0].plain_sha256 for row in rows.values())
    assert markers(site, instance_ids) == Counter(instance_ids)


def test_a_submission_that_keeps_killing_its_worker_fails_alone(site, started_dir):
    """A batch's retries are leased one at a time, so a submission that kills every worker
    that takes it uses up its own attempts, not those of its batch's other submissions."""
    instance_ids = post_submissions(site, 3)
    worker = start_worker(site, started_dir, pause=60)  # leases all three, dies in the first
    wait_for_start(worker, started_dir, seen=0)
    kill(worker)
    (first,) = list(started_dir.iterdir())
    poison = next(i for i in instance_ids if first.name.endswith(i.replace(":", "_")))
    assert {row.attempts for row in submissions(site, instance_ids).values()} == {1}
    # As if it had killed all but one of the workers it may since (each retry leased
    # alone, as the last one is below):
    with site.engine.begin() as connection:
        connection.execute(
            text("UPDATE submission SET attempts = :n WHERE instance_id = :i"),
            {"n": processing.MAX_WORKER_STOPS - 1, "i": poison},
        )
    wait_for_leases_to_expire(site, instance_ids)
    worker = start_worker(site, started_dir, pause=60)
    wait_for_start(worker, started_dir, seen=1)
    kill(worker)
    rows = submissions(site, instance_ids)
    # (The other two still show the first worker's expired lease.)
    assert {i: r.attempts for i, r in rows.items()} == {
        i: processing.MAX_WORKER_STOPS if i == poison else 1 for i in instance_ids
    }, "the retry of the poison submission was leased alone"

    wait_for_leases_to_expire(site, instance_ids)
    assert "processed 2" in drain(site, started_dir)
    rows = submissions(site, instance_ids)
    assert rows[poison].processing_state == "failed"
    gave_up = f"gave up after {processing.MAX_WORKER_STOPS} attempts"
    assert gave_up in (rows[poison].last_error or "")
    assert {i: r.processing_state for i, r in rows.items() if i != poison} == {
        i: "processed" for i in instance_ids if i != poison
    }


@pytest.mark.parametrize("batch", [1, 3], ids=["one-by-one", "batches-of-3"])
def test_workers_killed_at_random_moments_process_everything_exactly_once(site, started_dir, batch):
    instance_ids = post_submissions(site, 8)
    chance = random.Random(20261126 + batch)

    for _round in range(3):
        # What the killed worker leased waits for its lease to run out (a batch: all of it).
        wait_for_leases_to_expire(site, instance_ids)
        seen = len(list(started_dir.iterdir()))
        worker = start_worker(site, started_dir, pause=0.05, batch=batch)
        wait_for_start(worker, started_dir, seen=seen)
        # Anywhere: in the hook, committing, claiming the next item, between the two.
        time.sleep(chance.uniform(0, 0.25))
        kill(worker)

    wait_for_leases_to_expire(site, instance_ids)
    drain(site, started_dir)

    rows = submissions(site, instance_ids)
    assert {row.processing_state for row in rows.values()} == {"processed"}
    assert all(row.data for row in rows.values())
    assert markers(site, instance_ids) == Counter(instance_ids)
