"""The sync client and server over a bad link (tests/support/faultproxy.py): throttled,
delayed, every exchange (request and answer) cut with probability 0.3 at a random byte, and
the server killed and started again in the middle of a session. Every submission must be
acknowledged exactly once and stored exactly once.

Rates: the 200-item test runs at 400 kbit/s with 20 ms latency so that it fits in well
under a minute; `test_a_2g_link_...` runs 20 items at 50 kbit/s with 300 ms latency.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import create_engine, func, select

from server.intake.models import Submission, SyncItem
from tests.support.faultproxy import FaultProxy
from tests.sync.conftest import quick_backoff, visit_xml

SEED = 20261126


def queue_visits(tablet, folder: Path, count: int) -> list[str]:
    instance_ids = []
    for number in range(count):
        instance_id = f"uuid:{uuid.uuid4()}"
        path = folder / f"visit-{number}.xml"
        path.write_bytes(visit_xml(f"Household {number}", instance_id))
        tablet.queue(path)
        instance_ids.append(instance_id)
    return instance_ids


def count_acknowledgements(tablet) -> Counter[str]:
    """Count, per instance, the acknowledgements the device recorded."""
    counted: Counter[str] = Counter()
    acknowledge = tablet.store.acknowledge

    def counting(answers: list[dict]) -> list[str]:
        acknowledged_now = acknowledge(answers)
        counted.update(acknowledged_now)
        return acknowledged_now

    tablet.store.acknowledge = counting
    return counted


def stored_on_server(server, instance_ids: list[str]) -> Counter[str]:
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(Submission.instance_id, func.count())
                .where(Submission.instance_id.in_(instance_ids))
                .group_by(Submission.instance_id)
            ).all()
    finally:
        engine.dispose()
    return Counter({instance_id: count for instance_id, count in rows})


def restart_when(
    server, instance_ids: list[str], stored: int, done: threading.Event, restarts: list[int]
) -> None:
    """Kill -9 the server once `stored` of the items are in, then start it again."""
    while not done.is_set():
        count = sum(stored_on_server(server, instance_ids).values())
        if count >= stored:
            server.restart()
            restarts.append(count)
            return
        time.sleep(0.05)


def test_200_submissions_through_dropped_links_and_a_restart_are_each_acknowledged_once(
    live, make_client, tmp_path
):
    server, token = live
    with FaultProxy(
        server.port,
        rate_bps=50_000,
        latency=0.02,
        drop_probability=0.3,
        seed=SEED,
    ) as proxy:
        tablet = make_client(chunk_bytes=8 * 1024, backoff=quick_backoff(give_up_after=80))
        tablet.enroll(proxy.url, token)
        tablet.pull()
        instance_ids = queue_visits(tablet, tmp_path, 200)
        acknowledged = count_acknowledgements(tablet)
        pushed, restarts = threading.Event(), []
        watcher = threading.Thread(
            target=restart_when, args=(server, instance_ids, 80, pushed, restarts), daemon=True
        )
        watcher.start()

        summary = tablet.push()

        pushed.set()
        watcher.join(timeout=60)

    assert summary.acknowledged == 200 and summary.remaining == 0
    assert set(acknowledged) == set(instance_ids)
    assert set(acknowledged.values()) == {1}
    assert stored_on_server(server, instance_ids) == Counter(dict.fromkeys(instance_ids, 1))
    assert tablet.store.queued() == []
    assert len(tablet.store.receipts()) == 200
    # The faults did happen: exchanges were cut and the server went away mid-session.
    assert proxy.exchanges >= 30 and proxy.cuts >= 0.2 * proxy.exchanges
    assert len(restarts) == 1 and restarts[0] < 200


def test_a_2g_link_resends_at_most_one_chunk_per_drop(live, make_client, tmp_path):
    server, token = live
    chunk = 4 * 1024
    with FaultProxy(
        server.port,
        rate_bps=50_000 / 8,  # 50 kbit/s
        latency=0.3,
        drop_probability=0.3,
        seed=SEED + 1,
    ) as proxy:
        tablet = make_client(chunk_bytes=chunk, backoff=quick_backoff(give_up_after=60))
        tablet.enroll(proxy.url, token)
        tablet.pull()
        instance_ids = queue_visits(tablet, tmp_path, 20)
        proxy.reset_counters()
        started = time.monotonic()

        summary = tablet.push()

        elapsed = time.monotonic() - started

    assert summary.acknowledged == 20
    assert stored_on_server(server, instance_ids) == Counter(dict.fromkeys(instance_ids, 1))
    assert proxy.cuts >= 1
    assert summary.resent_bytes <= proxy.cuts * chunk
    # 20 items of ~1.2 KB at 6.25 KB/s: seconds, not minutes.
    assert elapsed < 60
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as connection:
            stored = connection.scalar(
                select(func.count())
                .select_from(SyncItem)
                .where(SyncItem.instance_id.in_(instance_ids), SyncItem.state == "stored")
            )
    finally:
        engine.dispose()
    assert stored >= 20
