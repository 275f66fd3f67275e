"""The submissions API: filters, scoping by role and district, raw and attachment downloads."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import random
import tracemalloc
from typing import Any

import pytest
from sqlalchemy import update

from forms.instance import read_envelope
from server.db import utcnow
from server.intake import files
from server.intake.models import Submission
from tests.factories import AdminFactory, SupervisorFactory, UserFactory
from tests.server.intake.conftest import Device, only_submission
from tests.support.submissions import PHOTO, PHOTO_NAME, Attachment, encrypted_household
from tests.support.xlsforms import HOUSEHOLD_FORM_VERSION, household_instance_xml


@pytest.fixture
def field(client, household, hodan, wadajir, session, worker):
    """One processed submission from each district, one encrypted, one failed edit chain."""
    in_hodan = UserFactory(username="caasha", districts=[hodan])
    in_wadajir = UserFactory(username="bashiir", districts=[wadajir])
    hodan_xml = household_instance_xml(head_first_name="Caasha")
    wadajir_xml = household_instance_xml(district="wadajir", village="halane")
    photo = Attachment(PHOTO_NAME, PHOTO, "image/jpeg")
    assert Device(client, user=in_hodan).post(hodan_xml, [photo]).status_code == 201
    assert Device(client, user=in_wadajir).post(wadajir_xml).status_code == 201
    encrypted = encrypted_household(household.key.public_key)
    posted = Device(client, user=in_hodan).post(encrypted.manifest, encrypted.attachments)
    assert posted.status_code == 201
    worker()
    return {
        "hodan": only_submission(session, read_envelope(hodan_xml).instance_id),
        "wadajir": only_submission(session, read_envelope(wadajir_xml).instance_id),
        "encrypted": only_submission(session, encrypted.instance_id),
        "hodan_xml": hodan_xml,
        "encrypted_posted": encrypted,
    }


def listed(client, headers, **query):
    response = client.get("/api/v1/submissions", headers=headers, query_string=query)
    assert response.status_code == 200, response.json
    return response.json


def instance_ids(page) -> set[str]:
    return {row["instance_id"] for row in page["submissions"]}


def test_list_filters_by_form_version_state_district_enumerator_and_date(
    client, bearer, field, hodan, wadajir
):
    admin = bearer(AdminFactory())
    everything = listed(client, admin)
    assert everything["total"] == 3
    row = next(r for r in everything["submissions"] if r["id"] == str(field["hodan"].id))
    assert row["form_id"] == "household_registration"
    assert row["version"] == HOUSEHOLD_FORM_VERSION
    assert (row["submitter"], row["district"], row["processing_state"]) == (
        "caasha",
        "hodan",
        "processed",
    )
    assert [a["name"] for a in row["attachments"]] == [PHOTO_NAME]

    hodan_ids = {field["hodan"].instance_id, field["encrypted"].instance_id}
    assert instance_ids(listed(client, admin, form_id="household_registration")) == (
        hodan_ids | {field["wadajir"].instance_id}
    )
    assert listed(client, admin, form_id="other_form")["total"] == 0
    assert listed(client, admin, version="1")["total"] == 0
    assert listed(client, admin, version=HOUSEHOLD_FORM_VERSION)["total"] == 3
    assert instance_ids(listed(client, admin, district_id=hodan.id)) == hodan_ids
    assert instance_ids(listed(client, admin, submitter="bashiir")) == {
        field["wadajir"].instance_id
    }
    assert listed(client, admin, processing_state="processed")["total"] == 3
    assert listed(client, admin, processing_state="failed")["total"] == 0
    tomorrow = (utcnow() + dt.timedelta(days=1)).isoformat()
    yesterday = (utcnow() - dt.timedelta(days=1)).isoformat()
    assert listed(client, admin, since=tomorrow)["total"] == 0
    assert listed(client, admin, since=yesterday, until=tomorrow)["total"] == 3
    page = listed(client, admin, per_page=2, page=2)
    assert (page["total"], len(page["submissions"])) == (3, 1)


def test_list_shows_only_current_versions_unless_asked(client, bearer, field, session):
    session.execute(
        update(Submission).where(Submission.id == field["wadajir"].id).values(current=False)
    )
    session.flush()
    admin = bearer(AdminFactory())
    assert field["wadajir"].instance_id not in instance_ids(listed(client, admin))
    assert field["wadajir"].instance_id in instance_ids(listed(client, admin, current_only="false"))


def test_supervisor_sees_only_their_districts(client, bearer, field, hodan):
    supervisor = bearer(SupervisorFactory(districts=[hodan]))
    assert instance_ids(listed(client, supervisor)) == {
        field["hodan"].instance_id,
        field["encrypted"].instance_id,
    }
    # Asking for another district's submissions finds nothing, rather than leaking them.
    assert listed(client, supervisor, submitter="bashiir")["total"] == 0

    elsewhere = f"/api/v1/submissions/{field['wadajir'].id}"
    for url in (elsewhere, f"{elsewhere}/raw"):
        response = client.get(url, headers=supervisor)
        assert response.status_code == 403
        assert response.json["error"]["code"] == "forbidden"


def test_supervisor_without_districts_sees_nothing(client, bearer, field):
    assert listed(client, bearer(SupervisorFactory(districts=[])))["total"] == 0


def test_enumerators_and_partners_may_not_read_submissions(client, bearer, field, hodan):
    for user in (UserFactory(districts=[hodan]), UserFactory(role="partner")):
        response = client.get("/api/v1/submissions", headers=bearer(user))
        assert response.status_code == 403
        detail = client.get(f"/api/v1/submissions/{field['hodan'].id}", headers=bearer(user))
        assert detail.status_code == 403


def test_anonymous_callers_get_401(client, field):
    assert client.get("/api/v1/submissions").status_code == 401


def test_one_submission_comes_with_typed_data_and_attachment_links(client, bearer, field, hodan):
    supervisor = bearer(SupervisorFactory(districts=[hodan]))
    response = client.get(f"/api/v1/submissions/{field['hodan'].id}", headers=supervisor)
    assert response.status_code == 200
    body = response.json
    assert body["data"]["head"]["head_first_name"] == "Caasha"
    assert body["data"]["hh_size"] == 3
    assert body["parse_problems"] == []
    (attachment,) = body["attachments"]
    assert attachment["received"] is True
    download = client.get(attachment["url"], headers=supervisor)
    assert download.status_code == 200
    assert download.data == PHOTO
    assert download.mimetype == "image/jpeg"


def test_raw_download_is_exactly_what_the_device_posted(client, bearer, field, hodan):
    supervisor = bearer(SupervisorFactory(districts=[hodan]))
    raw = client.get(f"/api/v1/submissions/{field['hodan'].id}/raw", headers=supervisor)
    assert raw.status_code == 200
    assert raw.data == field["hodan_xml"]
    assert raw.mimetype == "text/xml"

    encrypted = client.get(f"/api/v1/submissions/{field['encrypted'].id}/raw", headers=supervisor)
    assert encrypted.data == field["encrypted_posted"].manifest


def test_encrypted_attachments_are_served_decrypted(client, bearer, field, hodan):
    supervisor = bearer(SupervisorFactory(districts=[hodan]))
    url = f"/api/v1/submissions/{field['encrypted'].id}"
    body = client.get(url, headers=supervisor).json
    assert body["encrypted"] is True
    assert body["data"]["location"]["dwelling_photo"] == PHOTO_NAME
    names = [a["name"] for a in body["attachments"]]
    assert names == [PHOTO_NAME, "submission.xml.enc"]

    photo = client.get(f"{url}/attachments/{PHOTO_NAME}", headers=supervisor)
    assert photo.status_code == 200
    assert photo.data == PHOTO
    assert photo.content_length == len(PHOTO)
    part = client.get(
        f"{url}/attachments/{PHOTO_NAME}", headers={**supervisor, "Range": "bytes=16-47"}
    )
    assert (part.status_code, part.data) == (206, PHOTO[16:48])
    # The encrypted file as received is still there for whoever needs it.
    sealed = client.get(f"{url}/attachments/{PHOTO_NAME}.enc", headers=supervisor)
    as_posted = field["encrypted_posted"].attachments[0].content
    assert sealed.data == as_posted
    assert sealed.content_length == len(as_posted)
    first = client.get(
        f"{url}/attachments/{PHOTO_NAME}.enc", headers={**supervisor, "Range": "bytes=0-15"}
    )
    assert (first.status_code, first.data) == (206, as_posted[:16])

    missing = client.get(f"{url}/attachments/nothing.jpg", headers=supervisor)
    assert missing.status_code == 404
    assert "nothing.jpg" in missing.json["error"]["message"]


def test_a_damaged_encrypted_file_is_refused_and_logged_not_served(
    client, bearer, field, hodan, store, caplog
):
    """Decrypted on every read, and checked against the digest the worker kept when it
    verified the submission's signature: a stored file altered since is never served."""
    supervisor = bearer(SupervisorFactory(districts=[hodan]))
    url = f"/api/v1/submissions/{field['encrypted'].id}/attachments/{PHOTO_NAME}"
    sealed = store.path(field["encrypted"].attachments[0].sha256)
    original = sealed.read_bytes()
    for position in (0, len(original) - 1):  # its first block; its padding
        damaged = bytearray(original)
        damaged[position] ^= 0x01
        sealed.write_bytes(bytes(damaged))
        caplog.clear()
        response = client.get(url, headers=supervisor)
        assert response.status_code == 500
        assert response.json["error"]["code"] == "stored_file_damaged"
        assert PHOTO_NAME in response.json["error"]["message"]
        assert response.data.find(PHOTO[16:48]) == -1
        assert any(
            "cannot be served" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records
        )
    sealed.write_bytes(original)
    assert client.get(url, headers=supervisor).data == PHOTO


