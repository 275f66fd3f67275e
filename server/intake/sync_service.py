"""Batch sync for devices on poor links (docs/sync-protocol.md): device records, upload
sessions, partial uploads kept on disk so an interrupted item resumes where the link
dropped, and the download side (forms, registry deltas, review outcomes).

Every uploaded submission goes through `receiving.receive_and_commit`, so `service.receive`
decides its outcome exactly as it does for OpenRosa. Unlike other services this one
commits: each item is acknowledged only once it is durable, item by item, inside one
long request.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from forms.instance import InstanceError, read_envelope
from server.accounts.models import Token, User
from server.accounts.service import can, require
from server.blobs import BlobStore
from server.catalog import service as catalog
from server.db import as_utc, utcnow
from server.errors import BadRequest, Conflict, DiiwaanError, Forbidden, NotFound
from server.intake import receiving, service
from server.intake.models import Device, Submission, SyncItem, SyncSession
from sync.pack import (
    FRAME_HEADER_MAX,
    Frame,
    FrameError,
    PackError,
    Readable,
    parse_frame_header,
    read_pack,
)

log = logging.getLogger("diiwaan.sync")

PROTOCOL = 1
COPY_BYTES = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """What the server accepts; sent to devices so they size their requests."""

    max_item_bytes: int
    max_request_bytes: int = 8 * 1024 * 1024
    chunk_bytes: int = 64 * 1024
    max_items: int = 1000
    max_json_bytes: int = 2 * 1024 * 1024
    max_page: int = 5000

    def to_dict(self) -> dict[str, int]:
        return {
            "max_item_bytes": self.max_item_bytes,
            "max_request_bytes": self.max_request_bytes,
            "chunk_bytes": self.chunk_bytes,
            "max_items": self.max_items,
            "max_json_bytes": self.max_json_bytes,
            "max_page": self.max_page,
        }


# --------------------------------------------------------------------------- devices


def require_device_token(user: User, token: Token | None) -> None:
    if token is None or token.kind != "device":
        raise Forbidden(
            "the sync API takes a device token (Authorization: Bearer <token> from "
            "`diiwaan tokens create USER --kind device`)"
        )
    require(user, "forms.fill")


def enroll(
    session: Session,
    user: User,
    token: Token,
    device_id: uuid.UUID,
    *,
    name: str = "",
    app_version: str = "",
    protocol: int = PROTOCOL,
    cursor: int | None = None,
) -> tuple[Device, bool]:
    """Record (or refresh) the device; returns it and whether it is new."""
    device = session.get(Device, device_id)
    created = device is None
    if device is None:
        device = Device(id=device_id, user_id=user.id)
        session.add(device)
    elif device.user_id != user.id:
        raise Conflict(
            f"device {device_id} is enrolled for another user; a tablet that changes hands "
            "starts with a new device id"
        )
    device.token_id = token.id
    device.name = name[:200]
    device.app_version = app_version[:100]
    device.protocol = protocol
    device.last_seen_at = utcnow()
    if cursor is not None:
        device.last_cursor = max(device.last_cursor or 0, cursor)
    session.flush()
    return device, created


def device_for(session: Session, user: User, device_id: uuid.UUID) -> Device:
    """The caller's device, marked as seen now."""
    device = session.get(Device, device_id)
    if device is None or device.user_id != user.id:
        raise NotFound(f"device {device_id} is not enrolled for you; enrol it first (PUT)")
    device.last_seen_at = utcnow()
    return device


def describe_device(device: Device) -> dict[str, Any]:
    return {
        "device_id": str(device.id),
        "user": device.user.username,
        "name": device.name,
        "app_version": device.app_version,
        "protocol": device.protocol,
        "enrolled_at": as_utc(device.enrolled_at).isoformat(),
        "last_seen_at": as_utc(device.last_seen_at).isoformat(),
        "last_cursor": device.last_cursor,
        "districts": sorted(d.code for d in device.user.districts),
    }


# ------------------------------------------------------------------ partial uploads


