"""The reference batch-sync client (docs/sync-client.md), usable from Python and through
the `diiwaan-sync` command: enrol, pull forms and the registry slice, queue encrypted
submissions, push them over a bad link, and report what the server made of them.

    client = SyncClient(Path("~/.diiwaan-sync").expanduser())
    client.enroll("https://diiwaan.example.so", "device-token")
    client.pull()
    client.queue(Path("household.xml"), [Path("dwelling.jpg")])
    summary = client.push()
"""

from __future__ import annotations

import functools
import hashlib
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from forms.instance import InstanceError, read_envelope
from sync import crypto
from sync.pack import frame_header, pack
from sync.store import ClientStore, QueuedItem, Receipt
from sync.transport import (
    SyncRefused,
    Transport,
    TransportError,
    WireCounter,
    check,
)

__all__ = ["Backoff", "PushSummary", "Status", "SyncClient", "SyncError", "SyncRefused"]

PROTOCOL = 1
FRAMES_MEDIA_TYPE = "application/vnd.diiwaan.frames"


class SyncError(Exception):
    """Something the person at the device must fix (not enrolled, form not pulled, ...)."""


@dataclass
class Backoff:
    """Exponential backoff with full jitter: the n-th wait is uniform in
    [0, min(cap, base * 2**n)], so many tablets coming back at once do not retry in step.
    `give_up_after` bounds the failures in a row before push stops (the outbox keeps
    everything for the next push)."""

    base: float = 1.0
    cap: float = 120.0
    give_up_after: int = 12
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep
    failures: int = 0

    def wait(self, reason: str) -> None:
        self.failures += 1
        if self.failures > self.give_up_after:
            raise SyncError(
                f"gave up after {self.give_up_after} failed attempts in a row ({reason}); "
                "everything not acknowledged stays queued"
            )
        self.sleep(self.rng.uniform(0, min(self.cap, self.base * 2 ** (self.failures - 1))))

    def reset(self) -> None:
        self.failures = 0


class Progress:
    """A one-line progress bar on stderr: items acknowledged and bytes sent."""

    def __init__(self, total_items: int, total_bytes: int, stream: TextIO | None) -> None:
        self.total_items = total_items
        self.total_bytes = max(total_bytes, 1)
        self.stream = stream
        self.started = time.monotonic()
        self.done_items = 0
        self.sent = 0

    def update(self, *, acked: int = 0, sent: int = 0, note: str = "") -> None:
        self.done_items += acked
        self.sent += sent
        if self.stream is None:
            return
        fraction = min(1.0, self.sent / self.total_bytes)
        filled = int(fraction * 24)
        rate = self.sent / max(time.monotonic() - self.started, 1e-6) / 1024
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (24 - filled)}] {self.done_items}/{self.total_items} "
            f"items  {self.sent / 1024:.0f}/{self.total_bytes / 1024:.0f} KB  {rate:.1f} KB/s"
            f"{'  ' + note if note else ''}\x1b[K"
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class PushSummary:
    listed: int = 0
    acknowledged: int = 0
    refused: int = 0
    remaining: int = 0
    sessions: int = 0
    payload_bytes: int = 0
    frame_bytes_sent: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    refusals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def resent_bytes(self) -> int:
        """Payload bytes sent more than once (after drops), a measure of wasted airtime."""
        return max(0, self.frame_bytes_sent - self.payload_bytes)


@dataclass
class Status:
    queued: list[QueuedItem]
    refused: list[QueuedItem]
    acknowledged: list[Receipt]
    cursor: int
    entities: int
    forms: int
    checked_online: bool