def test_a_large_encrypted_recording_is_streamed_not_held_in_memory(
    client, bearer, household, hodan, session, worker
):
    """A consent recording of several megabytes is decrypted a chunk at a time, twice
    (checked, then sent): the whole file is never in memory at once."""
    recording = random.Random(7).randbytes(6 * 1024 * 1024 + 5)  # not whole blocks
    encrypted = encrypted_household(household.key.public_key, photo=recording)
    enumerator = UserFactory(username="hodan_recorder", districts=[hodan])
    assert (
        Device(client, user=enumerator).post(encrypted.manifest, encrypted.attachments).status_code
        == 201
    )
    assert worker() == 1
    submission = only_submission(session, encrypted.instance_id)
    supervisor = bearer(SupervisorFactory(districts=[hodan]))
    url = f"/api/v1/submissions/{submission.id}/attachments/{PHOTO_NAME}"

    tracemalloc.start()
    try:
        response = client.get(url, headers=supervisor, buffered=False)
        received = hashlib.sha256()
        size = 0
        for chunk in response.iter_encoded():
            received.update(chunk)
            size += len(chunk)
        response.close()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200
    assert (size, received.hexdigest()) == (len(recording), hashlib.sha256(recording).hexdigest())
    # About three chunks of 256 KB (1.2 MB measured); the whole file would be over 6 MB.
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes for a {len(recording)}-byte file"
    # Its length is known before it is sent (counted when it was checked), so a player
    # can show how long it is and seek: a range of it is decrypted and sent alone.
    assert response.content_length == len(recording)
    assert response.headers["Accept-Ranges"] == "bytes"
    start = 4 * 1024 * 1024 + 3  # in the middle of a stream chunk and of a block

    def part(path: str, asked: str) -> Any:
        # Closed as a WSGI server closes it: a range stops before the end of its file,
        # and closing the response is what closes the stored file it was reading.
        with client.get(path, headers={**supervisor, "Range": f"bytes={asked}"}) as sent:
            sent.get_data()
            return sent

    middle = part(url, f"{start}-{start + 999}")
    assert middle.status_code == 206
    assert middle.data == recording[start : start + 1000]
    assert middle.headers["Content-Range"] == f"bytes {start}-{start + 999}/{len(recording)}"
    tail = part(url, "-7")
    assert (tail.status_code, tail.data) == (206, recording[-7:])
    assert part(url, f"{len(recording)}-").status_code == 416
    # The file as received (read from the store as it is sent, not decrypted) likewise.
    sealed = encrypted.attachments[0].content
    as_received = part(f"{url}.enc", "-100")
    assert (as_received.status_code, as_received.data) == (206, sealed[-100:])
    assert (
        as_received.headers["Content-Range"]
        == f"bytes {len(sealed) - 100}-{len(sealed) - 1}/{len(sealed)}"
    )


