"""The content-addressed blob store (server/blobs.py): what is staged and committed is
durable and whole before anyone may point at it, and refused bytes leave nothing."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from server import blobs
from server.blobs import BlobStore, BlobTooLarge


@pytest.fixture
def store(tmp_path):
    return BlobStore(tmp_path / "blobs")


def staged_files(store: BlobStore) -> list[str]:
    return sorted(path.name for path in (store.root / "tmp").iterdir())


def test_a_committed_blob_is_fsynced_before_it_is_renamed_and_its_directory_after(
    store, monkeypatch
):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(source: str, target: str) -> None:
        events.append(("rename", str(target)))
        real_replace(source, target)

    monkeypatch.setattr(blobs.os, "fsync", fsync)
    monkeypatch.setattr(blobs.os, "replace", replace)
    staged = store.stage_bytes(b"household")
    stored = staged.commit()

    target = store.path(stored.sha256)
    assert events == [
        ("fsync", str(staged.tmp_path)),
        # The first blob of its shard: the new directories' entries are made durable.
        ("fsync", str(store.root)),
        ("fsync", str(target.parent.parent)),
        ("rename", str(target)),
        ("fsync", str(target.parent)),
    ]
    assert target.read_bytes() == b"household"
    assert stored.sha256 == hashlib.sha256(b"household").hexdigest()
    assert staged_files(store) == []


def test_staged_bytes_are_readable_by_this_process_only_until_committed(store):
    staged = store.stage_bytes(b"a member's photo")
    assert stat.S_IMODE(staged.tmp_path.stat().st_mode) == 0o600
    assert staged.tmp_path.read_bytes() == b"a member's photo"
    assert not store.exists(staged.sha256)


def test_each_staged_blob_gets_its_own_file_even_for_the_same_bytes(store):
    first, second = store.stage_bytes(b"same"), store.stage_bytes(b"same")
    assert first.tmp_path != second.tmp_path
    first.commit()
    second.commit()  # the bytes are already stored: the second copy is dropped
    assert store.read(first.sha256) == b"same"
    assert staged_files(store) == []


def test_a_discarded_or_aborted_blob_leaves_nothing_behind(store):
    store.stage_bytes(b"refused").discard()
    writer = store.writer(limit=4)
    with pytest.raises(BlobTooLarge):
        writer.write(b"too long")
    writer.abort()
    assert staged_files(store) == []


def test_a_blob_in_an_existing_shard_fsyncs_only_its_file_and_directory(store, monkeypatch):
    first = store.put_bytes(b"household")
    # Other bytes whose digest lands in the same shard (found within the first 100,000).
    sibling = next(
        candidate
        for candidate in (b"member %d" % number for number in range(100_000))
        if hashlib.sha256(candidate).hexdigest()[:4] == first.sha256[:4]
    )
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(blobs.os, "fsync", fsync)
    stored = store.put_bytes(sibling)
    assert stored.sha256[:4] == first.sha256[:4]
    assert synced[1:] == [str(store.path(stored.sha256).parent)]  # after the file itself


def test_bytes_refused_or_already_stored_are_never_fsynced(store, monkeypatch):
    """A device resending a submission, or one that is refused, costs no fsync: only
    bytes that enter the store are made durable."""
    store.put_bytes(b"first upload")
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(blobs.os, "fsync", fsync)
    store.stage_bytes(b"first upload").commit()  # a resend: already stored
    store.stage_bytes(b"refused upload").discard()
    assert synced == []
    assert staged_files(store) == []
