"""Hostile bodies: entity expansion, external entities, deep nesting, bytes that are not
UTF-8, attachment names that climb out of directories, bodies over the limit. Each gets a
4xx naming what is wrong, and nothing is stored — no row, no blob."""

from __future__ import annotations

import io

import pytest

from server.blobs import blob_store
from server.intake.models import Submission
from sync import crypto
from tests.server.intake.conftest import Device, blob_files, counts, only_submission
from tests.support.submissions import (
    Attachment,
    encode_multipart,
    encrypted_household,
    openrosa_message,
)
from tests.support.xlsforms import household_instance_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE data [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<data id="household_registration" version="2026112601">
 <head><head_first_name>&lol9;</head_first_name></head>
 <meta><instanceID>uuid:laughs</instanceID></meta>
</data>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE data [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<data id="household_registration" version="2026112601">
 <head><head_first_name>&secret;</head_first_name></head>
 <meta><instanceID>uuid:xxe</instanceID></meta>
</data>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE data SYSTEM "http://127.0.0.1:9/evil.dtd">
<data id="household_registration" version="2026112601">
 <meta><instanceID>uuid:dtd</instanceID></meta>
</data>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE data [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>
<data id="household_registration" version="2026112601">
 <meta><instanceID>uuid:param</instanceID></meta>
</data>"""


def deeply_nested(levels: int) -> bytes:
    return (
        b'<data id="household_registration" version="2026112601">'
        + b"<g>" * levels
        + b"</g>" * levels
        + b"<meta><instanceID>uuid:deep</instanceID></meta></data>"
    )


def not_utf8() -> bytes:
    return household_instance_xml(head_first_name="Faadumo").replace(b"Faadumo", b"Faa\xff\xfemo")


def assert_nothing_stored(session, store, files_before) -> None:
    assert counts(session) == (0, 0)
    assert blob_files(store) == files_before


@pytest.mark.parametrize(
    ("xml", "words"),
    [
        (BILLION_LAUGHS, ["document type declarations"]),
        (EXTERNAL_ENTITY, ["document type declarations"]),
        (EXTERNAL_DTD, ["document type declarations"]),
        (PARAMETER_ENTITY, ["document type declarations"]),
        (deeply_nested(5000), ["levels deep"]),
        (not_utf8(), ["malformed XML", "line 1"]),
    ],
    ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity", "deep", "utf8"],
)
def test_hostile_xml_is_400_naming_the_problem_and_stores_nothing(
    household, device, session, store, xml, words
):
    before = blob_files(store)
    response = device.post(xml, [Attachment("photo.jpg", b"\xff\xd8")])

    assert response.status_code == 400
    nature, message = openrosa_message(response.data)
    assert nature == "error"
    for word in words:
        assert word in message, message
    assert b"root:" not in response.data  # /etc/passwd never read, never echoed
    assert_nothing_stored(session, store, before)


def test_too_many_elements_is_400(household, device, session, store):
    before = blob_files(store)
    wide = (
        b'<data id="household_registration" version="2026112601">'
        + b"<a/>" * 500_001
        + b"<meta><instanceID>uuid:wide</instanceID></meta></data>"
    )
    response = device.post(wide)
    assert response.status_code == 400
    assert "500,000 elements" in openrosa_message(response.data)[1]
    assert_nothing_stored(session, store, before)


@pytest.mark.parametrize(
    "name",
    ["../../etc/cron.d/evil", "..", "/etc/passwd", "..\\..\\windows\\evil.dll", "a/b.jpg"],
)
def test_attachment_names_that_leave_the_directory_are_400(household, device, session, store, name):
    before = blob_files(store)
    response = device.post(household_instance_xml(), [Attachment(name, b"payload")])
    assert response.status_code == 400
    assert "not a plain file name" in openrosa_message(response.data)[1]
    assert_nothing_stored(session, store, before)


def test_encrypted_manifest_naming_a_path_is_400(household, device, session, store):
    submission = encrypted_household(household.key.public_key)
    manifest = submission.manifest.replace(
        b"<encryptedXmlFile>submission.xml.enc", b"<encryptedXmlFile>../submission.xml.enc"
    )
    before = blob_files(store)
    response = device.post(manifest, submission.attachments)
    assert response.status_code == 400
    assert "unsafe file" in openrosa_message(response.data)[1]
    assert_nothing_stored(session, store, before)


def test_hostile_xml_inside_an_encrypted_submission_fails_processing_with_the_reason(
    household, device, session, worker
):
    encrypted = crypto.encrypt_submission(
        xml=BILLION_LAUGHS.replace(b"uuid:laughs", b"uuid:sealed-laughs"),
        media=[],
        instance_id="uuid:sealed-laughs",
        form_id="household_registration",
        form_version="2026112601",
        public_key=crypto.load_public_key(household.key.public_key),
    )
    files = [Attachment(name, content) for name, content in encrypted.files]
    assert device.post(encrypted.manifest_xml, files).status_code == 201

    worker()
    failed = only_submission(session, "uuid:sealed-laughs")
    assert failed.processing_state == "failed"
    assert "document type declarations" in failed.last_error
    assert failed.data is None


@pytest.fixture
def small_app(make_app, household):
    """The application with DIIWAAN_MAX_SUBMISSION_MB=1."""
    return make_app(max_submission_mb=1)


def test_head_advertises_the_configured_limit(small_app, enumerator):
    response = Device(small_app.test_client(), user=enumerator).head()
    assert response.headers["X-OpenRosa-Accept-Content-Length"] == str(1024 * 1024)


def test_body_over_the_limit_is_413_and_stores_nothing(small_app, enumerator, session):
    store = blob_store(small_app.config["DIIWAAN"].data_dir)
    before = blob_files(store)
    photo = Attachment("photo.jpg", b"\xff" * (1024 * 1024 + 1))
    response = Device(small_app.test_client(), user=enumerator).post(
        household_instance_xml(), [photo]
    )

    assert response.status_code == 413
    nature, message = openrosa_message(response.data)
    assert nature == "error"
    assert str(1024 * 1024) in message
    assert response.headers["X-OpenRosa-Version"] == "1.0"
    assert_nothing_stored(session, store, before)


# Werkzeug's multipart parser stops at the limit without closing the spool file of the part
# it was reading; CPython closes it at once (refcount) but warns. Nothing of ours leaks.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_chunked_body_over_the_limit_is_413_and_stores_nothing(small_app, enumerator, session):
    """Without a Content-Length the limit is enforced while the body streams in."""
    store = blob_store(small_app.config["DIIWAAN"].data_dir)
    before = blob_files(store)
    body, content_type = encode_multipart(
        household_instance_xml(), [Attachment("photo.jpg", b"\xff" * (2 * 1024 * 1024))]
    )
    device = Device(small_app.test_client(), user=enumerator)
    response = small_app.test_client().post(
        "/submission",
        input_stream=io.BytesIO(body),
        content_type=content_type,
        headers={**device.headers, "Transfer-Encoding": "chunked"},
        # What gunicorn and Werkzeug's server say of a chunked body: read it to its end.
        environ_overrides={"wsgi.input_terminated": True},
    )

    assert response.status_code == 413
    assert openrosa_message(response.data)[0] == "error"
    assert_nothing_stored(session, store, before)
    assert session.query(Submission).count() == 0
