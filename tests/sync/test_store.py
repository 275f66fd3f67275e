"""The client's SQLite store and backoff, without a server: the registry slice applies
deltas (merges become redirects), acknowledgements are recorded once, waits grow."""

from __future__ import annotations

import random

import pytest

from sync.client import Backoff, SyncError
from sync.store import ClientStore


@pytest.fixture
def store(tmp_path) -> ClientStore:
    opened = ClientStore(tmp_path / "client.db")
    yield opened
    opened.close()


def change(seq: int, entity_id: str, operation: str = "upsert", **fields) -> dict:
    return {
        "seq": seq,
        "list_name": "households",
        "entity_id": entity_id,
        "operation": operation,
        "version": fields.get("version", 1),
        "label": fields.get("label", entity_id),
        "properties": fields.get("properties", {"district": "hodan"}),
        "merged_into": fields.get("merged_into"),
    }


def test_registry_deltas_upsert_remove_and_redirect_merges(store):
    store.apply_changes([change(1, "a"), change(2, "b"), change(3, "c")], cursor=3)
    store.apply_changes(
        [
            change(4, "a", version=2, label="A, corrected"),
            change(5, "b", "merge", merged_into="a"),
            change(6, "c", "remove"),
        ],
        cursor=6,
    )

    assert [(e["entity_id"], e["version"], e["label"]) for e in store.entities()] == [
        ("a", 2, "A, corrected")
    ]
    assert store.resolve("b") == "a"
    assert store.resolve("a") == "a"
    assert store.cursor == 6


def test_a_page_and_its_cursor_are_applied_together_or_not_at_all(store):
    broken = [change(1, "a"), {"seq": 2}]  # the second change is unreadable
    with pytest.raises(KeyError):
        store.apply_changes(broken, cursor=2)
    assert store.entities() == [] and store.cursor == 0


def test_an_acknowledgement_moves_an_item_to_the_receipts_once(store):
    store.enqueue(instance_id="uuid:1", form_id="f", version="1", sha256="s" * 64, pack=b"x")
    answer = {"instance_id": "uuid:1", "outcome": "created", "status": 201}

    assert store.acknowledge([answer]) == ["uuid:1"]
    assert store.acknowledge([answer]) == []
    assert store.queued() == []
    assert [(r.instance_id, r.outcome) for r in store.receipts()] == [("uuid:1", "created")]


def test_refused_items_wait_until_asked_to_be_sent_again(store):
    store.enqueue(instance_id="uuid:1", form_id="f", version="1", sha256="s" * 64, pack=b"x")
    store.refuse("uuid:1", {"outcome": "conflict", "status": 409, "message": "different"})
    assert store.queued() == [] and [i.outcome for i in store.refused()] == ["conflict"]
    store.requeue_refused()
    assert [i.instance_id for i in store.queued()] == ["uuid:1"]


def test_the_store_file_is_readable_by_its_owner_only(tmp_path):
    ClientStore(tmp_path / "private.db").close()
    assert (tmp_path / "private.db").stat().st_mode & 0o077 == 0


def test_backoff_waits_grow_exponentially_with_jitter_up_to_a_cap_then_gives_up():
    waits: list[float] = []
    backoff = Backoff(base=1.0, cap=8.0, give_up_after=6, rng=random.Random(7), sleep=waits.append)
    for _ in range(6):
        backoff.wait("link down")
    with pytest.raises(SyncError, match="gave up after 6"):
        backoff.wait("link down")

    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(waits, ceilings, strict=True))
    assert len(set(waits)) == len(waits)  # jittered, not in lock-step
    backoff.reset()
    backoff.wait("again")
    assert waits[-1] <= 1.0