def test_unknown_submission_is_404(client, bearer, field):
    admin = bearer(AdminFactory())
    response = client.get("/api/v1/submissions/00000000-0000-4000-8000-000000000000", headers=admin)
    assert response.status_code == 404


def test_reprocess_api_requires_a_choice_and_the_manage_permission(
    client, bearer, field, session, hodan
):
    admin = bearer(AdminFactory())
    empty = client.post("/api/v1/submissions/reprocess", json={}, headers=admin)
    assert empty.status_code == 400
    session.expire_all()
    assert session.get(Submission, field["hodan"].id).processing_state == "processed"

    supervisor = bearer(SupervisorFactory(districts=[hodan]))
    forbidden = client.post(
        "/api/v1/submissions/reprocess", json={"failed": True}, headers=supervisor
    )
    assert forbidden.status_code == 403

    named = client.post(
        "/api/v1/submissions/reprocess",
        json={"submission_ids": [str(field["hodan"].id)]},
        headers=admin,
    )
    assert named.status_code == 200 and named.json == {"requeued": 1}
    session.expire_all()
    assert session.get(Submission, field["hodan"].id).processing_state == "queued"
    assert session.get(Submission, field["wadajir"].id).processing_state == "processed"


def test_closing_a_streamed_file_closes_what_it_reads_from():
    """A range stops before the end of a streamed file: closing the stream (as the
    response's close does) must close the stored file it reads, not leave it to the
    garbage collector."""
    closed = []

    def chunks():
        try:
            yield b"first chunk "
            yield b"second chunk"
        finally:
            closed.append(True)

    stream = io.BufferedReader(files._ChunkReader(chunks()))
    assert stream.read(5) == b"first"
    stream.close()
    assert closed == [True]
