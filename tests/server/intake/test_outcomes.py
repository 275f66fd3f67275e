"""Every outcome of `POST /submission`, through real multipart bodies and real credentials:
the status, the OpenRosa response, the rows and the blob files."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from server.catalog import service as catalog
from server.intake.models import Submission
from server.intake.service import STATUS, STORED, Outcome
from tests.factories import SupervisorFactory, UserFactory
from tests.server.intake.conftest import (
    Device,
    blob_files,
    counts,
    household_xlsx,
    only_submission,
    upload,
)
from tests.support.submissions import (
    PHOTO,
    PHOTO_NAME,
    Attachment,
    encrypted_household,
    openrosa_message,
)
from tests.support.xlsforms import (
    HOUSEHOLD_FORM_VERSION,
    household_instance_xml,
)

OPENROSA_MAX = str(50 * 1024 * 1024)


def photo() -> Attachment:
    return Attachment(PHOTO_NAME, PHOTO, "image/jpeg")


def assert_refused(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.data
    assert response.headers["X-OpenRosa-Version"] == "1.0"
    nature, message = openrosa_message(response.data)
    assert nature == "error"
    for word in words:
        assert word in message, message
    return message


def assert_accepted(response, status: int) -> str:
    assert response.status_code == status, response.data
    assert response.headers["X-OpenRosa-Version"] == "1.0"
    nature, message = openrosa_message(response.data)
    assert nature == ""
    return message


def test_every_outcome_has_one_status_and_only_successes_count_as_stored():
    assert set(STATUS) == set(Outcome)
    assert {outcome for outcome in Outcome if STATUS[outcome] in (201, 202)} == STORED


@pytest.mark.parametrize("provisioned", [False, True], ids=["basic", "key-prefix"])
def test_head_submission_answers_204_with_the_largest_accepted_body(
    household, device, provisioned_device, provisioned
):
    response = (provisioned_device if provisioned else device).head()
    assert response.status_code == 204
    assert response.headers["X-OpenRosa-Accept-Content-Length"] == OPENROSA_MAX
    assert response.headers["X-OpenRosa-Version"] == "1.0"
    assert response.data == b""


def test_post_without_credentials_is_401_with_a_basic_challenge(client, household, session):
    response = Device(client).post(household_instance_xml())
    assert_refused(response, 401, "authentication")
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert counts(session) == (0, 0)


def test_wrong_device_token_is_401(client, household, session):
    response = Device(client, url_token="x" * 43).post(household_instance_xml())
    assert_refused(response, 401, "unknown token")
    assert counts(session) == (0, 0)


@pytest.mark.parametrize("provisioned", [False, True], ids=["basic", "key-prefix"])
def test_new_submission_returns_201_and_is_stored_with_its_attachment(
    household, device, provisioned_device, provisioned, session, store, enumerator, hodan
):
    xml = household_instance_xml()
    response = (provisioned_device if provisioned else device).post(xml, [photo()])

    assert_accepted(response, 201)
    submission = session.scalars(select(Submission)).one()
    assert submission.form_version_id == household.id
    assert submission.submitter_id == enumerator.id
    assert submission.district_id == hodan.id  # the only district both share
    assert submission.instance_name == "HH Faadumo Cali Xasan"
    assert (submission.processing_state, submission.complete) == ("queued", True)
    assert not submission.encrypted and submission.current
    assert store.read(submission.xml_sha256) == xml
    assert submission.xml_size == len(xml)
    (attachment,) = submission.attachments
    assert (attachment.name, attachment.content_type, attachment.size) == (
        PHOTO_NAME,
        "image/jpeg",
        len(PHOTO),
    )
    assert store.read(attachment.sha256) == PHOTO
    assert not list((store.root / "tmp").iterdir())


def test_resubmitting_same_instance_returns_202_and_stores_nothing(
    household, device, session, store
):
    xml = household_instance_xml()
    assert_accepted(device.post(xml, [photo()]), 201)
    rows, files = counts(session), blob_files(store)

    message = assert_accepted(device.post(xml, [photo()]), 202)

    assert "already received" in message
    assert counts(session) == rows == (1, 1)
    assert blob_files(store) == files


def test_same_instance_with_different_content_is_409_and_keeps_the_first(
    household, device, session, store
):
    instance_id = f"uuid:{uuid.uuid4()}"
    first = household_instance_xml(instance_id=instance_id)
    assert_accepted(device.post(first), 201)
    rows, files = counts(session), blob_files(store)

    changed = household_instance_xml(instance_id=instance_id, head_first_name="Hodan")
    assert_refused(device.post(changed, [photo()]), 409, instance_id, "different content")

    assert counts(session) == rows
    assert blob_files(store) == files
    assert store.read(only_submission(session, instance_id).xml_sha256) == first


def test_edit_creates_a_new_version_linked_to_the_old(household, device, session):
    original_id = f"uuid:{uuid.uuid4()}"
    assert_accepted(device.post(household_instance_xml(instance_id=original_id)), 201)

    edit_id = f"uuid:{uuid.uuid4()}"
    edit = household_instance_xml(
        instance_id=edit_id, deprecated_id=original_id, head_first_name="Hodan"
    )
    assert_accepted(device.post(edit), 201)

    original, edited = only_submission(session, original_id), only_submission(session, edit_id)
    assert original.current is False
    assert edited.current is True
    assert edited.deprecated_id == original_id
    assert edited.district_id == original.district_id
    assert edited.processing_state == "queued"
    # Repeating the edit is a duplicate like any other.
    assert_accepted(device.post(edit), 202)
    assert counts(session) == (2, 0)


def test_edit_of_an_unknown_instance_is_404_naming_it(household, device, session):
    edit = household_instance_xml(deprecated_id="uuid:never-seen")
    assert_refused(device.post(edit), 404, "uuid:never-seen")
    assert counts(session) == (0, 0)


def test_edit_of_an_already_replaced_version_is_409(household, device, session):
    original_id = f"uuid:{uuid.uuid4()}"
    assert_accepted(device.post(household_instance_xml(instance_id=original_id)), 201)
    assert_accepted(device.post(household_instance_xml(deprecated_id=original_id)), 201)

    second_edit = household_instance_xml(deprecated_id=original_id, head_first_name="Ayaan")
    assert_refused(device.post(second_edit), 409, original_id, "already replaced")
    assert counts(session) == (2, 0)


def test_unknown_form_is_404_naming_it(household, device, session):
    xml = household_instance_xml(form_id="no_such_form")
    assert_refused(device.post(xml), 404, "no_such_form")
    assert counts(session) == (0, 0)


@pytest.mark.parametrize("version", ["1999010101", None], ids=["unknown", "missing"])
def test_unknown_or_missing_version_is_404_naming_the_form(household, device, session, version):
    message = assert_refused(
        device.post(household_instance_xml(version=version)), 404, "household_registration"
    )
    if version:
        assert version in message
    assert counts(session) == (0, 0)


def test_closed_form_is_403_with_a_message_but_known_instances_still_get_202(
    household, device, session
):
    already = household_instance_xml()
    assert_accepted(device.post(already), 201)
    catalog.close_version(session, None, household)

    assert_refused(device.post(household_instance_xml()), 403, HOUSEHOLD_FORM_VERSION, "closed")
    # A device retrying what was received before the form closed must be able to forget it.
    assert_accepted(device.post(already), 202)
    assert counts(session) == (1, 0)


def test_draft_version_is_403(session, settings, server_key, hodan, device):
    upload(session, settings, household_xlsx(), [hodan], publish=False)
    assert_refused(device.post(household_instance_xml()), 403, "not published")
    assert counts(session) == (0, 0)


def test_form_not_assigned_to_the_callers_districts_is_403(client, household, session):
    elsewhere = UserFactory(districts=[])
    response = Device(client, user=elsewhere).post(household_instance_xml())
    assert_refused(response, 403, "not assigned to your districts")
    assert counts(session) == (0, 0)


def test_roles_that_do_not_fill_forms_are_403(client, household, session, hodan):
    supervisor = SupervisorFactory(districts=[hodan])
    response = Device(client, user=supervisor).post(household_instance_xml())
    assert_refused(response, 403, "supervisor")
    assert counts(session) == (0, 0)


@pytest.mark.parametrize(
    ("xml", "words"),
    [
        (b"<data id='household_registration'><a>", ["xml_submission_file", "line 1"]),
        (b"<data version='1'><meta><instanceID>uuid:1</instanceID></meta></data>", ["form ID"]),
        (b"<data id='household_registration' version='2026112601'/>", ["instanceID"]),
        (b"", ["empty"]),
    ],
    ids=["unclosed", "no-form-id", "no-instance-id", "empty"],
)
def test_malformed_submission_xml_is_400_naming_the_problem(
    household, device, session, store, xml, words
):
    files = blob_files(store)
    assert_refused(device.post(xml), 400, *words)
    assert counts(session) == (0, 0)
    assert blob_files(store) == files


def test_body_that_is_not_multipart_is_400(household, device, session):
    response = device.post_body(household_instance_xml(), "text/xml")
    assert_refused(response, 400, "multipart/form-data", "text/xml")
    assert counts(session) == (0, 0)


def test_multipart_without_the_xml_part_is_400(household, device, session):
    body = (
        b'--b\r\nContent-Disposition: form-data; name="photo.jpg"; filename="photo.jpg"\r\n'
        b"\r\n\xff\xd8\r\n--b--\r\n"
    )
    response = device.post_body(body, "multipart/form-data; boundary=b")
    assert_refused(response, 400, "xml_submission_file")
    assert counts(session) == (0, 0)


def test_attachments_split_over_two_posts_complete_the_submission(
    household, device, session, store
):
    """Collect splits a large upload: the same XML each time, `*isIncomplete*` on all but
    the last POST; the submission waits for the last before it is processed."""
    xml = household_instance_xml()
    instance_id = only_instance_id(xml)
    signature = Attachment("signature.png", b"\x89PNG signature", "image/png")

    assert_accepted(device.post(xml, [photo()], incomplete=True), 201)
    waiting = only_submission(session, instance_id)
    assert (waiting.processing_state, waiting.complete) == ("waiting", False)

    assert_accepted(device.post(xml, [signature]), 201)
    done = only_submission(session, instance_id)
    assert (done.processing_state, done.complete) == ("queued", True)
    assert {a.name: store.read(a.sha256) for a in done.attachments} == {
        PHOTO_NAME: PHOTO,
        "signature.png": b"\x89PNG signature",
    }
    # Collect retrying the last POST after a lost response changes nothing.
    assert_accepted(device.post(xml, [signature]), 202)
    assert counts(session) == (1, 2)


def test_encrypted_submission_is_stored_encrypted_and_complete_when_every_file_arrived(
    household, provisioned_device, session, store
):
    submission = encrypted_household(household.key.public_key)
    media_file, xml_file = submission.attachments
    assert (media_file.name, xml_file.name) == (f"{PHOTO_NAME}.enc", "submission.xml.enc")

    assert_accepted(provisioned_device.post(submission.manifest, [media_file]), 201)
    waiting = only_submission(session, submission.instance_id)
    assert waiting.encrypted
    assert (waiting.processing_state, waiting.complete) == ("waiting", False)
    assert [(a.name, a.sha256 is not None) for a in waiting.attachments] == [
        (f"{PHOTO_NAME}.enc", True),
        ("submission.xml.enc", False),
    ]

    assert_accepted(provisioned_device.post(submission.manifest, [xml_file]), 201)
    stored = only_submission(session, submission.instance_id)
    assert (stored.processing_state, stored.complete) == ("queued", True)
    assert store.read(stored.xml_sha256) == submission.manifest
    # The server keeps what the device sent, still encrypted; the worker decrypts it.
    assert [store.read(a.sha256) for a in stored.attachments] == [
        media_file.content,
        xml_file.content,
    ]
    assert submission.plain_xml not in [store.read(a.sha256) for a in stored.attachments]
    assert_accepted(provisioned_device.post(submission.manifest, submission.attachments), 202)
    assert counts(session) == (1, 2)


def only_instance_id(xml: bytes) -> str:
    from forms.instance import read_envelope

    return read_envelope(xml).instance_id
