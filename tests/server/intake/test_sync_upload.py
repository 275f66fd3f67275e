"""The upload side of the batch sync API: devices, sessions, frames, resumption, and the
one intake path (`service.receive`) deciding every item's outcome."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import uuid

import pytest
from sqlalchemy import select

from server.accounts import service as accounts
from server.catalog import service as catalog
from server.intake.models import Device, Submission, SyncItem
from server.intake.sync_service import PartialUploads
from sync.pack import pack, read_pack
from tests.factories import UserFactory
from tests.server.intake.conftest import blob_files, counts, only_submission
from tests.support.submissions import Attachment, encode_multipart
from tests.support.syncing import API, Item, SyncDevice, frames, household_item


@pytest.fixture
def public_key(household) -> str:
    key = catalog.definition_of(household).settings.public_key
    assert key
    return key


@pytest.fixture
def tablet(client, session, enumerator) -> SyncDevice:
    _token, secret = accounts.issue_token(session, None, enumerator, kind="device")
    device = SyncDevice(client, secret)
    assert device.enroll().status_code == 201
    return device


@pytest.fixture
def uploads(settings) -> PartialUploads:
    return PartialUploads(settings.data_dir)


def _unpack(item: Item) -> tuple[bytes, list[tuple[str, bytes]]]:
    entries = [(e.name, e.reader.read()) for e in read_pack(io.BytesIO(item.body))]
    return entries[0][1], entries[1:]


def verdict(answer: dict) -> tuple[str, str, int]:
    return answer["state"], answer["outcome"], answer["status"]


def whole(index: int, item: Item) -> tuple[int, Item, int, int]:
    return (index, item, 0, item.size)


# ---------------------------------------------------------------------- devices


def test_enrolling_records_the_device_and_enrolling_again_is_harmless(
    client, session, enumerator, hodan
):
    _token, secret = accounts.issue_token(session, None, enumerator, kind="device")
    tablet = SyncDevice(client, secret)

    first = tablet.enroll(app_version="diiwaan-sync 0.1.0", name="tablet 7")
    again = tablet.enroll(app_version="diiwaan-sync 0.2.0", name="tablet 7", cursor=42)

    assert first.status_code == 201 and again.status_code == 200
    record = again.get_json()["device"]
    assert record["device_id"] == tablet.device_id
    assert record["user"] == enumerator.username
    assert record["app_version"] == "diiwaan-sync 0.2.0"
    assert record["last_cursor"] == 42
    assert record["districts"] == ["hodan"]
    assert again.get_json()["limits"]["chunk_bytes"] > 0
    devices = session.scalars(select(Device)).all()
    assert [str(d.id) for d in devices] == [tablet.device_id]


def test_a_device_id_enrolled_for_another_user_is_409(client, session, tablet, hodan):
    other = UserFactory(districts=[hodan])
    _token, secret = accounts.issue_token(session, None, other, kind="device")
    response = SyncDevice(client, secret, tablet.device_id).enroll()
    assert response.status_code == 409
    assert "another user" in response.get_json()["error"]["message"]


def test_the_sync_api_takes_device_tokens_only(client, session, enumerator, bearer):
    device_id = uuid.uuid4()
    assert client.get(f"{API}/devices/{device_id}").status_code == 401
    api_token = client.put(
        f"{API}/devices/{device_id}", json={}, headers=bearer(enumerator, kind="api")
    )
    assert api_token.status_code == 403
    assert "device token" in api_token.get_json()["error"]["message"]


def test_a_device_that_is_not_enrolled_is_told_to_enrol(client, session, enumerator):
    _token, secret = accounts.issue_token(session, None, enumerator, kind="device")
    response = SyncDevice(client, secret).open([])
    assert response.status_code == 404
    assert "enrol" in response.get_json()["error"]["message"]


# --------------------------------------------------------------------- sessions


def test_many_items_in_one_request_are_each_stored_through_intake_and_acknowledged(
    tablet, public_key, session
):
    items = [household_item(public_key) for _ in range(3)]
    session_id, states = tablet.open_ok(items)
    assert [s["state"] for s in states] == ["needed"] * 3
    assert [s["offset"] for s in states] == [0, 0, 0]

    acks = tablet.send_ok(session_id, frames(*(whole(i, item) for i, item in enumerate(items))))

    for index, item in enumerate(items):
        assert acks[index]["state"] == "stored"
        assert (acks[index]["outcome"], acks[index]["status"]) == ("created", 201)
        submission = only_submission(session, item.instance_id)
        assert acks[index]["submission_id"] == str(submission.id)
        assert submission.encrypted and submission.complete
        assert submission.device_id == tablet.device_id
        assert submission.processing_state == "queued"


def test_an_item_already_stored_is_answered_stored_when_listed_again(tablet, public_key, session):
    item = household_item(public_key)
    session_id, _ = tablet.open_ok([item])
    tablet.send_ok(session_id, frames(whole(0, item)))

    # The acknowledgement was lost: the device lists the item again in a new session.
    _again, states = tablet.open_ok([item])

    assert states[0]["state"] == "stored"
    assert states[0]["outcome"] == "created"
    assert counts(session)[0] == 1


def test_an_item_sent_by_openrosa_first_is_a_duplicate_through_sync(
    tablet, public_key, session, client, enumerator
):
    """One code path decides: the same bytes by either route are stored once (202)."""
    item = household_item(public_key)
    household = _unpack(item)
    body, content_type = encode_multipart(
        household[0], [Attachment(name, data) for name, data in household[1]]
    )
    _token, secret = accounts.issue_token(session, None, enumerator, kind="device")
    posted = client.post(
        "/submission",
        data=body,
        content_type=content_type,
        headers={"Authorization": f"Bearer {secret}", "X-OpenRosa-Version": "1.0"},
    )
    assert posted.status_code == 201

    session_id, _ = tablet.open_ok([item])
    acks = tablet.send_ok(session_id, frames(whole(0, item)))

    assert verdict(acks[0]) == (
        "stored",
        "duplicate",
        202,
    )
    assert counts(session)[0] == 1


def test_different_content_for_a_known_instance_is_refused_409_and_stores_nothing(
    tablet, public_key, session, store
):
    first = household_item(public_key)
    session_id, _ = tablet.open_ok([first])
    tablet.send_ok(session_id, frames(whole(0, first)))
    rows, files = counts(session), blob_files(store)

    changed = household_item(public_key, instance_id=first.instance_id, head_first_name="Hodan")
    session_id, _ = tablet.open_ok([changed])
    acks = tablet.send_ok(session_id, frames(whole(0, changed)))

    assert verdict(acks[0]) == ("refused", "conflict", 409)
    assert "different content" in acks[0]["message"]
    assert counts(session) == rows
    assert blob_files(store) == files


def test_a_pack_holding_another_instance_than_listed_is_refused(tablet, public_key, session):
    real = household_item(public_key)
    claimed = Item(f"uuid:{uuid.uuid4()}", real.form_id, real.version, real.body)
    session_id, _ = tablet.open_ok([claimed])

    acks = tablet.send_ok(session_id, frames(whole(0, claimed)))

    assert verdict(acks[0]) == (
        "refused",
        "malformed",
        400,
    )
    assert real.instance_id in acks[0]["message"] and claimed.instance_id in acks[0]["message"]
    assert counts(session) == (0, 0)


def test_a_broken_pack_is_refused_naming_the_byte(tablet, public_key, session):
    good = household_item(public_key)
    broken = Item(good.instance_id, good.form_id, good.version, good.body[:-10])
    session_id, _ = tablet.open_ok([broken])

    acks = tablet.send_ok(session_id, frames(whole(0, broken)))

    assert acks[0]["outcome"] == "malformed"
    assert "truncated" in acks[0]["message"] and "byte" in acks[0]["message"]
    assert counts(session) == (0, 0)


def test_an_unknown_form_is_refused_404_like_openrosa(tablet, session):
    xml = b'<data id="nope" version="1"><meta><instanceID>uuid:1</instanceID></meta></data>'
    item = Item("uuid:1", "nope", "1", pack(xml, []))
    session_id, _ = tablet.open_ok([item])
    acks = tablet.send_ok(session_id, frames(whole(0, item)))
    assert verdict(acks[0]) == (
        "refused",
        "unknown_form",
        404,
    )


def test_an_item_larger_than_the_limit_is_refused_when_listed(tablet, settings):
    huge = Item("uuid:huge", "f", "1", b"")
    listing = {**huge.listing(), "size": settings.max_submission_bytes + 1, "sha256": "a" * 64}
    response = tablet._json("POST", f"{tablet.path}/sessions", {"items": [listing]})
    assert response.status_code == 201
    state = response.get_json()["items"][0]
    assert (state["state"], state["outcome"], state["status"]) == ("refused", "too_large", 413)


def test_a_listing_with_a_bad_field_is_400_naming_it(tablet, public_key):
    item = household_item(public_key)
    listing = {**item.listing(), "sha256": "not-a-hash"}
    response = tablet._json("POST", f"{tablet.path}/sessions", {"items": [listing]})
    assert response.status_code == 400
    assert "sha256" in response.get_json()["error"]["details"]["items"]["0"]


def test_an_instance_listed_twice_is_400(tablet, public_key):
    item = household_item(public_key)
    response = tablet.open([item, item])
    assert response.status_code == 400
    assert "listed twice" in response.get_json()["error"]["message"]


def test_another_devices_session_is_not_found(client, session, tablet, public_key, hodan):
    session_id, _ = tablet.open_ok([household_item(public_key)])
    other = UserFactory(districts=[hodan])
    _token, secret = accounts.issue_token(session, None, other, kind="device")
    stranger = SyncDevice(client, secret)
    stranger.enroll()
    assert stranger.state(session_id).status_code == 404
    assert stranger.send(session_id, b"").status_code == 404


def test_closing_summarises_the_session_and_a_closed_session_takes_no_more(tablet, public_key):
    stored, waiting = household_item(public_key), household_item(public_key)
    session_id, _ = tablet.open_ok([stored, waiting])
    tablet.send_ok(session_id, frames(whole(0, stored), (1, waiting, 0, 100)))

    summary = tablet.close(session_id).get_json()

    assert (summary["listed"], summary["stored"], summary["needed"]) == (2, 1, 1)
    assert summary["outcomes"] == {"created": 1}
    assert summary["bytes_received"] == stored.size + 100
    assert summary["items"][1]["offset"] == 100
    late = tablet.send(session_id, frames((1, waiting, 100, waiting.size - 100)))
    assert late.status_code == 409


# ------------------------------------------------------------------- resuming


def test_an_interrupted_item_resumes_from_the_bytes_already_received(tablet, public_key, session):
    item = household_item(public_key)
    session_id, _ = tablet.open_ok([item])
    half = item.size // 2
    # The link drops mid-frame: the body ends inside the frame, after `half` bytes.
    cut = frames(whole(0, item))[: len(f"0 0-{item.size - 1}/{item.size}\n") + half]
    assert tablet.send(session_id, cut).status_code == 400

    # The device comes back later, in a new session: the server kept the first half.
    session_id, states = tablet.open_ok([item])
    assert states[0] == {
        "index": 0,
        "instance_id": item.instance_id,
        "state": "needed",
        "offset": half,
    }
    acks = tablet.send_ok(session_id, frames((0, item, half, item.size - half)))

    assert acks[0]["outcome"] == "created"
    assert only_submission(session, item.instance_id).xml_size > 0


def test_put_with_content_range_sends_one_item_in_chunks(tablet, public_key, session, uploads):
    item = household_item(public_key)
    session_id, _ = tablet.open_ok([item])
    first = tablet.put_range(session_id, 0, item.body[:1000], f"bytes 0-999/{item.size}")
    assert first.get_json()["item"] == {
        "index": 0,
        "instance_id": item.instance_id,
        "state": "needed",
        "offset": 1000,
    }
    assert uploads.offset(uuid.UUID(tablet.device_id), item.sha256) == 1000

    rest = tablet.put_range(
        session_id, 0, item.body[1000:], f"bytes 1000-{item.size - 1}/{item.size}"
    )

    assert rest.get_json()["item"]["outcome"] == "created"
    assert uploads.offset(uuid.UUID(tablet.device_id), item.sha256) == 0  # partial removed
    assert counts(session)[0] == 1


def test_a_malformed_content_range_is_400(tablet, public_key):
    item = household_item(public_key)
    session_id, _ = tablet.open_ok([item])
    response = tablet.put_range(session_id, 0, item.body, "bytes=0-")
    assert response.status_code == 400
    assert "Content-Range" in response.get_json()["error"]["message"]


def test_a_range_beyond_what_arrived_is_answered_with_the_offset_to_resume_from(tablet, public_key):
    item = household_item(public_key)
    session_id, _ = tablet.open_ok([item])
    tablet.send_ok(session_id, frames((0, item, 0, 500)))

    answer = tablet.send_ok(session_id, frames((0, item, 800, 200)))[0]

    assert answer["offset"] == 500
    assert answer["error"]["code"] == "offset_mismatch"
    assert "send from byte 500" in answer["error"]["message"]


def test_a_range_repeating_bytes_already_received_replaces_them(tablet, public_key, session):
    item = household_item(public_key)
    session_id, _ = tablet.open_ok([item])
    tablet.send_ok(session_id, frames((0, item, 0, 700)))

    # The device did not hear the answer and starts that item over from byte 0.
    acks = tablet.send_ok(session_id, frames(whole(0, item)))

    assert acks[0]["outcome"] == "created"
    assert counts(session)[0] == 1


def test_bytes_that_do_not_match_the_listed_sha256_start_over_from_zero(
    tablet, public_key, session, uploads
):
    item = household_item(public_key)
    session_id, _ = tablet.open_ok([item])
    damaged = Item(item.instance_id, item.form_id, item.version, b"X" + item.body[1:])

    answer = tablet.send_ok(session_id, frames(whole(0, damaged)))[0]

    assert (answer["state"], answer["offset"]) == ("needed", 0)
    assert answer["error"]["code"] == "checksum_mismatch"
    assert uploads.offset(uuid.UUID(tablet.device_id), item.sha256) == 0
    assert counts(session) == (0, 0)
    assert tablet.send_ok(session_id, frames(whole(0, item)))[0]["outcome"] == "created"


def test_an_item_whose_bytes_all_arrived_before_a_crash_is_finished_when_listed(
    tablet, public_key, session, uploads
):
    item = household_item(public_key)
    # The server died after writing the last byte and before deciding.
    partial = uploads.path(uuid.UUID(tablet.device_id), item.sha256)
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(item.body)

    _session_id, states = tablet.open_ok([item])

    assert (states[0]["state"], states[0]["outcome"]) == ("stored", "created")
    assert not partial.exists()
    assert counts(session)[0] == 1


def test_session_state_reports_offsets_of_items_in_progress(tablet, public_key):
    first, second = household_item(public_key), household_item(public_key)
    session_id, _ = tablet.open_ok([first, second])
    tablet.send_ok(session_id, frames(whole(0, first), (1, second, 0, 321)))

    items = tablet.state(session_id).get_json()["items"]

    assert [(i["state"], i.get("offset")) for i in items] == [("stored", None), ("needed", 321)]


# ------------------------------------------------------------------------ gzip


def test_gzip_request_bodies_are_accepted_for_listings_and_frames(tablet, public_key, session):
    items = [household_item(public_key) for _ in range(2)]
    response = tablet.open(items, compress=True)
    assert response.status_code == 201
    session_id = response.get_json()["session_id"]

    body = gzip.compress(frames(*(whole(i, item) for i, item in enumerate(items))))
    answer = tablet.send(session_id, body, **{"Content-Encoding": "gzip"})

    assert answer.status_code == 200
    assert [a["outcome"] for a in answer.get_json()["items"]] == ["created", "created"]


def test_a_gzip_bomb_is_refused_413_without_inflating_it(tablet, public_key, settings):
    session_id, _ = tablet.open_ok([household_item(public_key)])
    inflated = 9 * 1024 * 1024
    bomb = gzip.compress(  # ~9 KB on the wire, 9 MB once inflated
        f"0 0-{inflated - 1}/{inflated}\n".encode() + bytes(inflated), compresslevel=9
    )
    assert len(bomb) < 64 * 1024

    frames_bomb = tablet.send(session_id, bomb, **{"Content-Encoding": "gzip"})
    json_bomb = tablet.client.post(
        f"{tablet.path}/sessions",
        data=gzip.compress(b" " * (3 * 1024 * 1024)),
        content_type="application/json",
        headers={**tablet.headers, "Content-Encoding": "gzip"},
    )

    assert frames_bomb.status_code == 413
    assert "decompressed" in frames_bomb.get_json()["error"]["message"]
    assert json_bomb.status_code == 413


def test_a_body_that_is_not_gzip_is_400(tablet, public_key):
    session_id, _ = tablet.open_ok([household_item(public_key)])
    response = tablet.send(session_id, b"plainly not gzip", **{"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert "gzip" in response.get_json()["error"]["message"]


def test_other_content_encodings_are_415(tablet, public_key):
    session_id, _ = tablet.open_ok([household_item(public_key)])
    response = tablet.send(session_id, b"", **{"Content-Encoding": "br"})
    assert response.status_code == 415


def test_large_json_answers_are_gzipped_for_clients_that_accept_it(tablet, public_key):
    items = [household_item(public_key) for _ in range(20)]
    response = tablet.client.post(
        f"{tablet.path}/sessions",
        json={"items": [item.listing() for item in items]},
        headers={**tablet.headers, "Accept-Encoding": "gzip"},
    )
    assert response.headers["Content-Encoding"] == "gzip"
    body = json.loads(gzip.decompress(response.get_data()))
    assert len(body["items"]) == 20


def test_a_bad_frame_header_is_400_naming_the_byte(tablet, public_key):
    item = household_item(public_key)
    session_id, _ = tablet.open_ok([item])
    response = tablet.send(session_id, frames(whole(0, item)) + b"garbage\n")
    assert response.status_code == 400
    message = response.get_json()["error"]["message"]
    assert f"at byte {len(frames(whole(0, item)))}" in message
    # What came before the bad frame was stored all the same.
    assert tablet.state(session_id).get_json()["items"][0]["state"] == "stored"


def test_sync_items_record_the_submission_they_stored(tablet, public_key, session):
    item = household_item(public_key)
    session_id, _ = tablet.open_ok([item])
    tablet.send_ok(session_id, frames(whole(0, item)))
    session.expire_all()
    row = session.scalars(select(SyncItem).where(SyncItem.instance_id == item.instance_id)).one()
    assert row.submission_id == only_submission(session, item.instance_id).id
    assert row.sha256 == hashlib.sha256(item.body).hexdigest()
    assert (row.state, row.status) == ("stored", 201)
    assert session.scalar(select(Submission.device_id)) == tablet.device_id
