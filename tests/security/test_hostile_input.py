"""Hostile input across every door, beyond what tests/server/intake/test_hostile.py and
the catalog tests already cover for OpenRosa XML and XLSForm conversion.

Each case asserts three things: the answer is a 4xx whose message names the problem
(never a 500), the memory the request allocated stays bounded (tracemalloc's peak during
the request, and the process's peak RSS), and nothing already stored is harmed (row counts
unchanged, an earlier submission's stored bytes unchanged).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import resource
import tracemalloc
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.accounts.models import AuditEvent, District, Region, Token, User
from server.blobs import BlobStore, blob_store
from server.catalog.models import Form, FormAttachment, FormVersion
from server.intake.models import Submission, SubmissionAttachment, SyncItem, SyncSession
from server.registry.models import Entity
from sync.pack import PACK_MAGIC, PACK_XML_NAME, pack
from tests.factories import PASSWORD
from tests.security.world import (
    basic_auth,
    bearer,
    drain,
    fast_conversion,
    make_user,
    server_key,
)
from tests.support.submissions import PHOTO, PHOTO_NAME, Attachment, encode_multipart
from tests.support.syncing import FRAMES
from tests.support.xlsforms import (
    formula,
    household_instance_xml,
    household_registration_xlsx,
    minimal_form_xlsx,
    villages_csv,
    xlsx_from_sheets,
)

MB = 1024 * 1024
BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE data [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(8)
    )
    + b']><data id="household_registration" version="2026112601"><x>&i;</x>'
    b"<meta><instanceID>uuid:laughs</instanceID></meta></data>"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE data [<!ENTITY s SYSTEM "file:///etc/passwd">]>'
    b'<data id="household_registration" version="2026112601"><x>&s;</x>'
    b"<meta><instanceID>uuid:xxe</instanceID></meta></data>"
)


# --------------------------------------------------------------------- the place


@dataclass
class Place:
    """A district with its household form, people, a device, and one submission stored
    earlier whose bytes must survive every attack."""

    client: FlaskClient
    session: Session
    store: BlobStore
    admin: User
    enumerator: User
    admin_token: str
    device_token: str
    device_id: str
    earlier: Submission
    earlier_xml: bytes

    def counts(self) -> dict[str, int]:
        self.session.expire_all()
        models = (
            Submission,
            SubmissionAttachment,
            Form,
            FormVersion,
            FormAttachment,
            District,
            Region,
            User,
            Token,
            Entity,
            SyncItem,
            SyncSession,
        )
        return {
            model.__name__: self.session.scalar(select(func.count()).select_from(model)) or 0
            for model in models
        }

    def device(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.open(
            f"/api/v1/sync{path}", method=method, headers=bearer(self.device_token), **kwargs
        )

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.open(path, method=method, headers=bearer(self.admin_token), **kwargs)

    def openrosa(self, body: bytes, content_type: str) -> Any:
        return self.client.post(
            "/submission",
            data=body,
            content_type=content_type,
            headers={"X-OpenRosa-Version": "1.0", **basic_auth(self.enumerator.username)},
        )


@pytest.fixture
def place(app: Flask, client: FlaskClient, session: Session) -> Place:
    settings = app.config["DIIWAAN"]
    region = Region(code="banadir", name="Banadir")
    hodan = District(code="hodan", name="Hodan", region=region)
    session.add_all([region, hodan])
    session.flush()
    server_key(session, settings)
    admin = make_user(session, "hostile.admin", "admin", [])
    enumerator = make_user(session, "hostile.enumerator", "enumerator", [hodan])
    from server.accounts import service as accounts
    from server.catalog import service as catalog

    with fast_conversion():
        version = catalog.upload_form(
            session,
            None,
            data=household_registration_xlsx(),
            filename="household_registration.xlsx",
            store=blob_store(settings.data_dir),
            key_encryption_key=settings.key_encryption_key,
            max_bytes=settings.max_form_bytes,
            district_ids=[hodan.id],
            attachments=[("villages.csv", villages_csv())],
        ).version
    version.form.registry_mode = "receipt"
    admin_token = accounts.issue_token(session, None, admin, kind="api")[1]
    device_token = accounts.issue_token(session, None, enumerator, kind="device")[1]
    session.commit()
    xml = household_instance_xml(instance_id=f"uuid:{uuid.uuid4()}")
    body, content_type = encode_multipart(xml, [Attachment(PHOTO_NAME, PHOTO, "image/jpeg")])
    response = client.post(
        "/submission",
        data=body,
        content_type=content_type,
        headers={"X-OpenRosa-Version": "1.0", **basic_auth(enumerator.username)},
    )
    assert response.status_code == 201
    drain(settings)
    session.expire_all()
    earlier = session.scalars(select(Submission)).one()
    assert earlier.processing_state == "processed"
    device_id = str(uuid.uuid4())
    found = Place(
        client,
        session,
        blob_store(settings.data_dir),
        admin,
        enumerator,
        admin_token,
        device_token,
        device_id,
        earlier,
        xml,
    )
    assert found.device("PUT", f"/devices/{device_id}", json={"name": "t"}).status_code == 201
    return found


@contextmanager
def unharmed(
    place: Place, *, budget_mb: float, allowed: frozenset[str] = frozenset()
) -> Iterator[None]:
    """Nothing stored changes (but the `allowed` tables) and the request allocates at most
    `budget_mb` MB (tracemalloc's peak) and grows the process's peak RSS by at most that."""
    before = place.counts()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    try:
        yield
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert peak < budget_mb * MB, f"the request allocated {peak / MB:.1f} MB"
    assert rss_growth_mb < budget_mb + 16, f"peak RSS grew by {rss_growth_mb:.1f} MB"
    after = place.counts()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert set(changed) <= allowed, f"stored rows changed: {changed}"
    assert place.store.read(place.earlier.xml_sha256) == place.earlier_xml


def refused(response: Any, status: int | tuple[int, ...], *words: str) -> str:
    statuses = status if isinstance(status, tuple) else (status,)
    text = response.get_data(as_text=True)
    assert response.status_code in statuses, (response.status_code, text[:500])
    for word in words:
        assert word.lower() in text.lower(), (word, text[:500])
    return text


# ------------------------------------------------------------- XML in sync packs


def _sync_item(place: Place, body: bytes, instance_id: str = "uuid:laughs") -> dict[str, Any]:
    import hashlib

    listing = {
        "instance_id": instance_id,
        "form_id": "household_registration",
        "version": "2026112601",
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
    }
    opened = place.device("POST", f"/devices/{place.device_id}/sessions", json={"items": [listing]})
    assert opened.status_code == 201, opened.get_json()
    session_id = opened.get_json()["session_id"]
    frames = f"0 0-{len(body) - 1}/{len(body)}\n".encode() + body
    sent = place.device("POST", f"/sessions/{session_id}/frames", data=frames, content_type=FRAMES)
    assert sent.status_code == 200, sent.get_json()
    (item,) = sent.get_json()["items"]
    return item


@pytest.mark.parametrize(
    ("xml", "instance_id"),
    [(BILLION_LAUGHS, "uuid:laughs"), (EXTERNAL_ENTITY, "uuid:xxe")],
    ids=["billion-laughs", "external-entity"],
)
def test_entity_tricks_in_a_sync_pack_are_refused_naming_them(place, xml, instance_id):
    with unharmed(place, budget_mb=8, allowed=frozenset({"SyncItem", "SyncSession"})):
        item = _sync_item(place, pack(xml, []), instance_id)
    assert (item["state"], item["status"]) == ("refused", 400)
    assert "document type declarations" in item["message"]
    assert "root:" not in json.dumps(item)


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/etc/passwd", "photo\x00.jpg", "photo\u202egpj.exe"]
)
def test_file_names_that_climb_or_disguise_in_a_sync_pack_are_refused(place, name):
    xml = household_instance_xml(instance_id="uuid:climber")
    body = PACK_MAGIC + _entry(PACK_XML_NAME, xml) + _entry(name, b"\xff\xd8 not really a photo")
    with unharmed(place, budget_mb=8, allowed=frozenset({"SyncItem", "SyncSession"})):
        item = _sync_item(place, body, "uuid:climber")
    assert (item["state"], item["status"]) == ("refused", 400)
    assert "not a plain file name" in item["message"]


def _entry(name: str, content: bytes) -> bytes:
    import struct

    encoded = name.encode("utf-8")
    return struct.pack(">H", len(encoded)) + encoded + struct.pack(">Q", len(content)) + content


# ---------------------------------------------------------------- JSON bodies


def test_deeply_nested_json_is_400_on_the_sync_api(place):
    nested = b"[" * 200_000 + b"]" * 200_000
    with unharmed(place, budget_mb=16, allowed=frozenset()):
        response = place.device(
            "POST",
            f"/devices/{place.device_id}/sessions",
            data=nested,
            content_type="application/json",
        )
    refused(response, 400, "JSON")


def test_deeply_nested_json_is_400_on_the_api(place):
    nested = b'{"display_name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with unharmed(place, budget_mb=16):
        response = place.api(
            "PATCH",
            f"/api/v1/users/{place.enumerator.id}",
            data=nested,
            content_type="application/json",
        )
    refused(response, 400, "JSON")


@pytest.mark.parametrize("door", ["sync", "api"])
def test_json_that_is_not_utf8_is_400(place, door):
    body = b'{"name": "Faa\xff\xfemo"}'
    with unharmed(place, budget_mb=4):
        if door == "sync":
            response = place.device(
                "PUT", f"/devices/{place.device_id}", data=body, content_type="application/json"
            )
        else:
            response = place.api(
                "PATCH",
                f"/api/v1/users/{place.enumerator.id}",
                data=body,
                content_type="application/json",
            )
    refused(response, 400)


def test_a_gzip_bomb_of_json_is_413_without_inflating_it(place):
    bomb = gzip.compress(b'{"items": [' + b" " * (64 * MB) + b"]}", compresslevel=9)
    assert len(bomb) < MB
    with unharmed(place, budget_mb=12):
        response = place.client.post(
            f"/api/v1/sync/devices/{place.device_id}/sessions",
            data=bomb,
            content_type="application/json",
            headers={**bearer(place.device_token), "Content-Encoding": "gzip"},
        )
    refused(response, 413, "decompressed")


# --------------------------------------------------------------- multipart


def _xml() -> bytes:
    return household_instance_xml(instance_id=f"uuid:{uuid.uuid4()}")


# Werkzeug's multipart parser stops at a limit without closing the spool file of the part
# it was reading; CPython closes it at once (refcount) but warns. Nothing of ours leaks.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        (lambda: (b"--x\r\nnothing else", "multipart/form-data"), 400, ["xml_submission_file"]),
        (
            lambda: (encode_multipart(_xml())[0][:-40], encode_multipart(_xml())[1]),
            400,
            ["xml_submission_file"],
        ),
        (
            lambda: (encode_multipart(_xml())[0], "multipart/form-data; boundary=other"),
            400,
            ["xml_submission_file"],
        ),
        (lambda: (_xml(), "text/xml"), 400, ["multipart/form-data"]),
        (
            lambda: _many_parts(3000),
            413,
            [],
        ),
        (
            lambda: _header_bomb(),
            (400, 413),
            [],
        ),
    ],
    ids=[
        "no-boundary",
        "truncated",
        "wrong-boundary",
        "not-multipart",
        "3000-parts",
        "header-bomb",
    ],
)
def test_malformed_multipart_is_refused_and_stores_nothing(place, make, status, words):
    body, content_type = make()
    with unharmed(place, budget_mb=24):
        response = place.openrosa(body, content_type)
    refused(response, status, *words)


def _many_parts(count: int) -> tuple[bytes, str]:
    body, content_type = encode_multipart(
        _xml(), [Attachment(f"f{i}.jpg", b"x") for i in range(count)]
    )
    return body, content_type


def _header_bomb() -> tuple[bytes, str]:
    boundary = "bomb"
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="xml_submission_file"; filename="'
        + b"a" * (2 * MB)
        + b'"\r\n\r\n<data/>\r\n'
        + f"--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    "name",
    ["photo\x00.jpg", "photo\u202egpj.exe", "photo\x1b[31m.jpg", "C:\\Windows\\evil.dll"],
    ids=["nul", "right-to-left-override", "escape", "windows-path"],
)
def test_attachment_names_with_control_characters_are_400_and_store_nothing(place, name):
    body, content_type = encode_multipart(_xml(), [Attachment(name, b"payload")])
    with unharmed(place, budget_mb=8):
        response = place.openrosa(body, content_type)
    refused(response, 400, "not a plain file name")


# ------------------------------------------------------------ spreadsheets


def _zip_bomb_xlsx() -> bytes:
    buffer = io.BytesIO(minimal_form_xlsx("bomb", "1"))
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/media/zeros.bin", b"\0" * (200 * MB))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_zip_bomb_xlsx, ["compress"]),
        (
            lambda: xlsx_from_sheets(
                {
                    "survey": [
                        ["type", "name", "label"],
                        ["text", "name", formula('HYPERLINK("http://evil.example","x")')],
                    ],
                    "settings": [["form_id", "version"], ["formulas", "1"]],
                }
            ),
            ["formula", "survey"],
        ),
    ],
    ids=["zip-bomb", "formula"],
)
def test_hostile_xlsforms_uploaded_over_http_are_400_naming_the_problem(place, make, words):
    data = make()
    assert len(data) < 2 * MB
    with fast_conversion(), unharmed(place, budget_mb=40):
        response = place.api(
            "POST",
            "/api/v1/forms",
            data={"file": (io.BytesIO(data), "form.xlsx")},
            content_type="multipart/form-data",
        )
    refused(response, 400, *words)


@pytest.mark.parametrize(
    "cell", ['=HYPERLINK("http://evil.example")', "+cmd|' /C calc'!A0", "@SUM(A1)", "-1+cmd|x"]
)
def test_a_districts_csv_carrying_a_formula_is_refused_naming_the_line(place, browser, cell):
    browser.login(place.admin.username, PASSWORD)
    csv_text = (
        "region_code,region_name,district_code,district_name\n"
        f'banadir,Banadir,hodan,Hodan\nbay,Bay,baidoa,"{cell}"\n'
    )
    with unharmed(place, budget_mb=8):
        response = browser.post(
            "/districts",
            data={"file": (io.BytesIO(csv_text.encode()), "districts.csv")},
            content_type="multipart/form-data",
        )
    refused(response, 400, "line 3", "formula")


# ------------------------------------------------------------------ paths


@pytest.mark.parametrize(
    "url",
    [
        "/review/submissions/{id}/files/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/v1/submissions/{id}/attachments/..%2F..%2Fsecret_key",
        "/static/..%2F..%2Fconfig.py",
        "/forms/household_registration/2026112601/media/..%2F..%2F..%2Fsecret_key",
    ],
)
def test_paths_that_climb_out_find_nothing(place, browser, url):
    browser.login(place.admin.username, PASSWORD)
    full = url.format(id=place.earlier.id)
    for response in (
        browser.get(full),
        place.client.get(full, headers=bearer(place.admin_token)),
        place.client.get(full, headers=basic_auth(place.admin.username)),
    ):
        assert response.status_code == 404, (full, response.status_code)
        assert b"root:" not in response.data
        response.close()


def test_a_form_attachment_named_with_a_path_is_refused(place):
    with unharmed(place, budget_mb=8):
        response = place.api(
            "POST",
            "/api/v1/forms/household_registration/versions/2026112601/attachments",
            data={"file": (io.BytesIO(b"name,label\n"), "../../villages.csv")},
            content_type="multipart/form-data",
        )
    refused(response, 400, "does not refer to a file")


# ------------------------------------------------------------- absurd values


def test_an_answer_over_ten_megabytes_is_413_at_the_door(place):
    xml = household_instance_xml(head_first_name="A" * (10 * MB + 1))
    body, content_type = encode_multipart(xml)
    with unharmed(place, budget_mb=80):
        response = place.openrosa(body, content_type)
    refused(response, 413, "larger than")


ABSURD = {
    "hh_size": "9" * 5000,  # an integer Python refuses to parse by default
    "monthly_income_usd": "1e309",  # beyond float
    "head_first_name": "Faadumo\u202eomudaaF",  # a right-to-left override
    "national_id": "\x00\x01\x02",
}


def test_absurd_answers_are_stored_and_flagged_never_a_server_error(app, place, browser):
    """Answers are validated when processed, not at the door (durable before acknowledged):
    the submission is accepted, processing records each problem by name, and every page
    and API that shows it answers 200."""
    xml = household_instance_xml(
        instance_id="uuid:absurd",
        hh_size=ABSURD["hh_size"],
        monthly_income_usd=ABSURD["monthly_income_usd"],
        head_first_name=ABSURD["head_first_name"],
        national_id="12345",
        started="99999-01-01T00:00:00",
    )
    body, content_type = encode_multipart(xml)
    response = place.openrosa(body, content_type)
    refused(response, 201)
    drain(app.config["DIIWAAN"])
    place.session.expire_all()
    stored = place.session.scalars(
        select(Submission).where(Submission.instance_id == "uuid:absurd")
    ).one()
    assert stored.processing_state == "processed", stored.last_error
    problems = " ".join(stored.parse_problems)
    assert "hh_size" in problems and "monthly_income_usd" in problems, problems
    assert "start" in problems, problems
    browser.login(place.admin.username, PASSWORD)
    for response in (
        browser.get(f"/review/submissions/{stored.id}"),
        browser.get(f"/review/submissions/{stored.id}/edit"),
        browser.get("/registry?q=Faadumo"),
        place.api("GET", f"/api/v1/submissions/{stored.id}"),
        place.api("GET", f"/api/v1/review/submissions/{stored.id}"),
        place.api("GET", "/api/v1/registry/entities?q=Faadumo"),
    ):
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert place.store.read(place.earlier.xml_sha256) == place.earlier_xml


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/api/v1/review/submissions?district_id=99999999999999999999999", {}),
        ("GET", "/api/v1/submissions?district_id=-99999999999999999999999", {}),
        ("GET", "/api/v1/registry/changes?since=99999999999999999999999", {}),
        ("POST", "/api/v1/registry/merges/99999999999999999999999/undo", {}),
        ("GET", "/registry/candidates/99999999999999999999999", {}),
        (
            "PUT",
            "/api/v1/forms/household_registration/districts",
            {"json": {"district_ids": [10**30]}},
        ),
        ("PATCH", "/api/v1/users/{enumerator}", {"json": {"district_ids": [-(10**30)]}}),
        ("PATCH", "/api/v1/users/{enumerator}", {"json": {"display_name": "nul\x00byte"}}),
        ("PATCH", "/api/v1/users/{enumerator}", {"json": {"display_name": "x" * 100_000}}),
    ],
    ids=[
        "queue-district",
        "submissions-district",
        "feed-since",
        "merge-id",
        "candidate-page",
        "assign-districts",
        "user-districts",
        "nul-in-text",
        "overlong-text",
    ],
)
def test_numbers_and_text_beyond_what_the_database_holds_are_4xx(place, method, path, kwargs):
    with unharmed(place, budget_mb=8):
        response = place.api(method, path.format(enumerator=place.enumerator.id), **kwargs)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:300]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "t", "cursor": 10**30}, "cursor"),
        ({"name": "t", "cursor": -1}, "cursor"),
        ({"name": "t", "protocol": 1e308}, "protocol"),
    ],
)
def test_absurd_numbers_in_sync_enrolment_are_4xx(place, body, field):
    with unharmed(place, budget_mb=8):
        response = place.device("PUT", f"/devices/{place.device_id}", json=body)
    text = refused(response, (400, 422))
    assert field in text or "cannot be stored" in text, text


@pytest.mark.parametrize("size", [-1, 0, 10**30, 1e308])
def test_absurd_sizes_in_a_sync_listing_are_refused(place, size):
    listing = {
        "instance_id": "uuid:sized",
        "form_id": "household_registration",
        "version": "2026112601",
        "sha256": "a" * 64,
        "size": size,
    }
    with unharmed(place, budget_mb=8, allowed=frozenset({"SyncItem", "SyncSession"})):
        response = place.device(
            "POST", f"/devices/{place.device_id}/sessions", json={"items": [listing]}
        )
    if response.status_code == 201:  # listed, but refused as too large before any byte
        (item,) = response.get_json()["items"]
        assert (item["state"], item["status"]) == ("refused", 413)
    else:
        text = refused(response, 400)
        assert "size" in text or "cannot be stored" in text, text


@pytest.mark.parametrize(
    ("since", "limit"), [("99999999999999999999999", "10"), ("-5", "10"), ("0", "-1"), ("x", "1")]
)
def test_absurd_paging_of_registry_deltas_is_400(place, since, limit):
    with unharmed(place, budget_mb=8):
        response = place.device(
            "GET", f"/devices/{place.device_id}/entities?since={since}&limit={limit}"
        )
    text = refused(response, 400)
    assert "since" in text or "cannot be stored" in text, text


@pytest.mark.parametrize(
    "content_range",
    ["bytes -5-10/20", "bytes 0-10/-1", "bytes 10-5/20", "bytes 0-99999999999999999999/1"],
)
def test_negative_or_inverted_ranges_are_400(place, content_range):
    opened = place.device(
        "POST",
        f"/devices/{place.device_id}/sessions",
        json={
            "items": [
                {
                    "instance_id": "uuid:r",
                    "form_id": "household_registration",
                    "version": "2026112601",
                    "sha256": "b" * 64,
                    "size": 20,
                }
            ]
        },
    )
    session_id = opened.get_json()["session_id"]
    with unharmed(place, budget_mb=8, allowed=frozenset({"SyncSession"})):
        response = place.client.put(
            f"/api/v1/sync/sessions/{session_id}/items/0",
            data=b"x" * 11,
            content_type="application/vnd.diiwaan.pack",
            headers={**bearer(place.device_token), "Content-Range": content_range},
        )
    refused(response, 400)


def test_a_session_cookie_or_basic_header_of_garbage_is_anonymous_not_an_error(place):
    client: FlaskClient = place.client
    client.set_cookie("diiwaan_session", "%%%garbage%%%")
    assert client.get("/users").status_code == 302
    nul_name = "Basic " + base64.b64encode(b"hostile.enumerator\x00:" + PASSWORD.encode()).decode()
    for header in ("Basic !!!!", "Basic " + "A" * 10_000, "Bearer ", "Basic \xff\xfe", nul_name):
        response = client.get("/formList", headers={"Authorization": header})
        assert response.status_code == 401, (header[:20], response.status_code)


def test_a_username_with_a_nul_byte_is_a_failed_sign_in_on_every_database(place, browser):
    with unharmed(place, budget_mb=8):
        response = browser.login("hostile.admin\x00", PASSWORD)
    refused(response, 401, "wrong username or password")
    place.session.expire_all()
    event = place.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "login.failed")
    ).all()[-1]
    assert event.actor_name == "hostile.admin"
