"""Managed encryption: one RSA key pair per deployment, its public half in every form
version, its private half sealed at rest under the key-encryption key, rotation that keeps
old keys, and forms that bring their own key (self-managed)."""

from __future__ import annotations

import base64
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, text

from server.catalog import service
from server.catalog.models import ServerKey
from server.errors import NotFound
from sync import crypto
from tests.factories import AdminFactory, SupervisorFactory, UserFactory
from tests.server.catalog.helpers import MINIMAL_V2_XLSX, MINIMAL_XLSX, XFORMS, parse_xml
from tests.support.xlsforms import SELF_MANAGED_PUBLIC_KEY, minimal_form_xlsx


def form_public_key(xform_xml: bytes) -> str | None:
    submission = parse_xml(xform_xml).find(f".//{{{XFORMS}}}model/{{{XFORMS}}}submission")
    return None if submission is None else submission.get("base64RsaPublicKey")


def stored_sealed_key(session, fingerprint: str) -> bytes:
    """The column's bytes as the database holds them, read without the ORM."""
    rows = session.execute(text("SELECT fingerprint, sealed_private_key FROM server_key"))
    return bytes(next(sealed for found, sealed in rows if found == fingerprint))


def test_first_upload_makes_the_deployment_key_and_puts_its_public_half_in_the_form(
    upload, session
):
    version = upload(MINIMAL_XLSX).version

    [key] = session.scalars(select(ServerKey)).all()
    assert key.active and key.retired_at is None
    assert version.encryption == "managed"
    assert version.key_id == key.id
    assert form_public_key(version.xform_xml) == key.public_key
    public = crypto.load_public_key(key.public_key)
    assert public.key_size == 2048
    assert crypto.fingerprint(public) == key.fingerprint


def test_private_key_is_sealed_at_rest_and_opens_only_with_the_configured_kek(upload, session, kek):
    key = upload(MINIMAL_XLSX).version.key
    sealed = stored_sealed_key(session, key.fingerprint)

    private = service.private_key(session, key.id, kek)

    assert crypto.fingerprint(private) == key.fingerprint
    for encoding, layout in [
        (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8),
        (serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL),
        (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8),
        (serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL),
    ]:
        clear = private.private_bytes(encoding, layout, serialization.NoEncryption())
        assert clear not in sealed
        assert clear[64:128] not in sealed
    assert b"PRIVATE KEY" not in sealed
    exponent = private.private_numbers().d.to_bytes(256, "big").lstrip(b"\0")
    assert exponent[:32] not in sealed
    assert base64.b64encode(exponent[:48]) not in sealed

    with pytest.raises(crypto.WrongKeyError):
        service.private_key(session, key.id, "another-key-encryption-key-0123456789")
    with pytest.raises(NotFound):
        service.private_key(session, uuid.uuid4(), kek)


def test_a_submission_encrypted_with_a_managed_form_decrypts_with_the_server_key(
    upload, session, kek
):
    version = upload(MINIMAL_XLSX).version
    instance_id = f"uuid:{uuid.uuid4()}"
    xml = (
        '<data id="minimal" version="1"><name>Xaliimo</name>'
        f"<meta><instanceID>{instance_id}</instanceID></meta></data>"
    ).encode()
    encrypted = crypto.encrypt_submission(
        xml=xml,
        media=[],
        instance_id=instance_id,
        form_id="minimal",
        form_version="1",
        public_key=crypto.load_public_key(str(form_public_key(version.xform_xml))),
    )

    decrypted = crypto.decrypt_submission(
        form_id="minimal",
        form_version="1",
        instance_id=instance_id,
        base64_encrypted_key=encrypted.base64_encrypted_key,
        base64_signature=encrypted.base64_signature,
        encrypted_files=encrypted.files,
        encrypted_xml_file=encrypted.encrypted_xml_file,
        private_key=service.private_key(session, version.key_id, kek),
    )

    assert decrypted.xml == xml


def test_rotation_gives_new_versions_a_new_key_and_keeps_the_old_one(upload, session, kek):
    first = upload(MINIMAL_XLSX).version
    old_key = first.key

    new_key = service.rotate_key(session, None, kek)
    second = upload(MINIMAL_V2_XLSX).version

    assert new_key.id != old_key.id
    assert (old_key.active, new_key.active) == (False, True)
    assert old_key.retired_at is not None
    assert second.key_id == new_key.id
    assert form_public_key(second.xform_xml) == new_key.public_key
    assert first.key_id == old_key.id
    assert form_public_key(first.xform_xml) == old_key.public_key
    assert crypto.fingerprint(service.private_key(session, old_key.id, kek)) == (
        old_key.fingerprint
    )
    assert service.active_key(session, kek).id == new_key.id
    assert session.scalar(select(ServerKey).where(ServerKey.id == old_key.id)) is not None


def test_a_form_that_brings_its_own_public_key_is_self_managed(upload, session):
    version = upload(
        minimal_form_xlsx("sealed_survey", "1", public_key=SELF_MANAGED_PUBLIC_KEY)
    ).version

    assert version.encryption == "self-managed"
    assert version.key_id is None
    assert form_public_key(version.xform_xml) == SELF_MANAGED_PUBLIC_KEY
    assert any("self-managed" in warning["message"] for warning in version.warnings)
    assert service.definition_of(version).settings.encryption == "self-managed"


def test_administrator_rotates_the_key_from_the_keys_page(browser, session, kek):
    original = service.active_key(session, kek)
    admin = AdminFactory()
    browser.login(admin.username)

    page = browser.get("/keys")
    rotated = browser.post("/keys/rotate")

    assert page.status_code == 200
    assert original.fingerprint[:32] in page.get_data(as_text=True)
    assert rotated.status_code == 302
    session.expire_all()
    keys = session.scalars(select(ServerKey).order_by(ServerKey.created_at)).all()
    assert [k.active for k in keys] == [False, True]
    after = browser.get("/keys").get_data(as_text=True)
    assert "retired" in after and keys[1].fingerprint[:32] in after


def test_keys_api_shows_public_parts_only_and_only_to_administrators(client, session, bearer, kek):
    key = service.active_key(session, kek)

    response = client.get("/api/v1/keys", headers=bearer(AdminFactory()))
    supervisor = client.get("/api/v1/keys", headers=bearer(SupervisorFactory()))
    enumerator = client.get("/api/v1/keys", headers=bearer(UserFactory()))

    assert response.status_code == 200
    [listed] = response.get_json()
    assert set(listed) == {"id", "fingerprint", "public_key", "active", "created_at", "retired_at"}
    assert listed["public_key"] == key.public_key
    assert (supervisor.status_code, enumerator.status_code) == (403, 403)


def test_only_administrators_may_rotate_keys(client, browser, bearer, session, kek):
    service.active_key(session, kek)
    supervisor = SupervisorFactory()
    browser.login(supervisor.username)

    page = browser.post("/keys/rotate")
    api = client.post("/api/v1/keys/rotate", headers=bearer(UserFactory()))

    assert (page.status_code, api.status_code) == (403, 403)
    session.expire_all()
    assert len(session.scalars(select(ServerKey)).all()) == 1
