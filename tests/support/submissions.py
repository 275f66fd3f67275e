"""What a device posts to `POST /submission`, byte for byte, for tests and benchmarks.

`encode_multipart` builds the multipart/form-data body ODK Collect sends (one
`xml_submission_file` part, one part per attachment, `*isIncomplete*` on all but the last
POST of a split upload); `encrypted_household` encrypts a household submission the way
Collect does for a form with a managed key.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree import ElementTree

from sync import crypto
from tests.support.xlsforms import (
    HOUSEHOLD_FORM_ID,
    HOUSEHOLD_FORM_VERSION,
    household_instance_xml,
)

OPENROSA_RESPONSE_NS = "http://openrosa.org/http/response"
PHOTO_NAME = "dwelling-1732620000000.jpg"
# A few bytes that start like a JPEG; nothing on the server looks inside.
PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4


@dataclass(frozen=True)
class Attachment:
    name: str
    content: bytes
    content_type: str = "application/octet-stream"


def encode_multipart(
    xml: bytes,
    attachments: Sequence[Attachment] = (),
    *,
    incomplete: bool = False,
    xml_part_name: str = "xml_submission_file",
) -> tuple[bytes, str]:
    """The body and Content-Type of one submission POST, as Collect builds it."""
    boundary = f"----diiwaan-test-{secrets.token_hex(12)}"
    chunks: list[bytes] = []

    def part(headers: list[str], content: bytes) -> None:
        chunks.append(f"--{boundary}\r\n".encode())
        chunks.append("".join(f"{header}\r\n" for header in headers).encode("utf-8"))
        chunks.append(b"\r\n" + content + b"\r\n")

    part(
        [
            f'Content-Disposition: form-data; name="{xml_part_name}"; filename="submission.xml"',
            "Content-Type: text/xml",
        ],
        xml,
    )
    for attachment in attachments:
        name = attachment.name.replace("\\", "\\\\").replace('"', '\\"')
        part(
            [
                f'Content-Disposition: form-data; name="{name}"; filename="{name}"',
                f"Content-Type: {attachment.content_type}",
            ],
            attachment.content,
        )
    if incomplete:
        part(['Content-Disposition: form-data; name="*isIncomplete*"'], b"yes")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def openrosa_message(body: bytes) -> tuple[str, str]:
    """(nature, text) of an OpenRosa response; fails unless the envelope is well formed."""
    root = ElementTree.fromstring(body)
    assert root.tag == f"{{{OPENROSA_RESPONSE_NS}}}OpenRosaResponse", root.tag
    message = root.find(f"{{{OPENROSA_RESPONSE_NS}}}message")
    assert message is not None, body
    return message.get("nature", ""), message.text or ""


@dataclass(frozen=True)
class EncryptedHousehold:
    instance_id: str
    plain_xml: bytes
    photo: bytes
    encrypted: crypto.EncryptedSubmission

    @property
    def manifest(self) -> bytes:
        return self.encrypted.manifest_xml

    @property
    def attachments(self) -> list[Attachment]:
        return [Attachment(name, content) for name, content in self.encrypted.files]


def encrypted_household(
    public_key_base64: str,
    *,
    instance_id: str | None = None,
    photo: bytes = PHOTO,
    form_id: str = HOUSEHOLD_FORM_ID,
    version: str = HOUSEHOLD_FORM_VERSION,
    **answers: object,
) -> EncryptedHousehold:
    """A household submission with its dwelling photo, encrypted as Collect does."""
    instance_id = instance_id or f"uuid:{uuid.uuid4()}"
    plain = household_instance_xml(
        instance_id=instance_id,
        form_id=form_id,
        version=version,
        dwelling_photo=PHOTO_NAME,
        **answers,  # type: ignore[arg-type]
    )
    encrypted = crypto.encrypt_submission(
        xml=plain,
        media=[(PHOTO_NAME, photo)],
        instance_id=instance_id,
        form_id=form_id,
        form_version=version,
        public_key=crypto.load_public_key(public_key_base64),
    )
    return EncryptedHousehold(instance_id, plain, photo, encrypted)
