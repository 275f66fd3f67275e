"""Two districts with real records in each, for the security suites.

District A (Hodan) is where the supervisor, enumerator and partner under test work;
district B (Wadajir) holds the same kinds of records that they must never reach. Every
record a URL can name exists in both: a form assigned to one district only, processed
submissions with a photo, households and members in the registry, an open match
candidate, an open conflict, an undoable merge, a device and an upload session.

Names in district B carry markers (`Baashe`, `WADAJIR-NID`) so that a test can look for
them in any response body.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.accounts import service as accounts
from server.accounts.models import District, Region, User
from server.app import create_app
from server.blobs import blob_store
from server.catalog import service as catalog
from server.catalog.models import Form, ServerKey
from server.config import Settings
from server.db import db
from server.intake import processing
from server.intake.models import Device, Submission, SyncItem, SyncSession
from server.registry import service as registry
from server.registry.models import HOUSEHOLDS, Entity, EntityConflict, MatchCandidate
from sync import crypto
from tests.conftest import app_settings
from tests.factories import PASSWORD
from tests.server.intake.conftest import _converted, _key_pair
from tests.support.submissions import PHOTO, PHOTO_NAME, Attachment, encode_multipart
from tests.support.xlsforms import (
    MemberAnswers,
    household_instance_xml,
    household_registration_xlsx,
    minimal_form_xlsx,
    villages_csv,
)

ROLES = ("anonymous", "admin", "supervisor", "enumerator", "partner")
# What district B's people are called: no page or answer for district A may contain it.
OTHER_DISTRICT_MARKERS = ("Baashe", "Guuleed", "WADAJIR-NID")


@dataclass
class DistrictRecords:
    """The records of one district that URLs can name."""

    district: District
    form_id: str = ""
    form_version: str = ""
    submission_id: uuid.UUID | None = None
    instance_id: str = ""
    household_id: uuid.UUID | None = None
    candidate_id: int = 0
    conflict_id: int = 0
    merge_id: int = 0
    device_id: uuid.UUID | None = None
    sync_session_id: uuid.UUID | None = None
    entity_ids: list[uuid.UUID] = field(default_factory=list)
    instance_ids: list[str] = field(default_factory=list)
    submission_ids: list[uuid.UUID] = field(default_factory=list)


@dataclass
class World:
    own: DistrictRecords
    other: DistrictRecords
    users: dict[str, User]  # by role; the non-admins work in district A
    api_tokens: dict[str, str]  # by role
    device_token: str  # the district A enumerator's tablet
    other_users: dict[str, User]  # district B's enumerator and supervisor
    other_device_token: str
    other_token_id: uuid.UUID  # district B's enumerator's tablet token

    def records(self, district: str) -> DistrictRecords:
        return self.own if district == "own" else self.other

    def leak_markers(self) -> list[str]:
        """Strings that only district B's records contain."""
        markers = list(OTHER_DISTRICT_MARKERS)
        markers += [str(i) for i in self.other.entity_ids]
        markers += [str(i) for i in self.other.submission_ids]
        markers += self.other.instance_ids
        markers.append(self.other.form_id)
        markers.append(self.other_users["enumerator"].username)
        return markers

    def own_markers(self) -> list[str]:
        return [str(self.own.household_id), self.own.instance_id]


@contextmanager
def assembled_app() -> Iterator[Flask]:
    """A freshly assembled application for reading what it serves (its url_map, its
    OpenAPI document) while tests are being collected; the test database is untouched."""
    saved = (db.engine, db._factory)
    with tempfile.TemporaryDirectory() as data_dir:
        application = create_app(app_settings(f"sqlite:///{data_dir}/routes.db", data_dir))
        try:
            yield application
        finally:
            assert db.engine is not None
            db.engine.dispose()
            db.engine, db._factory = saved