class SyncClient:
    def __init__(
        self,
        home: Path,
        *,
        backoff: Backoff | None = None,
        progress: TextIO | None = None,
        timeout: float = 60.0,
        chunk_bytes: int | None = None,
    ) -> None:
        self.home = Path(home)
        self.store = ClientStore(self.home / "client.db")
        self.backoff = backoff or Backoff()
        self.progress_stream = progress
        self.timeout = timeout
        self.chunk_bytes = chunk_bytes
        self.wire = WireCounter()
        self._transport: Transport | None = None

    def disconnect(self) -> None:
        """Drop the connection; the next request reconnects with the stored settings."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def close(self) -> None:
        self.disconnect()
        self.store.close()

    # ---- enrolment

    @property
    def device_id(self) -> str:
        device_id = self.store.get("device_id")
        if not device_id:
            raise SyncError("this device is not enrolled; run `diiwaan-sync enroll URL TOKEN`")
        return device_id

    def transport(self) -> Transport:
        if self._transport is None:
            url, token = self.store.get("server_url"), self.store.get("token")
            if not url or not token:
                raise SyncError("this device is not enrolled; run `diiwaan-sync enroll URL TOKEN`")
            self._transport = Transport(url, token, timeout=self.timeout, counter=self.wire)
        return self._transport

    def enroll(self, url: str, token: str, *, name: str = "") -> dict[str, Any]:
        """Register this device with the server (its id is made here, once, and kept)."""
        device_id = self.store.get("device_id") or str(uuid.uuid4())
        self.disconnect()
        self._transport = Transport(url, token, timeout=self.timeout, counter=self.wire)
        answer = self._retrying(
            lambda: self.transport().call(
                "PUT",
                f"/api/v1/sync/devices/{device_id}",
                json_body={"name": name, "app_version": _app_version(), "protocol": PROTOCOL},
            )
        )
        self.store.put(
            server_url=url.rstrip("/"), token=token, device_id=device_id, device_name=name
        )
        return dict(answer["device"])

    def hello(self) -> dict[str, Any]:
        """Tell the server who we are and what we have; learn its limits."""
        return dict(
            self._retrying(
                lambda: self.transport().call(
                    "PUT",
                    f"/api/v1/sync/devices/{self.device_id}",
                    json_body={
                        "app_version": _app_version(),
                        "protocol": PROTOCOL,
                        "cursor": self.store.cursor,
                        "name": self.store.get("device_name", "") or "",
                    },
                )
            )
        )

    # ---- pull

    def pull(self) -> dict[str, int]:
        """Forms (XForms, public keys, static media), the registry slice since the last
        pull, and the review outcomes of acknowledged submissions."""
        transport = self.transport()
        device = f"/api/v1/sync/devices/{self.device_id}"
        have = self.store.form_hashes()
        listing = self._retrying(
            lambda: transport.call(
                "GET",
                device + "/forms",
                query={"have": ",".join(f"{k}:{v}" for k, v in sorted(have.items()))},
            )
        )
        changed_forms = 0
        for entry in listing["forms"]:
            media = self._pull_media(entry)
            if entry.get("changed"):
                changed_forms += 1
                self.store.save_form(entry, entry["xform"].encode("utf-8"), media)
            else:
                self.store.save_form(entry, None, media)
        self.store.keep_only_forms(
            [entry["form_id"] for entry in listing["forms"]],
            {entry["form_id"]: entry["version"] for entry in listing["forms"]},
        )
        changes = 0
        while True:
            page = self._retrying(
                lambda: transport.call(
                    "GET",
                    device + "/entities",
                    query={"since": self.store.cursor, "limit": 1000},
                )
            )
            self.store.apply_changes(page["changes"], page["cursor"])
            changes += len(page["changes"])
            if not page["more"]:
                break
        self.hello()  # confirms the cursor we now hold
        self.check_review()
        return {
            "forms": len(listing["forms"]),
            "forms_changed": changed_forms,
            "forms_removed": len(listing["removed"]),
            "entity_changes": changes,
            "cursor": self.store.cursor,
        }

    def _pull_media(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """Static form files (not entity lists: the registry slice replaces those)."""
        folder = self.home / "forms" / entry["form_id"] / entry["version"]
        kept = []
        for media in entry.get("media", []):
            if media.get("type"):
                continue
            name = str(media["filename"])
            if not name or "/" in name or "\\" in name or name in (".", ".."):
                raise SyncError(f"the server named a form file {name[:80]!r}; refusing it")
            target = folder / name
            expected = media["hash"].removeprefix("md5:")
            if not (target.exists() and _md5(target.read_bytes()) == expected):
                data = self._retrying(
                    functools.partial(self.transport().download, media["download_url"])
                )
                if _md5(data) != expected:
                    raise SyncError(f"{media['filename']} arrived damaged (md5 mismatch)")
                folder.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            kept.append({"filename": media["filename"], "hash": media["hash"]})
        return kept

    def check_review(self) -> int:
        """Ask the server what became of acknowledged submissions (review, conflicts)."""
        instance_ids = [receipt.instance_id for receipt in self.store.receipts()]
        for start in range(0, len(instance_ids), 1000):
            answer = self._retrying(
                functools.partial(
                    self.transport().call,
                    "POST",
                    f"/api/v1/sync/devices/{self.device_id}/status",
                    json_body={"instance_ids": instance_ids[start : start + 1000]},
                    compress=True,
                )
            )
            self.store.record_review(answer["submissions"])
        return len(instance_ids)

    # ---- queue

    def queue(
        self, xml_path: Path, attachments: Sequence[Path] = (), *, remove_originals: bool = False
    ) -> QueuedItem:
        """Encrypt a finished submission with its form's public key and put it in the
        outbox; only the ciphertext is kept."""
        xml = Path(xml_path).read_bytes()
        try:
            envelope = read_envelope(xml)
        except InstanceError as error:
            raise SyncError(f"{xml_path}: {error}") from None
        if envelope.encrypted:
            raise SyncError(f"{xml_path} is already encrypted; queue the plain submission")
        version = envelope.version or ""
        form = self.store.form(envelope.form_id, version)
        if form is None:
            raise SyncError(
                f"form {envelope.form_id!r} version {version!r} is not on this device; "
                "run `diiwaan-sync pull`"
            )
        media = [(Path(path).name, Path(path).read_bytes()) for path in attachments]
        if form.public_key:
            encrypted = crypto.encrypt_submission(
                xml=xml,
                media=media,
                instance_id=envelope.instance_id,
                form_id=envelope.form_id,
                form_version=envelope.version,
                public_key=crypto.load_public_key(form.public_key),
            )
            body = pack(encrypted.manifest_xml, encrypted.files)
        else:
            body = pack(xml, media)
        try:
            self.store.enqueue(
                instance_id=envelope.instance_id,
                form_id=envelope.form_id,
                version=version,
                sha256=hashlib.sha256(body).hexdigest(),
                pack=body,
            )
        except ValueError as error:
            raise SyncError(str(error)) from None
        if remove_originals:
            for path in [Path(xml_path), *map(Path, attachments)]:
                path.unlink()
        return next(i for i in self.store.queued() if i.instance_id == envelope.instance_id)

    # ---- push

    def push(self, *, retry_refused: bool = False) -> PushSummary:
        """Send the outbox: resumable, one session per `max_items`, frames of up to
        `chunk_bytes`; an item leaves the outbox only when the server says it is stored."""
        self.transport()  # not enrolled: say so, even with an empty outbox
        if retry_refused:
            self.store.requeue_refused()
        summary = PushSummary()
        items = self.store.queued()
        if not items:
            return summary
        limits = self.hello()["limits"]
        chunk = min(self.chunk_bytes or limits["chunk_bytes"], limits["max_request_bytes"])
        progress = Progress(len(items), sum(i.size for i in items), self.progress_stream)
        summary.listed = len(items)
        summary.payload_bytes = sum(i.size for i in items)
        try:
            for start in range(0, len(items), limits["max_items"]):
                self._push_batch(
                    items[start : start + limits["max_items"]], chunk, summary, progress
                )
        finally:
            progress.finish()
            summary.remaining = len(self.store.queued())
        return summary

    def _push_batch(
        self, items: list[QueuedItem], chunk: int, summary: PushSummary, progress: Progress
    ) -> None:
        session_id, states = self._open_session(items, summary)
        pending: dict[int, QueuedItem] = dict(enumerate(items))
        offsets: dict[int, int] = {}
        mismatches: dict[str, int] = {}
        busy: set[int] = set()
        while True:
            self._apply(states, pending, offsets, summary, progress, mismatches, busy)
            if not pending:
                break
            sendable = [
                index
                for index in sorted(pending)
                if index not in busy and offsets.get(index, 0) < pending[index].size
            ]
            if not sendable:
                # What is left is still being stored by a request the link dropped on.
                self.backoff.wait("the server is still storing earlier uploads")
                found = self._session_states(session_id)
                if found is None:
                    session_id, states, pending, offsets = self._reopen(pending, summary)
                else:
                    states = found
                busy.clear()
                continue
            body, sent = self._frames(sendable, pending, offsets, chunk)
            try:
                response = self.transport().request(
                    "POST",
                    f"/api/v1/sync/sessions/{session_id}/frames",
                    body=body,
                    content_type=FRAMES_MEDIA_TYPE,
                    compress=True,
                )
            except TransportError as error:
                summary.frame_bytes_sent += sent
                progress.update(sent=sent, note="link dropped; resuming")
                self.backoff.wait(str(error))
                found = self._session_states(session_id)
                if found is None:
                    session_id, states, pending, offsets = self._reopen(pending, summary)
                else:
                    states = found
                continue
            summary.frame_bytes_sent += sent
            progress.update(sent=sent)
            if response.status == 404:  # the session is gone: list what is left again
                session_id, states, pending, offsets = self._reopen(pending, summary)
                continue
            try:
                states = list(check(response)["items"])
            except TransportError as error:
                self.backoff.wait(str(error))
                states = self._session_states(session_id) or []
                continue
            if states and all(state.get("error") for state in states):
                # Nothing moved (e.g. an older request still holds the item): wait a little.
                self.backoff.wait(states[0]["error"]["message"])
            else:
                self.backoff.reset()
        self._retrying(
            lambda: self.transport().call("POST", f"/api/v1/sync/sessions/{session_id}/close")
        )

    def _reopen(
        self, pending: dict[int, QueuedItem], summary: PushSummary
    ) -> tuple[str, list[dict[str, Any]], dict[int, QueuedItem], dict[int, int]]:
        remaining = [pending[index] for index in sorted(pending)]
        session_id, states = self._open_session(remaining, summary)
        return session_id, states, dict(enumerate(remaining)), {}

    def _open_session(
        self, items: list[QueuedItem], summary: PushSummary
    ) -> tuple[str, list[dict[str, Any]]]:
        listing = [
            {
                "instance_id": item.instance_id,
                "form_id": item.form_id,
                "version": item.version,
                "sha256": item.sha256,
                "size": item.size,
            }
            for item in items
        ]
        answer = self._retrying(
            lambda: self.transport().call(
                "POST",
                f"/api/v1/sync/devices/{self.device_id}/sessions",
                json_body={"items": listing},
                compress=True,
            )
        )
        summary.sessions += 1
        return answer["session_id"], answer["items"]

    def _session_states(self, session_id: str) -> list[dict[str, Any]] | None:
        while True:
            try:
                response = self.transport().request("GET", f"/api/v1/sync/sessions/{session_id}")
                if response.status == 404:
                    return None
                answer = check(response)
                self.backoff.reset()
                return list(answer["items"])
            except TransportError as error:
                self.backoff.wait(str(error))

    def _apply(
        self,
        states: list[dict[str, Any]],
        pending: dict[int, QueuedItem],
        offsets: dict[int, int],
        summary: PushSummary,
        progress: Progress,
        mismatches: dict[str, int],
        busy: set[int],
    ) -> None:
        stored = []
        for state in states:
            index = state["index"]
            item = pending.get(index)
            if item is None or item.instance_id != state["instance_id"]:
                continue
            outcome = state.get("outcome") or state["state"]
            if state["state"] == "stored":
                stored.append(state)
                del pending[index]
                offsets.pop(index, None)
            elif state["state"] == "refused":
                self.store.refuse(item.instance_id, state)
                summary.refused += 1
                summary.refusals.append(state)
                summary.outcomes[outcome] = summary.outcomes.get(outcome, 0) + 1
                del pending[index]
                offsets.pop(index, None)
            else:
                offsets[index] = int(state.get("offset") or 0)
                code = (state.get("error") or {}).get("code")
                if code == "busy":
                    busy.add(index)
                if code == "checksum_mismatch":
                    mismatches[item.instance_id] = mismatches.get(item.instance_id, 0) + 1
                    if mismatches[item.instance_id] >= 3:
                        raise SyncError(
                            f"{item.instance_id}: the server received different bytes than "
                            "were queued, three times; the outbox copy may be damaged"
                        )
        acknowledged = set(self.store.acknowledge(stored))
        for state in stored:
            if state["instance_id"] in acknowledged:
                outcome = state.get("outcome") or "stored"
                summary.acknowledged += 1
                summary.outcomes[outcome] = summary.outcomes.get(outcome, 0) + 1
        progress.update(acked=len(acknowledged))

    def _frames(
        self,
        needed: list[int],
        pending: dict[int, QueuedItem],
        offsets: dict[int, int],
        chunk: int,
    ) -> tuple[bytes, int]:
        """Frames for as many needed items as fit in `chunk` payload bytes (at least one
        frame, so an item larger than a chunk goes a chunk at a time)."""
        parts: list[bytes] = []
        budget = chunk
        sent = 0
        for index in needed:
            item = pending[index]
            first = offsets.get(index, 0)
            length = min(item.size - first, budget)
            if length <= 0:
                break
            parts.append(frame_header(index, first, length, item.size))
            parts.append(self.store.read_pack(item.instance_id, first, length))
            budget -= length
            sent += length
            if budget <= 0:
                break
        return b"".join(parts), sent

    # ---- status

    def status(self, *, online: bool = True) -> Status:
        checked = False
        if online and self.store.receipts():
            try:
                self.check_review()
                checked = True
            except (TransportError, SyncError):
                checked = False
        return Status(
            queued=self.store.queued(),
            refused=self.store.refused(),
            acknowledged=self.store.receipts(),
            cursor=self.store.cursor,
            entities=len(self.store.entities()),
            forms=len(self.store.forms()),
            checked_online=checked,
        )

    # ---- plumbing

    def _retrying(self, attempt: Callable[[], Any]) -> Any:
        """Run one request until the link lets it through (refusals are not retried)."""
        while True:
            try:
                result = attempt()
            except TransportError as error:
                self.backoff.wait(str(error))
                continue
            self.backoff.reset()
            return result


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _app_version() -> str:
    try:
        from importlib.metadata import version

        return f"diiwaan-sync {version('diiwaan')}"
    except Exception:  # noqa: BLE001 (an uninstalled checkout still syncs)
        return "diiwaan-sync"
