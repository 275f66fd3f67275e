"""Reading the envelope of a submission safely, whatever client sent it."""

import pytest

from forms.instance import InstanceError, read_envelope
from tests.support.xlsforms import household_instance_xml

INSTANCE_ID = "uuid:3f1c9a4e-5b7d-4e2a-9c61-8f0d2b7a4e15"

COLLECT_ENCRYPTED = f"""<?xml version='1.0' encoding='UTF-8' ?>
<data xmlns="http://www.opendatakit.org/xforms/encrypted" id="household_registration"
      version="2026112601" encrypted="yes">
  <base64EncryptedKey>c2VjcmV0LWtleQ==</base64EncryptedKey>
  <orx:meta xmlns:orx="http://openrosa.org/xforms">
    <orx:instanceID>{INSTANCE_ID}</orx:instanceID>
  </orx:meta>
  <media><file>dwelling-1732620000000.jpg.enc</file></media>
  <media><file>signature.png.enc</file></media>
  <encryptedXmlFile>submission.xml.enc</encryptedXmlFile>
  <base64EncryptedElementSignature>c2lnbmF0dXJl</base64EncryptedElementSignature>
</data>""".encode()

DIIWAAN_ENCRYPTED = f"""<data xmlns="http://opendatakit.org/submissions" id="household_registration"
 version="2026112601" encrypted="yes">
  <base64EncryptedKey>c2VjcmV0LWtleQ==</base64EncryptedKey>
  <encryptedXmlFile>submission.xml.enc</encryptedXmlFile>
  <media><file>a.jpg.enc</file><file>b.m4a.enc</file></media>
  <base64EncryptedElementSignature>c2lnbmF0dXJl</base64EncryptedElementSignature>
  <meta xmlns="http://openrosa.org/xforms"><instanceID>{INSTANCE_ID}</instanceID></meta>
</data>""".encode()

ENKETO_ENCRYPTED = f"""<data id="household_registration" encrypted="yes"
 xmlns="http://opendatakit.org/submissions" xmlns:orx="http://openrosa.org/xforms">
  <orx:meta><orx:instanceID>{INSTANCE_ID}</orx:instanceID></orx:meta>
  <base64EncryptedKey>c2VjcmV0LWtleQ==</base64EncryptedKey>
  <media><file>first.jpg.enc</file></media>
  <media><file>second.jpg.enc</file></media>
  <media><file>third.jpg.enc</file></media>
  <encryptedXmlFile>submission.xml.enc</encryptedXmlFile>
  <base64EncryptedElementSignature>c2lnbmF0dXJl</base64EncryptedElementSignature>
</data>""".encode()


def envelope_error(xml: bytes, **kwargs: int) -> str:
    with pytest.raises(InstanceError) as caught:
        read_envelope(xml, **kwargs)
    return caught.value.message


def test_plain_submission_gives_form_version_instance_and_name() -> None:
    envelope = read_envelope(household_instance_xml(instance_id=INSTANCE_ID))
    assert envelope.form_id == "household_registration"
    assert envelope.version == "2026112601"
    assert envelope.instance_id == INSTANCE_ID
    assert envelope.instance_name == "HH Faadumo Cali Xasan"
    assert envelope.deprecated_id is None
    assert envelope.encrypted is False
    assert envelope.media_files == []


def test_an_edit_names_the_instance_it_replaces() -> None:
    old_id = "uuid:0b6d3c1e-1f0a-4d55-8a0b-6f2c1d9e7a30"
    envelope = read_envelope(household_instance_xml(instance_id=INSTANCE_ID, deprecated_id=old_id))
    assert envelope.deprecated_id == old_id


def test_a_form_without_version_has_version_none() -> None:
    envelope = read_envelope(household_instance_xml(version=None))
    assert envelope.version is None


