"""A device speaking the batch sync API through Flask's test client, and submissions
packed the way the sync client packs them (docs/sync-protocol.md)."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient

from forms.instance import read_envelope
from sync import crypto
from sync.pack import frame_header, pack
from tests.support.submissions import encrypted_household
from tests.support.xlsforms import HOUSEHOLD_FORM_ID, HOUSEHOLD_FORM_VERSION

API = "/api/v1/sync"
FRAMES = "application/vnd.diiwaan.frames"


@dataclass(frozen=True)
class Item:
    """One queued submission: its listing and the pack that carries it."""

    instance_id: str
    form_id: str
    version: str
    body: bytes
    plain_xml: bytes = b""  # the submission before encryption, when the test needs it

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def size(self) -> int:
        return len(self.body)

    def listing(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "form_id": self.form_id,
            "version": self.version,
            "sha256": self.sha256,
            "size": self.size,
        }


def household_item(public_key: str, **answers: Any) -> Item:
    """An encrypted household submission (manifest, photo and XML `.enc` files) as a pack."""
    household = encrypted_household(public_key, **answers)
    return Item(
        household.instance_id,
        str(answers.get("form_id", HOUSEHOLD_FORM_ID)),
        str(answers.get("version", HOUSEHOLD_FORM_VERSION)),
        pack(household.manifest, household.encrypted.files),
        household.plain_xml,
    )


def frames(*parts: tuple[int, Item, int, int]) -> bytes:
    """(index, item, first byte, length) → the frames body."""
    return b"".join(
        frame_header(index, first, length, item.size) + item.body[first : first + length]
        for index, item, first, length in parts
    )


class SyncDevice:
    def __init__(self, client: FlaskClient, secret: str, device_id: str | None = None) -> None:
        self.client = client
        self.device_id = device_id or str(uuid.uuid4())
        self.headers = {"Authorization": f"Bearer {secret}"}

    @property
    def path(self) -> str:
        return f"{API}/devices/{self.device_id}"

    def _json(self, method: str, url: str, body: Any, *, compress: bool = False) -> Any:
        data = json.dumps(body).encode()
        headers = dict(self.headers)
        if compress:
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        return self.client.open(
            url, method=method, data=data, content_type="application/json", headers=headers
        )

    def enroll(self, **body: Any) -> Any:
        return self._json("PUT", self.path, {"app_version": "test 1", **body})

    def open(self, items: Sequence[Item], *, compress: bool = False) -> Any:
        return self._json(
            "POST",
            f"{self.path}/sessions",
            {"items": [item.listing() for item in items]},
            compress=compress,
        )

    def open_ok(self, items: Sequence[Item]) -> tuple[str, list[dict[str, Any]]]:
        response = self.open(items)
        assert response.status_code == 201, response.get_json()
        body = response.get_json()
        return body["session_id"], body["items"]

    def send(self, session_id: str, body: bytes, **headers: str) -> Any:
        return self.client.post(
            f"{API}/sessions/{session_id}/frames",
            data=body,
            content_type=headers.pop("content_type", FRAMES),
            headers={**self.headers, **headers},
        )

    def send_ok(self, session_id: str, body: bytes) -> dict[int, dict[str, Any]]:
        response = self.send(session_id, body)
        assert response.status_code == 200, response.get_json()
        return {entry["index"]: entry for entry in response.get_json()["items"]}

    def put_range(self, session_id: str, index: int, data: bytes, content_range: str) -> Any:
        return self.client.put(
            f"{API}/sessions/{session_id}/items/{index}",
            data=data,
            content_type="application/vnd.diiwaan.pack",
            headers={**self.headers, "Content-Range": content_range},
        )

    def state(self, session_id: str) -> Any:
        return self.client.get(f"{API}/sessions/{session_id}", headers=self.headers)

    def close(self, session_id: str) -> Any:
        return self.client.post(f"{API}/sessions/{session_id}/close", headers=self.headers)

    def get(self, suffix: str, **query: Any) -> Any:
        return self.client.get(f"{self.path}{suffix}", query_string=query, headers=self.headers)

    def status(self, instance_ids: Sequence[str]) -> Any:
        return self._json("POST", f"{self.path}/status", {"instance_ids": list(instance_ids)})


def item_from_xml(public_key: str, xml: bytes) -> Item:
    """Any plain submission XML, encrypted for `public_key` (no media) and packed."""
    envelope = read_envelope(xml)
    encrypted = crypto.encrypt_submission(
        xml=xml,
        media=[],
        instance_id=envelope.instance_id,
        form_id=envelope.form_id,
        form_version=envelope.version,
        public_key=crypto.load_public_key(public_key),
    )
    return Item(
        envelope.instance_id,
        envelope.form_id,
        envelope.version or "",
        pack(encrypted.manifest_xml, encrypted.files),
        xml,
    )
