"""Fixtures for intake tests: the household form published in two districts, the people
who post to it, a device that speaks OpenRosa through the test client, and the worker."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from forms.xlsform import convert
from server.accounts import service as accounts
from server.accounts.models import District, User
from server.blobs import BlobStore, blob_store
from server.catalog import service as catalog
from server.catalog.models import FormVersion, ServerKey
from server.config import Settings
from server.db import db
from server.intake import processing
from server.intake.models import Submission, SubmissionAttachment
from sync import crypto
from tests.factories import PASSWORD, DistrictFactory, RegionFactory, UserFactory
from tests.support.submissions import Attachment, encode_multipart
from tests.support.xlsforms import household_registration_xlsx, villages_csv


@pytest.fixture
def settings(app: Flask) -> Settings:
    return app.config["DIIWAAN"]


@pytest.fixture
def store(settings: Settings) -> BlobStore:
    return blob_store(settings.data_dir)


@pytest.fixture
def banadir() -> Any:
    return RegionFactory(code="banadir", name="Banadir")


@pytest.fixture
def hodan(banadir: Any) -> District:
    # Codes match the form's district choices, so processing can place a submission.
    return DistrictFactory(code="hodan", name="Hodan", region=banadir)


@pytest.fixture
def wadajir(banadir: Any) -> District:
    return DistrictFactory(code="wadajir", name="Wadajir", region=banadir)


@functools.cache
def _key_pair() -> RSAPrivateKey:
    return crypto.generate_key_pair()


@functools.cache
def _converted(data: bytes, filename: str, options: tuple[tuple[str, Any], ...]) -> Any:
    return convert(data, filename, **dict(options))


@functools.cache
def household_xlsx() -> bytes:
    """The household form's bytes, made once (openpyxl stamps the time into each file)."""
    return household_registration_xlsx()


@pytest.fixture
def server_key(session: Session, settings: Settings) -> ServerKey:
    """The deployment's managed key, made once per run: RSA key generation and pyxform
    (about a second per form) would otherwise dominate every test's set-up."""
    private = _key_pair()
    key = ServerKey(
        fingerprint=crypto.fingerprint(private),
        public_key=crypto.public_key_base64(private),
        sealed_private_key=crypto.seal_private_key(private, settings.key_encryption_key.encode()),
    )
    session.add(key)
    session.flush()
    return key


@pytest.fixture(autouse=True)
def _convert_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def convert_once(data: bytes, filename: str, **options: Any) -> Any:
        return _converted(data, filename, tuple(sorted(options.items())))

    monkeypatch.setattr(catalog, "convert", convert_once)


def upload(
    session: Session,
    settings: Settings,
    data: bytes,
    districts: Sequence[District],
    *,
    publish: bool = True,
    attachments: Sequence[tuple[str, bytes]] | None = None,
) -> FormVersion:
    result = catalog.upload_form(
        session,
        None,
        data=data,
        filename="household_registration.xlsx",
        store=blob_store(settings.data_dir),
        key_encryption_key=settings.key_encryption_key,
        max_bytes=settings.max_form_bytes,
        publish=publish,
        district_ids=[district.id for district in districts],
        attachments=[("villages.csv", villages_csv())] if attachments is None else attachments,
    )
    return result.version


@pytest.fixture
def household(
    session: Session,
    settings: Settings,
    server_key: ServerKey,
    hodan: District,
    wadajir: District,
) -> FormVersion:
    """The household registration form, published with a managed key, in Hodan and Wadajir."""
    version = upload(session, settings, household_xlsx(), [hodan, wadajir])
    assert version.state == "published" and version.encryption == "managed"
    return version


@pytest.fixture
def enumerator(hodan: District) -> User:
    return UserFactory(districts=[hodan])


class Device:
    """A tablet posting through the test client: Basic auth, or a /key/<token>/ prefix."""

    def __init__(
        self, client: FlaskClient, *, user: User | None = None, url_token: str | None = None
    ) -> None:
        self.client = client
        self.prefix = f"/key/{url_token}" if url_token else ""
        self.headers = {"X-OpenRosa-Version": "1.0"}
        if user is not None and url_token is None:
            credentials = f"{user.username}:{PASSWORD}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()

    def head(self) -> Any:
        return self.client.head(f"{self.prefix}/submission", headers=self.headers)

    def post(
        self,
        xml: bytes,
        attachments: Sequence[Attachment] = (),
        *,
        incomplete: bool = False,
    ) -> Any:
        body, content_type = encode_multipart(xml, attachments, incomplete=incomplete)
        return self.post_body(body, content_type)

    def post_body(self, body: bytes, content_type: str, **headers: str) -> Any:
        return self.client.post(
            f"{self.prefix}/submission",
            data=body,
            content_type=content_type,
            headers={**self.headers, **headers},
        )


@pytest.fixture
def device(client: FlaskClient, enumerator: User) -> Device:
    """The enumerator's tablet, signing in with HTTP Basic."""
    return Device(client, user=enumerator)


@pytest.fixture
def provisioned_device(client: FlaskClient, session: Session, enumerator: User) -> Device:
    """The enumerator's tablet as QR provisioning sets it up: a device token in the URL."""
    _token, secret = accounts.issue_token(session, None, enumerator, kind="device")
    return Device(client, url_token=secret)


@pytest.fixture
def worker(app: Flask, settings: Settings) -> Callable[..., int]:
    """`worker()` drains the queue in-process, as `diiwaan worker --drain` does."""

    def drain(**context: Any) -> int:
        worker_context = processing.WorkerContext(
            database=db,
            store=blob_store(settings.data_dir),
            key_encryption_key=settings.key_encryption_key,
            **context,
        )
        return processing.run(worker_context, drain=True)

    return drain


def count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def counts(session: Session) -> tuple[int, int]:
    """(submission rows, attachment rows)."""
    return count(session, Submission), count(session, SubmissionAttachment)


def blob_files(store: BlobStore) -> set[Path]:
    """Every file in the blob store, half-written ones included."""
    if not store.root.exists():
        return set()
    return {path for path in store.root.rglob("*") if path.is_file()}


def only_submission(session: Session, instance_id: str) -> Submission:
    session.expire_all()
    return session.scalars(select(Submission).where(Submission.instance_id == instance_id)).one()