class PartialUploads:
    """Bytes of items not yet complete, under DIIWAAN_DATA_DIR/uploads/sync/<device>/<sha256>.

    The file's size is the offset the device resumes from. The scheduler's purge job
    deletes files left untouched for `incomplete_upload_days`.
    """

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "uploads" / "sync"

    def path(self, device_id: uuid.UUID, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / str(device_id) / sha256

    def offset(self, device_id: uuid.UUID, sha256: str) -> int:
        try:
            return self.path(device_id, sha256).stat().st_size
        except FileNotFoundError:
            return 0

    def discard(self, device_id: uuid.UUID, sha256: str) -> None:
        self.path(device_id, sha256).unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self, device_id: uuid.UUID, sha256: str) -> Iterator[BinaryIO | None]:
        """The partial file, open for reading and writing and locked against other
        requests (other threads and processes); None when another request holds it."""
        path = self.path(device_id, sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                yield None
                return
            # Whoever held the lock may have finished the item and removed the file.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        handle = os.fdopen(fd, "r+b")
        try:
            yield handle
        finally:
            handle.close()  # releases the lock


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Listing:
    """An item as the device lists it when it opens a session."""

    instance_id: str
    form_id: str
    version: str
    sha256: str
    size: int


@dataclass
class ItemReport:
    """What the server says about one item, as sent to the device."""

    item: SyncItem
    offset: int = 0
    error: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        item = self.item
        body: dict[str, Any] = {
            "index": item.position,
            "instance_id": item.instance_id,
            "state": item.state,
        }
        if item.state == "needed":
            body["offset"] = self.offset
        else:
            body.update(
                outcome=item.outcome,
                status=item.status,
                message=item.message,
                submission_id=str(item.submission_id) if item.submission_id else None,
            )
        if self.error:
            body["error"] = self.error
        return body


@dataclass
class SyncContext:
    """Everything one sync request needs: who, which device, where bytes go, the limits."""

    session: Session
    user: User
    device: Device
    store: BlobStore
    uploads: PartialUploads
    limits: Limits
    reports: dict[int, ItemReport] = field(default_factory=dict)

    # ---- sessions

    def open_session(self, listings: Sequence[Listing]) -> tuple[SyncSession, list[ItemReport]]:
        if len(listings) > self.limits.max_items:
            raise BadRequest(
                f"a session lists at most {self.limits.max_items} items, not {len(listings)}; "
                "open several sessions"
            )
        seen: set[str] = set()
        for position, listing in enumerate(listings):
            if listing.instance_id in seen:
                raise BadRequest(
                    f"items[{position}]: instance {listing.instance_id!r} is listed twice"
                )
            seen.add(listing.instance_id)
        sync_session = SyncSession(device_id=self.device.id)
        self.session.add(sync_session)
        earlier = self._earlier_receipts(listings)
        for position, listing in enumerate(listings):
            item = SyncItem(
                position=position,
                instance_id=listing.instance_id,
                form_id=listing.form_id,
                form_version=listing.version,
                sha256=listing.sha256,
                size=listing.size,
            )
            sync_session.items.append(item)
            receipt = earlier.get((listing.instance_id, listing.sha256))
            if receipt is not None:
                item.state, item.outcome, item.status = "stored", receipt.outcome, receipt.status
                item.message, item.submission_id = receipt.message, receipt.submission_id
                item.decided_at = utcnow()
            elif listing.size > self.limits.max_item_bytes:
                self._decide(
                    item,
                    service.Outcome.TOO_LARGE,
                    f"the item is {listing.size} bytes; the largest accepted is "
                    f"{self.limits.max_item_bytes}",
                )
        self.session.commit()
        return sync_session, self.states(sync_session)

    def _earlier_receipts(self, listings: Sequence[Listing]) -> dict[tuple[str, str], SyncItem]:
        """Items this device already had acknowledged as stored, in any session."""
        found: dict[tuple[str, str], SyncItem] = {}
        instance_ids = [listing.instance_id for listing in listings]
        for start in range(0, len(instance_ids), 500):
            rows = self.session.scalars(
                select(SyncItem)
                .join(SyncItem.session)
                .where(
                    SyncSession.device_id == self.device.id,
                    SyncItem.instance_id.in_(instance_ids[start : start + 500]),
                    SyncItem.state == "stored",
                )
            )
            for row in rows:
                found[(row.instance_id, row.sha256)] = row
        return found

    def get_session(self, session_id: uuid.UUID) -> SyncSession:
        sync_session = self.session.scalar(
            select(SyncSession)
            .where(SyncSession.id == session_id)
            .options(selectinload(SyncSession.items))
        )
        if sync_session is None or sync_session.device_id != self.device.id:
            raise NotFound(f"no upload session {session_id} for this device; open a new one")
        return sync_session

    def states(self, sync_session: SyncSession) -> list[ItemReport]:
        """Every item's state now; an item whose bytes all arrived before the link (or the
        server) went down is finished here."""
        reports = []
        for item in sync_session.items:
            offset, error = 0, None
            if item.state == "needed":
                offset = self.uploads.offset(self.device.id, item.sha256)
                if offset == item.size:
                    error = self._finish_locked(item)
                    offset = self.uploads.offset(self.device.id, item.sha256)
            reports.append(ItemReport(item, offset, error))
        return reports

    def close(self, sync_session: SyncSession) -> dict[str, Any]:
        reports = self.states(sync_session)
        if sync_session.closed_at is None:
            sync_session.closed_at = utcnow()
        outcomes: dict[str, int] = {}
        for item in sync_session.items:
            if item.outcome:
                outcomes[item.outcome] = outcomes.get(item.outcome, 0) + 1
        summary = {
            "session_id": str(sync_session.id),
            "opened_at": as_utc(sync_session.opened_at).isoformat(),
            "closed_at": as_utc(sync_session.closed_at).isoformat(),
            "listed": len(sync_session.items),
            "stored": sum(1 for i in sync_session.items if i.state == "stored"),
            "refused": sum(1 for i in sync_session.items if i.state == "refused"),
            "needed": sum(1 for i in sync_session.items if i.state == "needed"),
            "outcomes": outcomes,
            "bytes_received": sync_session.bytes_received,
            "items": [report.to_dict() for report in reports],
        }
        self.session.commit()
        return summary

    # ---- uploads

    def receive_frames(self, sync_session: SyncSession, body: BodyReader) -> list[ItemReport]:
        """Read `<index> <first>-<last>/<total>\\n` + bytes frames until the body ends."""
        if sync_session.closed_at is not None:
            raise Conflict(f"upload session {sync_session.id} is closed; open a new one")
        by_position = {item.position: item for item in sync_session.items}
        while True:
            # Never wait on the network inside a transaction: on SQLite every transaction
            # holds the database's write lock (BEGIN IMMEDIATE), and a 2G upload is slow.
            self.session.commit()
            line = body.readline(FRAME_HEADER_MAX)
            if not line:
                break
            try:
                frame = parse_frame_header(line)
            except FrameError as error:
                raise BadRequest(
                    f"at byte {body.consumed - len(line)} of the body: {error}"
                ) from None
            item = by_position.get(frame.index)
            if item is None:
                raise BadRequest(
                    f"frame for item {frame.index}: the session lists items 0-"
                    f"{len(by_position) - 1}"
                )
            self.receive_range(sync_session, item, frame, body)
        return list(self.reports.values())

    def receive_range(
        self, sync_session: SyncSession, item: SyncItem, frame: Frame, body: Readable
    ) -> ItemReport:
        """Append one range of one item's pack; finish the item when its last byte came."""
        if sync_session.closed_at is not None:
            raise Conflict(f"upload session {sync_session.id} is closed; open a new one")
        report = self._receive_range(sync_session, item, frame, body)
        self.reports[item.position] = report
        return report

    def _receive_range(
        self, sync_session: SyncSession, item: SyncItem, frame: Frame, body: Readable
    ) -> ItemReport:
        self.session.refresh(item)
        if item.state != "needed":
            _skip(body, frame.length)
            return ItemReport(item)
        if frame.total != item.size:
            _skip(body, frame.length)
            return self._problem(
                item,
                "size_mismatch",
                f"the frame says the pack is {frame.total} bytes; the session listed {item.size}",
            )
        self.session.commit()
        with self.uploads.locked(self.device.id, item.sha256) as partial:
            if partial is None:
                _skip(body, frame.length)
                return self._problem(
                    item,
                    "busy",
                    "an earlier request is still storing this item; ask for the session's "
                    "state in a moment",
                )
            self.session.refresh(item)
            self.session.commit()
            if item.state != "needed":
                _skip(body, frame.length)
                return ItemReport(item)
            have = partial.seek(0, os.SEEK_END)
            if frame.first > have:
                _skip(body, frame.length)
                return self._problem(
                    item,
                    "offset_mismatch",
                    f"the server has bytes 0-{have - 1} of this item; send from byte {have}",
                    offset=have,
                )
            if frame.first < have:
                partial.truncate(frame.first)
                partial.seek(frame.first)
            written = 0
            try:
                while written < frame.length:
                    data = body.read(min(COPY_BYTES, frame.length - written))
                    if not data:
                        break
                    partial.write(data)
                    written += len(data)
            finally:
                # Keep whatever arrived, even when the link dropped mid-frame. An item
                # complete now is decided at once, and the blob store makes it durable.
                partial.flush()
                if frame.first + written < item.size:
                    os.fsync(partial.fileno())
                sync_session.bytes_received = SyncSession.bytes_received + written
                sync_session.last_activity_at = utcnow()
                self.session.commit()
            if written < frame.length:
                raise BadRequest(
                    f"the body ended inside the frame for item {item.position} "
                    f"({written} of {frame.length} bytes)"
                )
            error = self._finish(item, partial) if frame.first + written == item.size else None
        return ItemReport(item, self.uploads.offset(self.device.id, item.sha256), error)

    def _problem(
        self, item: SyncItem, code: str, message: str, *, offset: int | None = None
    ) -> ItemReport:
        if offset is None:
            offset = self.uploads.offset(self.device.id, item.sha256)
        return ItemReport(item, offset, {"code": code, "message": message})

    def _finish_locked(self, item: SyncItem) -> dict[str, str] | None:
        with self.uploads.locked(self.device.id, item.sha256) as partial:
            if partial is not None:
                self.session.refresh(item)
                if item.state == "needed" and partial.seek(0, os.SEEK_END) == item.size:
                    return self._finish(item, partial)
        return None

    def _finish(self, item: SyncItem, partial: BinaryIO) -> dict[str, str] | None:
        """All bytes are here: check them, unpack, and let intake decide (under the lock).
        Returns the problem to report when the bytes are not what the device listed."""
        partial.seek(0)
        digest = hashlib.sha256()
        while chunk := partial.read(COPY_BYTES):
            digest.update(chunk)
        if digest.hexdigest() != item.sha256:
            self.uploads.discard(self.device.id, item.sha256)
            log.warning("sync item %s: sha256 mismatch, starting over", item.instance_id)
            return {
                "code": "checksum_mismatch",
                "message": f"the {item.size} bytes received hash to {digest.hexdigest()}, not "
                f"the listed {item.sha256}; send the item again from byte 0",
            }
        partial.seek(0)
        try:
            decision = self._receive_pack(item, partial)
        except (PackError, DiiwaanError) as error:
            outcome = (
                service.Outcome.TOO_LARGE
                if getattr(error, "status", 400) == 413
                else service.Outcome.MALFORMED
            )
            self.session.rollback()
            self._decide(item, outcome, f"the pack: {error}")
            self.session.commit()
        else:
            if decision is not None and not decision.stored:
                log.warning(
                    "sync item %s refused: %s (%s)",
                    item.instance_id,
                    decision.outcome.value,
                    decision.message,
                )
        self.uploads.discard(self.device.id, item.sha256)
        return None

    def _receive_pack(self, item: SyncItem, partial: BinaryIO) -> service.Decision | None:
        entries = read_pack(partial)
        xml_entry = next(entries)
        incoming = receiving.store_parts(
            self.store,
            xml_entry.reader,
            ((entry.name, entry.reader, None) for entry in entries),
            limit=self.limits.max_item_bytes,
            device_id=str(self.device.id),
        )
        mismatch = _listing_mismatch(item, incoming.xml)
        if mismatch:
            receiving.discard_staged(incoming)
            self._decide(item, service.Outcome.MALFORMED, mismatch)
            self.session.commit()
            return None
        return receiving.receive_and_commit(
            self.session,
            self.user,
            incoming,
            record=lambda decision: self._decide(
                item, decision.outcome, decision.message, decision.submission
            ),
        )

    def _decide(
        self,
        item: SyncItem,
        outcome: service.Outcome,
        message: str,
        submission: Submission | None = None,
    ) -> None:
        item.state = "stored" if outcome in service.STORED else "refused"
        item.outcome = outcome.value
        item.status = service.STATUS[outcome]
        item.message = message
        item.submission_id = submission.id if submission is not None else None
        item.decided_at = utcnow()
        self.session.flush()


def _listing_mismatch(item: SyncItem, xml: bytes) -> str | None:
    """The pack must hold the instance the session listed, or acknowledgements would name
    the wrong submission. Unreadable XML is left to `service.receive` to describe."""
    try:
        envelope = read_envelope(xml)
    except InstanceError:
        return None
    if envelope.instance_id != item.instance_id or envelope.form_id != item.form_id:
        return (
            f"the pack holds instance {envelope.instance_id!r} of form {envelope.form_id!r}; "
            f"the session listed instance {item.instance_id!r} of form {item.form_id!r}"
        )
    return None


def _skip(body: Readable, length: int) -> None:
    while length > 0:
        data = body.read(min(COPY_BYTES, length))
        if not data:
            return
        length -= len(data)


# ----------------------------------------------------------------------- body reading


class BodyReader:
    """A request body read as it arrives, gunzipped when it was sent with
    Content-Encoding: gzip, refusing more than `limit` bytes after decompression (a small
    gzip body can inflate a thousandfold)."""

    def __init__(self, raw: Readable, *, limit: int, gzip: bool = False) -> None:
        import zlib

        self._zlib = zlib
        self._raw = raw
        self._limit = limit
        self._gzip = gzip
        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if gzip else None
        self._buffer = b""
        self._eof = False
        self.consumed = 0  # bytes handed out

    def _fill(self, wanted: int) -> None:
        while len(self._buffer) < wanted and not self._eof:
            if self._inflater is None:
                data = self._raw.read(max(COPY_BYTES, wanted - len(self._buffer)))
                if not data:
                    self._eof = True
                self._buffer += data
            else:
                self._buffer += self._inflate()
            if self.consumed + len(self._buffer) > self._limit:
                from server.errors import PayloadTooLarge

                raise PayloadTooLarge(
                    f"the request body is larger than {self._limit} bytes"
                    + (" once decompressed" if self._gzip else "")
                )

    def _inflate(self) -> bytes:
        inflater = self._inflater
        assert inflater is not None
        if inflater.unconsumed_tail:
            return inflater.decompress(inflater.unconsumed_tail, COPY_BYTES)
        if inflater.eof:
            rest = inflater.unused_data
            if not rest:
                rest = self._raw.read(COPY_BYTES)
                if not rest:
                    self._eof = True
                    return b""
            # Concatenated gzip members are one gzip stream (RFC 1952).
            self._inflater = inflater = self._zlib.decompressobj(wbits=16 + self._zlib.MAX_WBITS)
            return self._decompress(inflater, rest)
        raw = self._raw.read(COPY_BYTES)
        if not raw:
            self._eof = True
            tail = inflater.flush()
            if not inflater.eof:
                raise BadRequest("the gzip body ends before its end marker (truncated)")
            return tail
        return self._decompress(inflater, raw)

    def _decompress(self, inflater: Any, data: bytes) -> bytes:
        try:
            return bytes(inflater.decompress(data, COPY_BYTES))
        except self._zlib.error as error:
            raise BadRequest(
                f"the body is not valid gzip (Content-Encoding: gzip): {error}"
            ) from None

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            self._fill(self._limit + 1)
            size = len(self._buffer)
        else:
            self._fill(size)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        self.consumed += len(data)
        return data

    def readline(self, limit: int) -> bytes:
        """One line up to and including `\\n`, at most `limit` bytes; b"" at the end."""
        while b"\n" not in self._buffer[:limit] and len(self._buffer) < limit and not self._eof:
            self._fill(len(self._buffer) + 1)
        end = self._buffer.find(b"\n", 0, limit)
        size = end + 1 if end >= 0 else min(limit, len(self._buffer))
        return self.read(size)


# -------------------------------------------------------------------------- download


def parse_have(value: str) -> dict[str, str]:
    """`form_id:md5,form_id:md5` → {form_id: md5}."""
    have: dict[str, str] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        form_id, separator, md5 = part.strip().rpartition(":")
        if not separator or not form_id:
            raise BadRequest(f"have: {part[:80]!r} is not '<form_id>:<md5 of the XForm>'")
        have[form_id] = md5.removeprefix("md5:")
    return have


def forms_for(session: Session, user: User, have: dict[str, str], urls: Any) -> dict[str, Any]:
    """The forms the device should hold; the XForm itself only where `have` differs."""
    versions = catalog.fillable_versions(session, user)
    forms = []
    for version in versions:
        form_id = version.form.form_id
        definition = catalog.definition_of(version)
        changed = have.get(form_id) != version.xform_md5
        entry: dict[str, Any] = {
            "form_id": form_id,
            "version": version.version,
            "title": version.title,
            "hash": f"md5:{version.xform_md5}",
            "encryption": version.encryption,
            "public_key": definition.settings.public_key,
            "changed": changed,
            "xform_url": urls.form_xml(form_id, version.version),
            "media": [
                {
                    "filename": media.filename,
                    "hash": f"md5:{media.md5}",
                    "type": media.type,
                    "download_url": urls.form_media(form_id, version.version, media.filename),
                }
                for media in catalog.manifest(session, version, user)
            ],
        }
        if changed:
            entry["xform"] = version.xform_xml.decode("utf-8")
        forms.append(entry)
    offered = {entry["form_id"] for entry in forms}
    return {"forms": forms, "removed": sorted(set(have) - offered)}


def entity_page(
    session: Session, user: User, device: Device, *, since: int, limit: int
) -> dict[str, Any]:
    """One page of the registry's changes in the device's districts after `since`.

    Asking for `since` confirms the device applied everything up to it, which becomes
    the device record's cursor.
    """
    from server.registry import service as registry

    require(user, "registry.read")
    device.last_cursor = max(device.last_cursor or 0, since)
    delta = registry.entity_delta(session, user, since=since, limit=limit)
    return {
        "since": since,
        "cursor": delta.cursor,
        "more": delta.more,
        "changes": [
            {
                "seq": change.seq,
                "list_name": change.list_name,
                "entity_id": change.entity_id,
                "operation": change.operation,
                "version": change.version,
                "label": change.label,
                "properties": change.properties,
                "merged_into": change.merged_into,
            }
            for change in delta.changes
        ],
    }


def submission_status(session: Session, user: User, instance_ids: list[str]) -> dict[str, Any]:
    """Review outcomes of the caller's own submissions, with registry conflicts: an offline
    update based on an old version waits for a supervisor, and the device is told so."""
    from server.registry import service as registry

    if not can(user, "forms.fill"):
        raise Forbidden(f"the {user.role} role does not submit forms")
    rows: dict[str, Submission] = {}
    for start in range(0, len(instance_ids), 500):
        chunk = instance_ids[start : start + 500]
        for submission in session.scalars(
            select(Submission).where(
                Submission.instance_id.in_(chunk), Submission.submitter_id == user.id
            )
        ):
            rows[submission.instance_id] = submission
    conflicts = registry.conflicts_for_submissions(session, sorted(rows)) if rows else {}
    result = []
    for instance_id in instance_ids:
        submission = rows.get(instance_id)
        if submission is None:
            result.append({"instance_id": instance_id, "known": False})
            continue
        result.append(
            {
                "instance_id": instance_id,
                "known": True,
                "received_at": as_utc(submission.received_at).isoformat(),
                "processing_state": submission.processing_state,
                "review_state": submission.review_state,
                "current": submission.current,
                "conflicts": conflicts.get(instance_id, []),
            }
        )
    return {"submissions": result}
