"""A submission's files as people read them (the review pages, the API).

A plain submission's attachments are served as they arrived. An encrypted submission's
media stay encrypted at rest, as the device sent them: the worker decrypts a submission
once, to verify its signature and read its answers, and keeps only each media file's
name and the sha256 of its plaintext; every read decrypts the one file asked for again
(`sync.crypto.MediaFileDecryptor`) and checks it against that digest. No decrypted copy
of a photo, a signature or a scanned ID is ever written to disk, and files are streamed
a chunk at a time, never held whole in memory.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, BinaryIO

from flask import Response, request, send_file
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from forms.instance import read_envelope
from server.blobs import CHUNK, BlobStore
from server.catalog import service as catalog
from server.catalog.models import FormAttachment, FormVersion
from server.errors import DiiwaanError
from server.intake.models import Submission, SubmissionAttachment
from sync import crypto

log = logging.getLogger("diiwaan.intake")


class StoredFileDamaged(DiiwaanError):
    """An encrypted file in the store no longer decrypts to what the worker verified."""

    code = "stored_file_damaged"


@dataclass(frozen=True)
class SubmissionFile:
    """A file to send: `open()` gives its content as a binary stream. A file larger than
    one chunk is read from the store (and decrypted) a chunk at a time as it is sent, so
    a long recording never sits whole in memory. `size` is its length in bytes (a
    decrypted file's counted when it was checked), so that a response can say how long
    it is and answer a range of it: a browser seeking in a recording asks for one."""

    name: str
    content_type: str | None  # as the device sent it; None for decrypted media
    open: Callable[[], BinaryIO]
    size: int | None = None

    def read(self) -> bytes:
        with self.open() as stream:
            return stream.read()

    def send(self, **options: Any) -> Response:
        """The response that sends it (`flask.send_file`'s `options`), with its length
        and, when a range was asked for, only that range (206; 416 past its end). A
        streamed file cannot seek: the bytes before the range are decrypted and dropped."""
        response = send_file(self.open(), conditional=False, **options)
        if self.size is None:
            return response
        response.content_length = self.size
        try:
            return response.make_conditional(
                request.environ, accept_ranges=True, complete_length=self.size
            )
        except RequestedRangeNotSatisfiable:
            response.close()  # the file it opened
            raise


def readable_names(submission: Submission) -> set[str]:
    """The names of the files people look at (the review pages): a plain submission's
    attachments that arrived, an encrypted one's media once the worker has decrypted and
    verified them."""
    if submission.encrypted:
        return {a.plain_name for a in submission.attachments if a.plain_name and a.plain_sha256}
    return {a.name for a in submission.attachments if a.sha256}


def read(
    session: Session,
    submission: Submission,
    name: str,
    *,
    store: BlobStore,
    key_encryption_key: str,
    as_received: bool = True,
) -> SubmissionFile | None:
    """The file `name` of `submission`, or None when it has no such file: an encrypted
    submission's media file by its plain name, decrypted; otherwise an attachment by the
    name it arrived under (for an encrypted submission, its ciphertext, unless
    `as_received` is False). Raises StoredFileDamaged, and logs it, when a decrypted file
    differs from what the worker verified: a file larger than one chunk is decrypted
    twice, once to check it before anything is sent, then as it is sent."""
    for attachment in submission.attachments:
        if submission.encrypted and attachment.plain_name == name and attachment.plain_sha256:
            decrypted, size = _verified(session, submission, attachment, store, key_encryption_key)
            return SubmissionFile(name, None, decrypted, size)
    if submission.encrypted and not as_received:
        return None
    for attachment in submission.attachments:
        if attachment.name == name and attachment.sha256:
            opener = _opener(store, attachment)
            return SubmissionFile(name, attachment.content_type, opener, attachment.size)
    return None


def _verified(
    session: Session,
    submission: Submission,
    attachment: SubmissionAttachment,
    store: BlobStore,
    key_encryption_key: str,
) -> tuple[Callable[[], BinaryIO], int]:
    """Opens the plaintext of an encrypted media file, once it has been decrypted whole
    and found to be the file the worker verified; and its length."""
    assert attachment.sha256 is not None and attachment.plain_sha256 is not None
    sealed = attachment.sha256
    envelope = read_envelope(store.read(submission.xml_sha256))
    key_id = submission.form_version.key_id
    if key_id is None:  # the worker decrypted it, so the version had a managed key
        raise _damaged(submission, attachment, "its form version has no server-managed key")
    # The media in the order the worker decrypted them (`processing._decryption_inputs`):
    # the position of a file among them fixes its IV.
    media = [
        a for a in submission.attachments if a.sha256 and a.name != envelope.encrypted_xml_file
    ]
    small = _small(attachment)
    digest = hashlib.sha256()
    whole = bytearray()
    size = 0
    try:
        decryptor = crypto.MediaFileDecryptor(
            instance_id=envelope.instance_id,
            base64_encrypted_key=envelope.base64_encrypted_key or "",
            index=media.index(attachment),
            name=attachment.name,
            private_key=_opened_keys(key_encryption_key).get(session, key_id),
        )
        for chunk in decryptor.decrypt(_chunks(store, sealed)):
            digest.update(chunk)
            size += len(chunk)
            if small:
                whole += chunk
    except crypto.CryptoError as error:
        raise _damaged(submission, attachment, str(error)) from None
    if digest.hexdigest() != attachment.plain_sha256:
        raise _damaged(submission, attachment, "it decrypts to other bytes than were verified")
    if small:  # a photo, usually: decrypted once, kept for the response
        data = bytes(whole)
        return (lambda: io.BytesIO(data)), size
    return (
        lambda: io.BufferedReader(_ChunkReader(decryptor.decrypt(_chunks(store, sealed))))
    ), size


def _small(attachment: SubmissionAttachment) -> bool:
    """Whether a file is read whole rather than streamed: one chunk or less. No file
    handle then stays open until the response is closed, and an encrypted one is
    decrypted once instead of twice."""
    return attachment.size is not None and attachment.size <= CHUNK


def _opener(store: BlobStore, attachment: SubmissionAttachment) -> Callable[[], BinaryIO]:
    assert attachment.sha256 is not None
    if _small(attachment):
        return partial(io.BytesIO, store.read(attachment.sha256))
    return partial(store.open, attachment.sha256)


# A streamed file is read and decrypted this much at a time: with the decrypted chunk
# and the one before it still being sent, a response holds about three of them.
_STREAM_CHUNK = 256 * 1024


def _chunks(store: BlobStore, sha256: str) -> Iterator[bytes]:
    """A blob's bytes, a chunk at a time (its file is closed at the end, or when the
    response that reads them is closed)."""
    with store.open(sha256) as stream:
        while chunk := stream.read(_STREAM_CHUNK):
            yield chunk


class _ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte strings (what `send_file` sends)."""

    def __init__(self, chunks: Iterator[bytes | memoryview]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)  # a memoryview of a memoryview is no copy
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        """Closes the chunks' source too: a range sent from a streamed file stops before
        its end, and the stored file it reads would stay open until collected."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


def _damaged(
    submission: Submission, attachment: SubmissionAttachment, reason: str
) -> StoredFileDamaged:
    log.error(
        "file %s of submission %s (blob %s) cannot be served: %s",
        attachment.plain_name,
        submission.id,
        attachment.sha256,
        reason,
    )
    return StoredFileDamaged(
        f"file {attachment.plain_name} of this submission is damaged in the store; "
        "an administrator can restore it from a backup"
    )


@lru_cache(maxsize=4)
def _opened_keys(key_encryption_key: str) -> catalog.OpenedKeys:
    """This process's opened keys (a page of a submission asks for one per photo)."""
    return catalog.OpenedKeys(key_encryption_key)


def forget_decrypted_copies(
    session: Session,
    store: BlobStore,
    *,
    progress: Callable[[Iterable[list[str]]], Iterable[list[str]]] = lambda chunks: chunks,
    chunk: int = 1000,
) -> tuple[int, int]:
    """Delete the decrypted copies of encrypted submissions' media that Diiwaan stored
    beside the encrypted files before it decrypted on every read (`read` never uses
    them). A copy whose bytes something else in the store is also (a form's media file,
    a plain submission's attachment) stays. Returns (deleted, kept because referenced).
    `progress` wraps the chunks of digests as they are worked through (a progress bar)."""
    digests = sorted(
        set(
            session.scalars(
                select(SubmissionAttachment.plain_sha256)
                .join(Submission, Submission.id == SubmissionAttachment.submission_id)
                .where(Submission.encrypted.is_(True))
                .where(SubmissionAttachment.plain_sha256.is_not(None))
            )
        )
    )
    chunks = [digests[start : start + chunk] for start in range(0, len(digests), chunk)]
    columns = (
        SubmissionAttachment.sha256,
        Submission.xml_sha256,
        FormVersion.source_sha256,
        FormAttachment.sha256,
    )
    deleted = kept = 0
    for some in progress(chunks):
        referenced: set[str] = set()
        for column in columns:
            referenced.update(session.scalars(select(column).where(column.in_(some))))
        kept += len(referenced.intersection(some))
        deleted += sum(store.delete(digest) for digest in some if digest not in referenced)
    return deleted, kept
