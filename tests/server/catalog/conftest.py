"""Fixtures for questionnaire tests: uploading through the service, and a registry-like
provider of per-device attachments."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from server.accounts.models import User
from server.blobs import BlobStore, blob_store
from server.catalog import service
from server.catalog.models import FormVersion
from tests.server.catalog.helpers import md5

Upload = Callable[..., service.UploadResult]


@pytest.fixture
def store(app: Flask) -> BlobStore:
    return blob_store(app.config["DIIWAAN"].data_dir)


@pytest.fixture
def kek(app: Flask) -> str:
    return str(app.config["DIIWAAN"].key_encryption_key)


@pytest.fixture
def upload(app: Flask, session: Session, store: BlobStore, kek: str) -> Upload:
    """`upload(xlsx_bytes, actor=None, **options)`: service.upload_form with the app's
    blob store, key-encryption key and size limit, in the test's session."""

    def do(data: bytes, filename: str = "form.xlsx", *, actor: Any = None, **options: Any):
        return service.upload_form(
            session,
            actor,
            data=data,
            filename=filename,
            store=store,
            key_encryption_key=kek,
            max_bytes=app.config["DIIWAAN"].max_form_bytes,
            **options,
        )

    return do


class HouseholdListProvider:
    """What the registry will do, in miniature: a households.csv per device, for forms
    that declare the `households` entity list. Tests change `rows` and `present`."""

    filename = "households.csv"

    def __init__(self) -> None:
        self.rows = [("8f1c6a52-0c1e-4a53-9b7e-2f4a1f3c9d10", "Faadumo Cali Xasan", "1")]
        self.present = {"8f1c6a52-0c1e-4a53-9b7e-2f4a1f3c9d10"}
        self.renders = 0
        self.seen_users: list[User] = []

    def names(self, version: FormVersion) -> set[str]:
        lists = [d.get("list_name") for d in version.definition.get("entity_declarations", [])]
        return {self.filename} if "households" in lists else set()

    def content(self) -> bytes:
        lines = ["name,label,__version"] + [",".join(row) for row in self.rows]
        return ("\n".join(lines) + "\n").encode()

    def files(
        self, session: Session, version: FormVersion, user: User
    ) -> list[service.DynamicAttachment]:
        if self.filename not in self.names(version):
            return []
        self.seen_users.append(user)

        def render() -> bytes:
            self.renders += 1
            return self.content()

        return [
            service.DynamicAttachment(
                filename=self.filename,
                md5=md5(self.content()),
                render=render,
                type="entityList",
                integrity=True,
            )
        ]

    def presence(
        self, session: Session, version: FormVersion, user: User, filename: str, ids: list[str]
    ) -> dict[str, bool]:
        return {entity_id: entity_id in self.present for entity_id in ids}


@pytest.fixture
def households_provider() -> Iterator[HouseholdListProvider]:
    """Registered for one test only, so other tests see no dynamic attachments."""
    provider = HouseholdListProvider()
    before = list(service._providers)
    service.register_attachment_provider(provider)
    try:
        yield provider
    finally:
        service._providers.remove(provider)
    assert service._providers == before
