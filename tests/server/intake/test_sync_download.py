"""The download side of the batch sync API: forms changed since the device's state, the
registry's changes in the device's districts (upserts, removals, merges as redirects),
and what became of the device's submissions, stale offline updates included."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from forms.instance import parse_instance
from server.accounts import service as accounts
from server.blobs import blob_store
from server.catalog import service as catalog
from server.intake.models import Device, Submission
from server.registry import service as registry
from server.registry.models import Entity
from tests.factories import DistrictFactory, UserFactory
from tests.server.intake.conftest import only_submission
from tests.support.syncing import Item, SyncDevice, frames, household_item, item_from_xml
from tests.support.xlsforms import (
    HOUSEHOLD_FORM_ID,
    household_instance_xml,
    minimal_form_xlsx,
    villages_csv,
)


@pytest.fixture
def public_key(household) -> str:
    return catalog.definition_of(household).settings.public_key


@pytest.fixture
def tablet(client, session, enumerator) -> SyncDevice:
    _token, secret = accounts.issue_token(session, None, enumerator, kind="device")
    device = SyncDevice(client, secret)
    assert device.enroll().status_code == 201
    return device


def upload_item(tablet: SyncDevice, item: Item) -> dict:
    session_id, _ = tablet.open_ok([item])
    return tablet.send_ok(session_id, frames((0, item, 0, item.size)))[0]


@pytest.fixture
def into_registry(session, household, tablet):
    """Send a plain household submission through sync (encrypted), then let the registry
    take it in as the worker would once it has decrypted it (the form applies on receipt)."""
    household.form.registry_mode = "receipt"
    session.flush()
    public_key = catalog.definition_of(household).settings.public_key
    definition = catalog.definition_of(household)

    def send(xml: bytes) -> Submission:
        item = item_from_xml(public_key, xml)
        assert upload_item(tablet, item)["state"] == "stored"
        submission = only_submission(session, item.instance_id)
        registry.record_changes(session, [(submission, parse_instance(xml, definition))])
        session.flush()
        return submission

    return send


def another_household(**answers) -> bytes:
    """A household nobody would take for another (matching merges look-alikes by itself)."""
    n = uuid.uuid4().int
    return household_instance_xml(
        members=[],
        head_first_name=["Xaawo", "Cawo", "Sahra", "Ubax", "Ayaan"][n % 5],
        head_father_name=["Jaamac", "Warsame", "Nuur", "Galaal"][n % 4],
        head_grandfather_name=f"Qaalib{n % 1000}",
        national_id=str(n % 10**9).zfill(9),
        phone=f"061{n % 10**7:07d}",
        **answers,
    )


def update_xml(entity_id: str, base_version: int, **answers) -> bytes:
    """A household update made offline from version `base_version` of the entity."""
    xml = household_instance_xml(members=[], household_entity_id=entity_id, **answers)
    return xml.replace(
        b'create="1" dataset="households"',
        f'update="1" baseVersion="{base_version}" dataset="households"'.encode(),
    )


# -------------------------------------------------------------------------- forms


def test_forms_come_with_their_public_key_and_the_xform_only_when_changed(tablet, household):
    listing = tablet.get("/forms").get_json()
    (entry,) = listing["forms"]
    assert (entry["form_id"], entry["version"]) == (HOUSEHOLD_FORM_ID, household.version)
    assert entry["hash"] == f"md5:{household.xform_md5}"
    assert entry["encryption"] == "managed"
    assert entry["public_key"] == household.key.public_key
    assert entry["changed"] is True
    assert entry["xform"].encode() == household.xform_xml
    assert [m["filename"] for m in entry["media"]] == ["villages.csv"]

    again = tablet.get("/forms", have=f"{HOUSEHOLD_FORM_ID}:{household.xform_md5},gone:abc")
    (unchanged,) = again.get_json()["forms"]
    assert unchanged["changed"] is False and "xform" not in unchanged
    assert again.get_json()["removed"] == ["gone"]


def test_form_files_download_with_the_device_token(tablet, household):
    (entry,) = tablet.get("/forms").get_json()["forms"]
    url = urlsplit(entry["media"][0]["download_url"]).path
    response = tablet.client.get(url, headers=tablet.headers)
    assert response.status_code == 200
    assert response.data == villages_csv()


def test_forms_of_other_districts_are_not_offered(tablet, household, session, settings):
    elsewhere = DistrictFactory(code="luuq", name="Luuq")
    catalog.upload_form(
        session,
        None,
        data=minimal_form_xlsx("luuq_only", "1"),
        filename="luuq_only.xlsx",
        store=blob_store(settings.data_dir),
        key_encryption_key=settings.key_encryption_key,
        max_bytes=settings.max_form_bytes,
        district_ids=[elsewhere.id],
    )
    offered = [entry["form_id"] for entry in tablet.get("/forms").get_json()["forms"]]
    assert offered == [HOUSEHOLD_FORM_ID]


def test_a_malformed_have_is_400_naming_it(tablet, household):
    response = tablet.get("/forms", have="no-colon-here")
    assert response.status_code == 400
    assert "no-colon-here" in response.get_json()["error"]["message"]


# ----------------------------------------------------------------------- entities


def test_registry_changes_in_the_devices_districts_arrive_as_upserts(tablet, into_registry):
    entity_id = str(uuid.uuid4())
    into_registry(household_instance_xml(household_entity_id=entity_id))

    page = tablet.get("/entities", since=0).get_json()

    households = [c for c in page["changes"] if c["list_name"] == "households"]
    assert [(c["entity_id"], c["operation"], c["version"]) for c in households] == [
        (entity_id, "upsert", 1)
    ]
    assert households[0]["label"] == "Faadumo Cali Xasan"
    assert households[0]["properties"]["district"] == "hodan"
    assert len([c for c in page["changes"] if c["list_name"] == "members"]) == 3
    assert page["more"] is False
    assert page["cursor"] == max(c["seq"] for c in page["changes"])
    assert tablet.get("/entities", since=page["cursor"]).get_json()["changes"] == []


def test_entity_pages_follow_the_cursor_and_the_device_record_keeps_it(
    tablet, into_registry, session
):
    into_registry(another_household())
    into_registry(another_household())

    first = tablet.get("/entities", since=0, limit=1).get_json()
    second = tablet.get("/entities", since=first["cursor"], limit=1).get_json()

    assert first["more"] is True and len(first["changes"]) == 1
    assert second["changes"][0]["seq"] > first["cursor"]
    assert second["more"] is False
    device = session.get(Device, uuid.UUID(tablet.device_id))
    session.refresh(device)
    assert device.last_cursor == first["cursor"]


def test_a_merge_arrives_as_a_redirect_to_the_survivor(tablet, into_registry, session):
    survivor_id, merged_id = str(uuid.uuid4()), str(uuid.uuid4())
    into_registry(another_household(household_entity_id=survivor_id))
    into_registry(another_household(household_entity_id=merged_id))
    cursor = tablet.get("/entities", since=0).get_json()["cursor"]

    registry.merge(
        session,
        None,
        session.get(Entity, uuid.UUID(survivor_id)),
        session.get(Entity, uuid.UUID(merged_id)),
    )
    session.flush()
    changes = tablet.get("/entities", since=cursor).get_json()["changes"]

    merged = [c for c in changes if c["entity_id"] == merged_id]
    assert [(c["operation"], c["merged_into"]) for c in merged] == [("merge", survivor_id)]


def test_entities_of_other_districts_never_reach_the_device(
    client, session, tablet, into_registry, wadajir
):
    into_registry(household_instance_xml(members=[], district="wadajir", village="halane"))
    assert tablet.get("/entities", since=0).get_json()["changes"] == []


def test_bad_paging_arguments_are_400(tablet, household):
    assert tablet.get("/entities", since=-1).status_code == 400
    assert tablet.get("/entities", limit=0).status_code == 400
    assert tablet.get("/entities", since="x").status_code == 400


# ------------------------------------------------------------------------ status


def test_status_tells_the_device_the_review_outcome_of_its_submissions(tablet, public_key, session):
    item = household_item(public_key)
    upload_item(tablet, item)
    submission = only_submission(session, item.instance_id)
    submission.review_state = "approved"
    session.flush()

    (entry,) = tablet.status([item.instance_id]).get_json()["submissions"]

    assert entry["known"] is True
    assert entry["review_state"] == "approved"
    assert entry["processing_state"] == "queued"
    assert entry["conflicts"] == []


def test_status_does_not_disclose_other_peoples_submissions(
    client, session, tablet, public_key, hodan
):
    colleague = UserFactory(districts=[hodan])
    _token, secret = accounts.issue_token(session, None, colleague, kind="device")
    theirs = SyncDevice(client, secret)
    theirs.enroll()
    item = household_item(public_key)
    upload_item(theirs, item)

    (entry,) = tablet.status([item.instance_id]).get_json()["submissions"]

    assert entry == {"instance_id": item.instance_id, "known": False}


def test_a_device_whose_offline_update_was_based_on_an_old_version_is_told_so(
    tablet, into_registry, session
):
    entity_id = str(uuid.uuid4())
    into_registry(household_instance_xml(members=[], household_entity_id=entity_id))
    # Someone else's update reached the server first (version 1 → 2) ...
    into_registry(update_xml(entity_id, 1, phone="0615000001"))
    # ... and this tablet, offline for days, also changed the phone from version 1.
    stale = into_registry(update_xml(entity_id, 1, phone="0615999999"))

    (entry,) = tablet.status([stale.instance_id]).get_json()["submissions"]

    assert len(entry["conflicts"]) == 1
    assert "based on version 1" in entry["conflicts"][0]
    assert "phone" in entry["conflicts"][0]
    assert session.scalar(select(Entity.version).where(Entity.id == uuid.UUID(entity_id))) == 2


def test_status_takes_at_most_a_thousand_ids(tablet, household):
    response = tablet.status([f"uuid:{i}" for i in range(1001)])
    assert response.status_code == 400
    assert "instance_ids" in response.get_json()["error"]["details"]