def basic_auth(username: str, password: str = PASSWORD) -> dict[str, str]:
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@contextmanager
def fast_conversion() -> Iterator[None]:
    """pyxform costs about a second a form: convert each XLSForm once per run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            catalog,
            "convert",
            lambda data, filename, **options: _converted(
                data, filename, tuple(sorted(options.items()))
            ),
        )
        yield


def server_key(session: Session, settings: Settings) -> ServerKey:
    private = _key_pair()
    key = ServerKey(
        fingerprint=crypto.fingerprint(private),
        public_key=crypto.public_key_base64(private),
        sealed_private_key=crypto.seal_private_key(private, settings.key_encryption_key.encode()),
    )
    session.add(key)
    session.flush()
    return key


def drain(settings: Settings) -> int:
    context = processing.WorkerContext(
        database=db,
        store=blob_store(settings.data_dir),
        key_encryption_key=settings.key_encryption_key,
    )
    return processing.run(context, drain=True)


def make_user(session: Session, username: str, role: str, districts: list[District]) -> User:
    return accounts.create_user(
        session,
        None,
        username=username,
        display_name=username.title(),
        password=PASSWORD,
        role=role,
        district_ids=[d.id for d in districts],
    )


def _upload(
    session: Session, settings: Settings, data: bytes, name: str, districts: list[District]
) -> Any:
    attachments = [("villages.csv", villages_csv())] if name.startswith("household") else []
    return catalog.upload_form(
        session,
        None,
        data=data,
        filename=name,
        store=blob_store(settings.data_dir),
        key_encryption_key=settings.key_encryption_key,
        max_bytes=settings.max_form_bytes,
        district_ids=[d.id for d in districts],
        attachments=attachments,
    ).version


# Heads of household: different enough that matching links none of them.
HEADS = {
    "own": [("Ayaanle", "Cumar", "1961"), ("Xamdi", "Faarax", "1975"), ("Sagal", "Jaamac", "1990")],
    "other": [("Baashe", "Geedi", "1958"), ("Guuleed", "Nuur", "1969"), ("Ubax", "Dahir", "1983")],
}


def post_household(client: FlaskClient, enumerator: User, *, key: str, index: int) -> str:
    """A plain household submission with its photo, posted as the enumerator's tablet."""
    district = "hodan" if key == "own" else "wadajir"
    first, father, year = HEADS[key][index]
    instance_id = f"uuid:{uuid.uuid4()}"
    xml = household_instance_xml(
        instance_id=instance_id,
        district=district,
        village="taleex" if key == "own" else "halane",
        gps=(2.0 + index, 45.0 + (index if key == "own" else -index - 3), 12.0, 4.5),
        head_first_name=first,
        head_father_name=father,
        head_grandfather_name="Xasan",
        national_id=f"{district.upper()}-NID-{index}{year}",
        phone=f"0615{1 if key == 'own' else 2}{index}{year}",
        members=[
            MemberAnswers(f"{first} {father} Xasan", "female", f"{year}-03-02", "head", "no"),
        ],
    )
    body, content_type = encode_multipart(xml, [Attachment(PHOTO_NAME, PHOTO, "image/jpeg")])
    response = client.post(
        "/submission",
        data=body,
        content_type=content_type,
        headers={"X-OpenRosa-Version": "1.0", **basic_auth(enumerator.username)},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return instance_id


def build_world(app: Flask, session: Session) -> World:
    """Everything above, committed to the caller's (test) transaction."""
    settings: Settings = app.config["DIIWAAN"]
    client = app.test_client()
    region = Region(code="banadir", name="Banadir")
    hodan = District(code="hodan", name="Hodan", region=region)
    wadajir = District(code="wadajir", name="Wadajir", region=region)
    session.add_all([region, hodan, wadajir])
    session.flush()
    server_key(session, settings)

    users = {
        "admin": make_user(session, "sec.admin", "admin", []),
        "supervisor": make_user(session, "sec.supervisor", "supervisor", [hodan]),
        "enumerator": make_user(session, "sec.enumerator", "enumerator", [hodan]),
        "partner": make_user(session, "sec.partner", "partner", [hodan]),
    }
    other_users = {
        "supervisor": make_user(session, "enumb.supervisor", "supervisor", [wadajir]),
        "enumerator": make_user(session, "enumb", "enumerator", [wadajir]),
    }
    api_tokens = {
        role: accounts.issue_token(session, None, user, kind="api")[1]
        for role, user in users.items()
    }
    device_token = accounts.issue_token(session, None, users["enumerator"], kind="device")[1]
    other_token, other_device_token = accounts.issue_token(
        session, None, other_users["enumerator"], kind="device"
    )

    with fast_conversion():
        household = _upload(
            session,
            settings,
            household_registration_xlsx(),
            "household_registration.xlsx",
            [hodan, wadajir],
        )
        visit_a = _upload(
            session, settings, minimal_form_xlsx("visit_hodan", "1"), "visit_a.xlsx", [hodan]
        )
        visit_b = _upload(
            session, settings, minimal_form_xlsx("visit_wadajir", "1"), "visit_b.xlsx", [wadajir]
        )
    household.form.registry_mode = "receipt"
    session.commit()

    own = DistrictRecords(hodan, form_id=visit_a.form.form_id, form_version="1")
    other = DistrictRecords(wadajir, form_id=visit_b.form.form_id, form_version="1")
    posted: dict[str, list[str]] = {"own": [], "other": []}
    for index in range(3):
        posted["own"].append(post_household(client, users["enumerator"], key="own", index=index))
        posted["other"].append(
            post_household(client, other_users["enumerator"], key="other", index=index)
        )
    drain(settings)
    session.expire_all()

    for key, records in (("own", own), ("other", other)):
        submissions = [
            session.scalars(select(Submission).where(Submission.instance_id == i)).one()
            for i in posted[key]
        ]
        assert all(s.processing_state == "processed" for s in submissions), [
            (s.processing_state, s.last_error) for s in submissions
        ]
        records.instance_ids = posted[key]
        records.instance_id = posted[key][0]
        records.submission_ids = [s.id for s in submissions]
        records.submission_id = submissions[0].id
        households = [
            session.scalars(
                select(Entity).where(
                    Entity.created_by_submission_id == s.id, Entity.list_name == HOUSEHOLDS
                )
            ).one()
            for s in submissions
        ]
        assert {h.district_id for h in households} == {records.district.id}
        records.entity_ids = list(
            session.scalars(
                select(Entity.id).where(Entity.created_by_submission_id.in_(records.submission_ids))
            )
        )
        first, second, third = households
        records.household_id = first.id
        candidate = MatchCandidate(
            list_name=HOUSEHOLDS,
            entity_id=second.id,
            candidate_id=first.id,
            weight=9.5,
            probability=0.97,
            contributions={"national_id": 6.0},
            band="review",
            district_id=records.district.id,
        )
        conflict = EntityConflict(
            entity_id=first.id,
            submission_id=submissions[1].id,
            base_version=1,
            server_version=1,
            fields={"phone": {"base": "0611", "server": "0612", "submitted": "0613"}},
        )
        session.add_all([candidate, conflict])
        session.flush()
        records.candidate_id, records.conflict_id = candidate.id, conflict.id
        records.merge_id = registry.merge(session, None, first, third).id

        enumerator = users["enumerator"] if key == "own" else other_users["enumerator"]
        device = Device(id=uuid.uuid4(), user_id=enumerator.id, name=f"{key} tablet")
        sync_session = SyncSession(device=device)
        sync_session.items.append(
            SyncItem(
                position=0,
                instance_id=f"uuid:{uuid.uuid4()}",
                form_id=household.form.form_id,
                form_version=household.version,
                sha256="0" * 64,
                size=10,
            )
        )
        session.add_all([device, sync_session])
        session.flush()
        records.device_id, records.sync_session_id = device.id, sync_session.id
    session.commit()
    return World(
        own=own,
        other=other,
        users=users,
        api_tokens=api_tokens,
        device_token=device_token,
        other_users=other_users,
        other_device_token=other_device_token,
        other_token_id=other_token.id,
    )


def signed_in_cookie(app: Flask, user: User) -> tuple[str, str]:
    """(session cookie, CSRF token) of a browser in which `user` signed in."""
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    response = client.post(
        "/login",
        data={"username": user.username, "password": PASSWORD, "csrf_token": csrf.group(1)},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get("/").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf, "no CSRF token on the start page"
    cookie = client.get_cookie("diiwaan_session")
    assert cookie is not None
    return cookie.value, csrf.group(1)


def form_pk(session: Session, form_id: str) -> uuid.UUID:
    return session.scalars(select(Form.id).where(Form.form_id == form_id)).one()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
