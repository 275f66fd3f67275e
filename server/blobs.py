"""Content-addressed file store under DIIWAAN_DATA_DIR/blobs: files are named by sha256.

Writes go to a temporary file, are fsynced, then renamed into place, so a blob that
exists is whole; the caller commits the row that points at it only afterwards.
Storing the same bytes twice stores them once. Intake stages what a device posts and
commits it only when the submission is kept, so refused bytes never enter the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    md5: str
    size: int


@dataclass(frozen=True)
class StagedBlob(StoredBlob):
    """Bytes written whole under tmp/, not yet part of the store: `commit` fsyncs them
    and moves them in (the caller then commits the rows that point at them), `discard`
    drops them. Bytes that are refused or already stored (a device resending) are
    never fsynced."""

    tmp_path: Path
    store: BlobStore = field(repr=False, compare=False)

    def commit(self) -> StoredBlob:
        return self.store.commit(self)

    def discard(self) -> None:
        self.store.discard(self)


class BlobTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # Intake stages and commits a few blobs per request: on that path plain strings
        # and os calls (and no tempfile.mkstemp) save ~0.1 ms of CPU per submission.
        self._root = str(self.root)
        self.tmp_dir = os.path.join(self._root, "tmp")
        self._tmp_ready = False

    def path(self, sha256: str) -> Path:
        return Path(self._path(sha256))

    def _path(self, sha256: str) -> str:
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return os.path.join(self._root, sha256[:2], sha256[2:4], sha256)

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def put_bytes(self, data: bytes) -> StoredBlob:
        return self.commit(self.stage_chunks([data]))

    def put_stream(self, stream: BinaryIO, limit: int | None = None) -> StoredBlob:
        return self.commit(self.stage_stream(stream, limit))

    def put_chunks(self, chunks: Iterable[bytes], limit: int | None = None) -> StoredBlob:
        return self.commit(self.stage_chunks(chunks, limit))

    def stage_bytes(self, data: bytes) -> StagedBlob:
        return self.stage_chunks([data])

    def stage_stream(self, stream: BinaryIO, limit: int | None = None) -> StagedBlob:
        def chunks() -> Iterable[bytes]:
            while chunk := stream.read(CHUNK):
                yield chunk

        return self.stage_chunks(chunks(), limit)

    def stage_chunks(self, chunks: Iterable[bytes], limit: int | None = None) -> StagedBlob:
        """Stream chunks to a temporary file (never all in memory); the blob enters the
        store, durably, only with `commit`, so bytes that are refused leave nothing."""
        writer = self.writer(limit)
        try:
            for chunk in chunks:
                writer.write(chunk)
            return writer.finish()
        except BaseException:
            writer.abort()
            raise

    def writer(self, limit: int | None = None) -> BlobWriter:
        """A staged blob written piece by piece, for bytes that are pushed (a streaming
        multipart parser) rather than pulled; `finish` closes it, `abort` drops it."""
        if not self._tmp_ready:
            os.makedirs(self.tmp_dir, exist_ok=True)
            self._tmp_ready = True
        return BlobWriter(self, limit)

    def commit(self, staged: StagedBlob) -> StoredBlob:
        """Move a staged blob into place durably (fsynced, renamed, its directory fsynced);
        storing known bytes again is a no-op."""
        target = self._path(staged.sha256)
        if os.path.exists(target):
            staged.tmp_path.unlink(missing_ok=True)
        else:
            _fsync_file(str(staged.tmp_path))
            directory = os.path.dirname(target)
            _make_dirs_durably(directory)
            os.replace(staged.tmp_path, target)
            _fsync_dir(directory)
        return StoredBlob(sha256=staged.sha256, md5=staged.md5, size=staged.size)

    def discard(self, staged: StagedBlob) -> None:
        """Forget a staged blob (after `commit` there is nothing left to forget)."""
        staged.tmp_path.unlink(missing_ok=True)

    def delete(self, sha256: str) -> bool:
        """Remove a blob for good (its directory entry fsynced); False if it was not
        there. The caller makes sure no row points at it any more."""
        target = self._path(sha256)
        try:
            os.unlink(target)
        except FileNotFoundError:
            return False
        _fsync_dir(os.path.dirname(target))
        return True

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def open(self, sha256: str) -> BinaryIO:
        return self.path(sha256).open("rb")


class BlobWriter:
    """One blob being staged: `write` pieces, then `finish` or `abort`."""

    def __init__(self, store: BlobStore, limit: int | None) -> None:
        self.store, self.limit, self.size = store, limit, 0
        self._sha, self._md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        # As tempfile.mkstemp: a new file (O_EXCL) that only this user can read, under a
        # random name (128 bits: two uploads never draw the same one).
        name = os.path.join(store.tmp_dir, secrets.token_hex(16))
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._path = Path(name)

    def write(self, chunk: bytes | memoryview) -> None:
        """Raises BlobTooLarge past the limit (the caller then aborts)."""
        assert self._file is not None, "write after finish or abort"
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            raise BlobTooLarge(self.limit)
        self._sha.update(chunk)
        self._md5.update(chunk)
        self._file.write(chunk)

    def finish(self) -> StagedBlob:
        assert self._file is not None, "finish after finish or abort"
        handle, self._file = self._file, None
        handle.close()  # fsynced by `commit`, if it is kept
        return StagedBlob(
            self._sha.hexdigest(), self._md5.hexdigest(), self.size, self._path, self.store
        )

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._path.unlink(missing_ok=True)


def _make_dirs_durably(directory: str) -> None:
    """Create `directory` and any missing parents, each one's entry fsynced in its parent:
    a shard directory made for a new blob must survive a crash with the blob, or the
    database would point at a file the filesystem lost."""
    if os.path.isdir(directory):
        return
    parent = os.path.dirname(directory)
    _make_dirs_durably(parent)
    # Made by another process meanwhile: fsynced all the same, as that process may not
    # have done it yet when this blob's row is committed.
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory)
    _fsync_dir(parent)


def _fsync_file(path: str) -> None:
    _fsync(path, os.O_WRONLY)


def _fsync_dir(directory: str) -> None:
    _fsync(directory, os.O_RDONLY)


def _fsync(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def blob_store(data_dir: Path) -> BlobStore:
    return BlobStore(Path(data_dir) / "blobs")
