"""The sync client's state on the device, in one SQLite file: enrolment, forms and their
public keys, the registry slice, and the outbox.

The outbox holds each queued submission only as its encrypted pack. An item leaves the
outbox in the same transaction that records the server's acknowledgement that it is
durably stored, and never otherwise; what is kept afterwards is a receipt (instance ID,
outcome, review state) for `status`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["ClientStore", "Form", "QueuedItem", "Receipt"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS setting (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS form (
    form_id TEXT NOT NULL, version TEXT NOT NULL, title TEXT NOT NULL, hash TEXT NOT NULL,
    encryption TEXT NOT NULL, public_key TEXT, xform BLOB NOT NULL, media TEXT NOT NULL,
    pulled_at TEXT NOT NULL, PRIMARY KEY (form_id, version));
CREATE TABLE IF NOT EXISTS entity (
    list_name TEXT NOT NULL, entity_id TEXT NOT NULL, version INTEGER NOT NULL,
    label TEXT NOT NULL, properties TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (list_name, entity_id));
CREATE TABLE IF NOT EXISTS entity_redirect (
    entity_id TEXT PRIMARY KEY, merged_into TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    instance_id TEXT PRIMARY KEY, form_id TEXT NOT NULL, version TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, pack BLOB NOT NULL,
    queued_at TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'queued',
    outcome TEXT, status INTEGER, message TEXT, attempts INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS receipt (
    instance_id TEXT PRIMARY KEY, form_id TEXT NOT NULL, version TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, outcome TEXT NOT NULL, status INTEGER NOT NULL,
    submission_id TEXT, queued_at TEXT NOT NULL, acked_at TEXT NOT NULL,
    review_state TEXT, processing_state TEXT, conflicts TEXT NOT NULL DEFAULT '[]',
    checked_at TEXT);
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Form:
    form_id: str
    version: str
    title: str
    hash: str
    encryption: str
    public_key: str | None
    media: list[dict[str, Any]]


@dataclass(frozen=True)
class QueuedItem:
    instance_id: str
    form_id: str
    version: str
    sha256: str
    size: int
    queued_at: str
    state: str  # queued | refused
    outcome: str | None
    status: int | None
    message: str | None
    attempts: int


@dataclass(frozen=True)
class Receipt:
    instance_id: str
    form_id: str
    version: str
    outcome: str
    status: int
    submission_id: str | None
    queued_at: str
    acked_at: str
    review_state: str | None
    processing_state: str | None
    conflicts: list[str]


class ClientStore:
    """All state of one enrolled device. Safe to open from several processes (SQLite
    locking); every change is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        if new:
            os.chmod(self.path, 0o600)  # it holds the device token
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- settings

    def get(self, name: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM setting WHERE name = ?", (name,)).fetchone()
        return row[0] if row else default

    def put(self, **values: str) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO setting (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    # ---- forms

    def save_form(
        self, entry: dict[str, Any], xform: bytes | None, media: list[dict[str, Any]]
    ) -> None:
        with self.transaction() as db:
            if xform is None:
                db.execute(
                    "UPDATE form SET media = ?, pulled_at = ? WHERE form_id = ? AND version = ?",
                    (json.dumps(media), now(), entry["form_id"], entry["version"]),
                )
                return
            db.execute(
                "INSERT OR REPLACE INTO form (form_id, version, title, hash, encryption, "
                "public_key, xform, media, pulled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry["form_id"],
                    entry["version"],
                    entry["title"],
                    entry["hash"],
                    entry["encryption"],
                    entry.get("public_key"),
                    xform,
                    json.dumps(media),
                    now(),
                ),
            )

    def keep_only_forms(self, form_ids: Sequence[str], newest: dict[str, str]) -> None:
        """Drop forms the server no longer offers, and older versions of the rest once
        nothing queued still needs them."""
        with self.transaction() as db:
            for form_id, version in db.execute("SELECT form_id, version FROM form").fetchall():
                if form_id in form_ids and newest.get(form_id) == version:
                    continue
                queued = db.execute(
                    "SELECT 1 FROM outbox WHERE form_id = ? AND version = ?", (form_id, version)
                ).fetchone()
                if not queued:
                    db.execute(
                        "DELETE FROM form WHERE form_id = ? AND version = ?", (form_id, version)
                    )

    def forms(self) -> list[Form]:
        rows = self._db.execute(
            "SELECT form_id, version, title, hash, encryption, public_key, media FROM form "
            "ORDER BY form_id, version"
        ).fetchall()
        return [
            Form(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6])) for row in rows
        ]

    def form(self, form_id: str, version: str) -> Form | None:
        return next((f for f in self.forms() if (f.form_id, f.version) == (form_id, version)), None)

    def xform(self, form_id: str, version: str) -> bytes | None:
        row = self._db.execute(
            "SELECT xform FROM form WHERE form_id = ? AND version = ?", (form_id, version)
        ).fetchone()
        return bytes(row[0]) if row else None

    def form_hashes(self) -> dict[str, str]:
        rows = self._db.execute("SELECT form_id, hash FROM form").fetchall()
        return {form_id: hash_.removeprefix("md5:") for form_id, hash_ in rows}

    # ---- registry slice

    @property
    def cursor(self) -> int:
        return int(self.get("entity_cursor", "0") or 0)

    def apply_changes(self, changes: Sequence[dict[str, Any]], cursor: int) -> None:
        """One page of registry changes, and the cursor after it, in one transaction."""
        with self.transaction() as db:
            for change in changes:
                key = (change["list_name"], change["entity_id"])
                if change["operation"] == "upsert":
                    db.execute(
                        "INSERT OR REPLACE INTO entity (list_name, entity_id, version, label, "
                        "properties, seq) VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            *key,
                            change["version"],
                            change["label"],
                            json.dumps(change["properties"], sort_keys=True),
                            change["seq"],
                        ),
                    )
                    db.execute("DELETE FROM entity_redirect WHERE entity_id = ?", (key[1],))
                else:
                    db.execute("DELETE FROM entity WHERE list_name = ? AND entity_id = ?", key)
                    if change["operation"] == "merge" and change.get("merged_into"):
                        db.execute(
                            "INSERT OR REPLACE INTO entity_redirect (entity_id, merged_into, seq) "
                            "VALUES (?, ?, ?)",
                            (key[1], change["merged_into"], change["seq"]),
                        )
            db.execute(
                "INSERT INTO setting (name, value) VALUES ('entity_cursor', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(cursor),),
            )

    def entities(self, list_name: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT list_name, entity_id, version, label, properties FROM entity"
        args: tuple[str, ...] = ()
        if list_name:
            query, args = query + " WHERE list_name = ?", (list_name,)
        return [
            {
                "list_name": row[0],
                "entity_id": row[1],
                "version": row[2],
                "label": row[3],
                "properties": json.loads(row[4]),
            }
            for row in self._db.execute(query + " ORDER BY list_name, label", args)
        ]

    def resolve(self, entity_id: str) -> str:
        """Follow merge redirects to the surviving entity."""
        seen = set()
        while entity_id not in seen:
            seen.add(entity_id)
            row = self._db.execute(
                "SELECT merged_into FROM entity_redirect WHERE entity_id = ?", (entity_id,)
            ).fetchone()
            if row is None:
                break
            entity_id = row[0]
        return entity_id

    # ---- outbox

    def enqueue(
        self, *, instance_id: str, form_id: str, version: str, sha256: str, pack: bytes
    ) -> None:
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM receipt WHERE instance_id = ?", (instance_id,)).fetchone():
                raise ValueError(f"{instance_id} was already acknowledged by the server")
            if db.execute("SELECT 1 FROM outbox WHERE instance_id = ?", (instance_id,)).fetchone():
                raise ValueError(f"{instance_id} is already queued")
            db.execute(
                "INSERT INTO outbox (instance_id, form_id, version, sha256, size, pack, "
                "queued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (instance_id, form_id, version, sha256, len(pack), pack, now()),
            )

    def queued(self, *, include_refused: bool = False) -> list[QueuedItem]:
        rows = self._db.execute(
            "SELECT instance_id, form_id, version, sha256, size, queued_at, state, outcome, "
            "status, message, attempts FROM outbox ORDER BY queued_at, rowid"
        ).fetchall()
        wanted = ("queued", "refused") if include_refused else ("queued",)
        return [QueuedItem(*row) for row in rows if row[6] in wanted]

    def refused(self) -> list[QueuedItem]:
        return [item for item in self.queued(include_refused=True) if item.state == "refused"]

    def read_pack(self, instance_id: str, offset: int, length: int) -> bytes:
        row = self._db.execute(
            "SELECT substr(pack, ?, ?) FROM outbox WHERE instance_id = ?",
            (offset + 1, length, instance_id),
        ).fetchone()
        if row is None:
            raise KeyError(instance_id)
        return bytes(row[0])

    def acknowledge(self, answers: Sequence[dict[str, Any]]) -> list[str]:
        """The server says these items are durably stored (`instance_id`, `outcome`,
        `status`, `submission_id` each): move them from the outbox to the receipts, in one
        transaction. Returns the instance IDs acknowledged now; one acknowledged before is
        left alone, so a repeated answer changes nothing."""
        done = []
        with self.transaction() as db:
            for answer in answers:
                instance_id = answer["instance_id"]
                row = db.execute(
                    "SELECT form_id, version, sha256, size, queued_at FROM outbox "
                    "WHERE instance_id = ?",
                    (instance_id,),
                ).fetchone()
                if row is None:
                    continue
                db.execute(
                    "INSERT INTO receipt (instance_id, form_id, version, sha256, size, outcome, "
                    "status, submission_id, queued_at, acked_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        instance_id,
                        *row[:4],
                        answer.get("outcome") or "stored",
                        int(answer.get("status") or 0),
                        answer.get("submission_id"),
                        row[4],
                        now(),
                    ),
                )
                db.execute("DELETE FROM outbox WHERE instance_id = ?", (instance_id,))
                done.append(instance_id)
        return done

    def refuse(self, instance_id: str, answer: dict[str, Any]) -> None:
        """The server decided not to store it (conflict, unknown form, ...): keep it, and
        stop sending it until asked to (`push --retry-refused`)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET state = 'refused', outcome = ?, status = ?, message = ?, "
                "attempts = attempts + 1 WHERE instance_id = ?",
                (answer.get("outcome"), answer.get("status"), answer.get("message"), instance_id),
            )

    def requeue_refused(self) -> None:
        with self.transaction() as db:
            db.execute("UPDATE outbox SET state = 'queued' WHERE state = 'refused'")

    def receipts(self) -> list[Receipt]:
        rows = self._db.execute(
            "SELECT instance_id, form_id, version, outcome, status, submission_id, queued_at, "
            "acked_at, review_state, processing_state, conflicts FROM receipt "
            "ORDER BY acked_at, instance_id"
        ).fetchall()
        return [
            Receipt(
                instance_id=row[0],
                form_id=row[1],
                version=row[2],
                outcome=row[3],
                status=row[4],
                submission_id=row[5],
                queued_at=row[6],
                acked_at=row[7],
                review_state=row[8],
                processing_state=row[9],
                conflicts=json.loads(row[10]),
            )
            for row in rows
        ]

    def record_review(self, submissions: Sequence[dict[str, Any]]) -> None:
        with self.transaction() as db:
            for entry in submissions:
                if not entry.get("known"):
                    continue
                db.execute(
                    "UPDATE receipt SET review_state = ?, processing_state = ?, conflicts = ?, "
                    "checked_at = ? WHERE instance_id = ?",
                    (
                        entry.get("review_state"),
                        entry.get("processing_state"),
                        json.dumps(entry.get("conflicts") or []),
                        now(),
                        entry["instance_id"],
                    ),
                )