def test_collect_encrypted_manifest_is_read_whatever_the_namespace_and_order() -> None:
    envelope = read_envelope(COLLECT_ENCRYPTED)
    assert envelope.encrypted is True
    assert envelope.instance_id == INSTANCE_ID
    assert envelope.base64_encrypted_key == "c2VjcmV0LWtleQ=="
    assert envelope.encrypted_xml_file == "submission.xml.enc"
    assert envelope.media_files == ["dwelling-1732620000000.jpg.enc", "signature.png.enc"]
    assert envelope.base64_encrypted_element_signature == "c2lnbmF0dXJl"


def test_diiwaan_manifest_with_several_files_in_one_media_keeps_their_order() -> None:
    envelope = read_envelope(DIIWAAN_ENCRYPTED)
    assert envelope.media_files == ["a.jpg.enc", "b.m4a.enc"]
    assert envelope.instance_id == INSTANCE_ID


def test_enketo_manifest_with_one_media_per_file_keeps_their_order() -> None:
    envelope = read_envelope(ENKETO_ENCRYPTED)
    assert envelope.media_files == ["first.jpg.enc", "second.jpg.enc", "third.jpg.enc"]
    assert envelope.version is None


def test_instance_id_falls_back_to_the_root_attribute() -> None:
    envelope = read_envelope(
        f'<data id="household_registration" instanceID="{INSTANCE_ID}"><a>1</a></data>'.encode()
    )
    assert envelope.instance_id == INSTANCE_ID


def test_submission_without_instance_id_is_refused() -> None:
    message = envelope_error(b'<data id="household_registration"><meta/></data>')
    assert message == "submission XML has no meta/instanceID"


def test_submission_without_form_id_is_refused() -> None:
    message = envelope_error(
        f"<data><meta><instanceID>{INSTANCE_ID}</instanceID></meta></data>".encode()
    )
    assert "no form ID" in message


def test_encrypted_manifest_without_its_key_is_refused() -> None:
    xml = DIIWAAN_ENCRYPTED.replace(
        b"<base64EncryptedKey>c2VjcmV0LWtleQ==</base64EncryptedKey>", b""
    )
    assert envelope_error(xml) == "encrypted submission has no base64EncryptedKey"


def test_encrypted_manifest_naming_a_path_is_refused() -> None:
    xml = DIIWAAN_ENCRYPTED.replace(b"a.jpg.enc", b"../../etc/passwd")
    assert "unsafe file" in envelope_error(xml)


def test_malformed_xml_names_line_and_column() -> None:
    message = envelope_error(b'<data id="f">\n  <meta>\n  <instanceID>x</meta>\n</data>')
    assert message.startswith("malformed XML at line 3, column ")
    assert "mismatched tag" in message


def test_empty_body_is_refused() -> None:
    assert envelope_error(b"  \n") == "submission XML is empty"


def test_external_entity_xxe_is_refused() -> None:
    xxe = b"""<?xml version="1.0"?>
<!DOCTYPE data [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<data id="f"><meta><instanceID>&secret;</instanceID></meta></data>"""
    message = envelope_error(xxe)
    assert "not allowed" in message
    assert "passwd" not in message


def test_billion_laughs_is_refused() -> None:
    lol = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<data id="f"><meta><instanceID>&lol3;</instanceID></meta></data>"""
    assert "document type declarations" in envelope_error(lol)


def test_deep_nesting_is_refused() -> None:
    depth = 200
    xml = b'<data id="f">' + b"<g>" * depth + b"</g>" * depth + b"</data>"
    assert "more than 64 levels deep" in envelope_error(xml)


def test_nesting_within_the_bound_is_read() -> None:
    xml = (
        b'<data id="f">'
        + b"<g>" * 60
        + b"</g>" * 60
        + f"<meta><instanceID>{INSTANCE_ID}</instanceID></meta></data>".encode()
    )
    assert read_envelope(xml).instance_id == INSTANCE_ID


def test_oversized_xml_is_refused_before_parsing() -> None:
    xml = household_instance_xml()
    assert "at most 1,000 are accepted" in envelope_error(xml, max_bytes=1000)
