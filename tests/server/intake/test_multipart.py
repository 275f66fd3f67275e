"""The streaming multipart reader behind POST /submission (server/intake/multipart.py)."""

from __future__ import annotations

import io

import pytest

from server.blobs import BlobStore
from server.errors import BadRequest, PayloadTooLarge
from server.intake.multipart import read_submission_body
from tests.support.submissions import Attachment, encode_multipart

XML = b'<data id="household" version="1"><meta><instanceID>uuid:1</instanceID></meta></data>'


class Trickle(io.BytesIO):
    """A body that arrives a few bytes at a time, as over 2G."""

    def read(self, size: int = -1, /) -> bytes:
        return super().read(min(size, 7) if size > 0 else 7)


@pytest.fixture
def store(tmp_path):
    return BlobStore(tmp_path / "blobs")


def staged_files(store: BlobStore) -> list[str]:
    return sorted(path.name for path in (store.root / "tmp").glob("*"))


def test_parts_are_staged_whole_however_the_body_is_cut(store):
    photo = bytes(range(256)) * 300  # boundary-like bytes and CR/LF inside the file
    body, content_type = encode_multipart(
        XML,
        [Attachment("photo.jpg", photo, "image/jpeg"), Attachment("b.txt", b"")],
        incomplete=True,
    )
    read = read_submission_body(Trickle(body), content_type, store=store, limit=10**6)
    assert read.xml == XML
    assert read.xml_blob.tmp_path.read_bytes() == XML
    assert [(f.name, f.content_type, f.blob.size) for f in read.files] == [
        ("photo.jpg", "image/jpeg", len(photo)),
        ("b.txt", "application/octet-stream", 0),
    ]
    assert read.files[0].blob.tmp_path.read_bytes() == photo
    assert read.fields == {"*isIncomplete*": "yes"}
    read.discard()
    assert staged_files(store) == []


def test_an_attachment_over_the_limit_is_413_and_leaves_nothing_staged(store):
    """Cut off mid-file: the parts staged before it and the half-written one are dropped."""
    body, content_type = encode_multipart(
        XML, [Attachment("a.jpg", b"x" * 10), Attachment("big.jpg", b"y" * 5000)]
    )
    with pytest.raises(PayloadTooLarge, match="larger than 4000 bytes"):
        read_submission_body(Trickle(body), content_type, store=store, limit=4000)
    assert staged_files(store) == []


def test_a_body_over_the_limit_is_413_even_when_every_part_is_small(store):
    files = [Attachment(f"f{n}.jpg", b"z" * 900) for n in range(10)]
    body, content_type = encode_multipart(XML, files)
    with pytest.raises(PayloadTooLarge, match="larger than 5000 bytes"):
        read_submission_body(io.BytesIO(body), content_type, store=store, limit=5000)
    assert staged_files(store) == []


def test_two_xml_parts_are_refused(store):
    body, content_type = encode_multipart(XML)
    boundary = content_type.split("boundary=")[1].encode()
    first_part = body[: body.rindex(b"--" + boundary + b"--")]
    doubled = first_part + first_part + b"--" + boundary + b"--\r\n"
    with pytest.raises(BadRequest, match="more than one xml_submission_file"):
        read_submission_body(io.BytesIO(doubled), content_type, store=store, limit=10**6)
    assert staged_files(store) == []


def test_a_huge_plain_field_is_413(store):
    boundary = "b"
    body = (
        b'--b\r\nContent-Disposition: form-data; name="*isIncomplete*"\r\n\r\n'
        + b"y" * (65 * 1024)
        + b"\r\n--b--\r\n"
    )
    with pytest.raises(PayloadTooLarge, match="64 KB"):
        read_submission_body(
            io.BytesIO(body), f"multipart/form-data; boundary={boundary}", store=store, limit=10**6
        )


def test_a_file_name_that_is_not_utf8_is_refused(store):
    body = (
        b'--b\r\nContent-Disposition: form-data; name="xml_submission_file"; filename="\xff.xml"'
        b"\r\n\r\n<data/>\r\n--b--\r\n"
    )
    with pytest.raises(BadRequest, match="not UTF-8"):
        read_submission_body(
            io.BytesIO(body), "multipart/form-data; boundary=b", store=store, limit=10**6
        )
    assert staged_files(store) == []


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        (b'form-data; name="f"; filename="sawir-\xc3\xa7.jpg"', "sawir-ç.jpg"),
        (b'form-data; name="f"; filename="say \\"hi\\".jpg"', 'say "hi".jpg'),
        (b"form-data; name=\"f\"; filename*=UTF-8''sawir%20Xaliimo.jpg", "sawir Xaliimo.jpg"),
    ],
    ids=["utf-8", "escaped-quote", "rfc2231"],
)
def test_attachment_names_are_read_as_sent(store, disposition, name):
    body = (
        b'--b\r\nContent-Disposition: form-data; name="xml_submission_file"; filename="s.xml"'
        b"\r\n\r\n<data/>\r\n--b\r\nContent-Disposition: "
        + disposition
        + b"\r\nContent-Type: image/jpeg; charset=binary\r\n\r\nJPEG\r\n--b--\r\n"
    )
    read = read_submission_body(
        io.BytesIO(body), "multipart/form-data; boundary=b", store=store, limit=10**6
    )
    assert [(f.name, f.content_type) for f in read.files] == [(name, "image/jpeg")]
    read.discard()
