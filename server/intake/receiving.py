"""The request side of intake, shared by the OpenRosa endpoint and the batch sync API:
stream a submission's parts into the blob store, then let `service.receive` decide and
commit, retrying when two uploads of one instance race."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from forms.instance import MAX_XML_BYTES
from server.accounts.models import User
from server.blobs import CHUNK, BlobStore, BlobTooLarge, StagedBlob
from server.errors import BadRequest, PayloadTooLarge
from server.intake import service


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def store_parts(
    store: BlobStore,
    xml_stream: Readable,
    attachments: Iterable[tuple[str, Readable, str | None]],
    *,
    limit: int,
    incomplete: bool = False,
    device_id: str | None = None,
) -> service.IncomingSubmission:
    """Write the xml_submission_file and each (name, stream, content type) attachment to
    the blob store's staging area, never holding a whole file in memory, and describe
    what arrived. The files enter the store only if `receive_and_commit` keeps the
    submission; a refusal leaves nothing behind.

    Raises BadRequest for an attachment name that is not a plain file name and
    PayloadTooLarge past `limit` bytes per file (10 MB for the XML).
    """
    xml = b""
    while len(xml) <= MAX_XML_BYTES and (chunk := xml_stream.read(MAX_XML_BYTES + 1 - len(xml))):
        xml += chunk
    if len(xml) > MAX_XML_BYTES:
        raise PayloadTooLarge(f"xml_submission_file is larger than {MAX_XML_BYTES} bytes")
    incoming = service.IncomingSubmission(
        xml=xml, xml_blob=store.stage_bytes(xml), incomplete=incomplete, device_id=device_id
    )
    try:
        for name, stream, content_type in attachments:
            if not service.is_safe_attachment_name(name):
                raise BadRequest(f"attachment name {name[:80]!r} is not a plain file name")
            try:
                blob = store.stage_chunks(_chunks(stream), limit=limit)
            except BlobTooLarge:
                raise PayloadTooLarge(f"attachment {name!r} is larger than {limit} bytes") from None
            incoming.files.append(service.IncomingFile(name, blob, content_type))
    except BaseException:
        discard_staged(incoming)
        raise
    return incoming


def _chunks(stream: Readable) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def receive_and_commit(
    session: Session,
    user: User,
    incoming: service.IncomingSubmission,
    *,
    record: Callable[[service.Decision], None] | None = None,
) -> service.Decision:
    """Decide and store; two retries racing on one instance ID store exactly one.

    `record(decision)` runs inside the same transaction, after the decision and before
    the commit, so whatever it writes (the sync API's per-item acknowledgement) is durable
    exactly when the submission is. A refusal stores nothing of the submission, but what
    `record` writes is still committed.
    """
    try:
        for attempt in range(3):
            try:
                # The loser of a race on one instance ID hears of it here, at the flush
                # of its INSERT, or at the commit; the retry then finds the winner's row.
                decision = service.receive(session, user, incoming)
                if decision.stored:
                    _keep_staged(incoming, decision)
                else:
                    session.rollback()
                if record is not None:
                    record(decision)
                session.commit()
                return decision
            except IntegrityError:
                session.rollback()
                if attempt == 2:
                    raise
    finally:
        discard_staged(incoming)
    raise AssertionError("unreachable")


def _keep_staged(incoming: service.IncomingSubmission, decision: service.Decision) -> None:
    """Move the posted files the submission refers to into the store, durably, before
    the rows that point at them are committed."""
    assert decision.submission is not None
    referenced = {decision.submission.xml_sha256}
    referenced.update(a.sha256 for a in decision.submission.attachments if a.sha256)
    for blob in _staged(incoming):
        if blob.sha256 in referenced:
            blob.commit()


def discard_staged(incoming: service.IncomingSubmission) -> None:
    """Drop whatever of this upload was not kept (nothing, once it was)."""
    for blob in _staged(incoming):
        blob.discard()


def _staged(incoming: service.IncomingSubmission) -> list[StagedBlob]:
    blobs = [incoming.xml_blob, *(incoming_file.blob for incoming_file in incoming.files)]
    return [blob for blob in blobs if isinstance(blob, StagedBlob)]
