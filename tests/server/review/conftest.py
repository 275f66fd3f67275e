"""Fixtures for review tests: the household form in Hodan and Wadajir, an enumerator and
a supervisor in each, an administrator, and `submit()` — a household posted by a tablet
and processed by the worker, its registry changes waiting for approval."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.accounts.models import District, User
from server.blobs import blob_store
from server.catalog.models import FormVersion
from server.config import Settings
from server.db import db
from server.intake import processing
from server.intake.models import Submission
from tests.factories import (
    AdminFactory,
    DistrictFactory,
    RegionFactory,
    SupervisorFactory,
    UserFactory,
)
from tests.server.intake.conftest import Device, upload
from tests.support.submissions import PHOTO, PHOTO_NAME, Attachment, encrypted_household
from tests.support.xlsforms import household_instance_xml, household_registration_xlsx


@pytest.fixture
def settings(app: Flask) -> Settings:
    return app.config["DIIWAAN"]


@pytest.fixture
def hodan() -> District:
    # Codes match the form's district choices, so processing places each submission.
    return DistrictFactory(code="hodan", name="Hodan", region=RegionFactory(code="banadir"))


@pytest.fixture
def wadajir(hodan: District) -> District:
    return DistrictFactory(code="wadajir", name="Wadajir", region=hodan.region)


@pytest.fixture
def household(
    session: Session, settings: Settings, hodan: District, wadajir: District
) -> FormVersion:
    """The household registration form, published (managed key) in Hodan and Wadajir."""
    return upload(session, settings, household_registration_xlsx(), [hodan, wadajir])


@pytest.fixture
def enumerator(hodan: District) -> User:
    return UserFactory(username="asha", display_name="Asha Warsame", districts=[hodan])


@pytest.fixture
def wadajir_enumerator(wadajir: District) -> User:
    return UserFactory(username="omar", display_name="Omar Nuur", districts=[wadajir])


@pytest.fixture
def supervisor(hodan: District) -> User:
    return SupervisorFactory(username="hodan.sup", display_name="Xaliimo Cabdi", districts=[hodan])


@pytest.fixture
def wadajir_supervisor(wadajir: District) -> User:
    return SupervisorFactory(username="wadajir.sup", districts=[wadajir])


@pytest.fixture
def admin() -> User:
    return AdminFactory()


@pytest.fixture
def drain(app: Flask, settings: Settings) -> Callable[[], int]:
    """Run the worker in-process until the queue is empty."""

    def run() -> int:
        context = processing.WorkerContext(
            database=db,
            store=blob_store(settings.data_dir),
            key_encryption_key=settings.key_encryption_key,
        )
        return processing.run(context, drain=True)

    return run


Submit = Callable[..., Submission]


@pytest.fixture
def submit(
    client: FlaskClient,
    session: Session,
    household: FormVersion,
    enumerator: User,
    drain: Callable[[], int],
) -> Submit:
    """`submit(by=user, encrypted=False, process=True, **answers)`: a household posted by
    the enumerator's tablet (OpenRosa) and processed; returns the stored submission."""

    def post(
        by: User | None = None, *, encrypted: bool = False, process: bool = True, **answers: Any
    ) -> Submission:
        device = Device(client, user=by or enumerator)
        instance_id = f"uuid:{uuid.uuid4()}"
        if encrypted:
            assert household.key is not None
            sealed = encrypted_household(
                household.key.public_key, instance_id=instance_id, **answers
            )
            response = device.post(sealed.manifest, sealed.attachments)
        else:
            xml = household_instance_xml(instance_id=instance_id, **answers)
            response = device.post(xml, [Attachment(PHOTO_NAME, PHOTO, "image/jpeg")])
        assert response.status_code == 201, response.get_data(as_text=True)
        if process:
            drain()
        session.expire_all()
        return session.scalars(
            select(Submission).where(Submission.instance_id == instance_id)
        ).one()

    return post
