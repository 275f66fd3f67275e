"""The byte formats of the sync protocol: packs (one submission as one body) and frames
(Content-Range-style slices of packs inside an upload)."""

from __future__ import annotations

import io

import pytest

from sync.pack import (
    PACK_MAGIC,
    FrameError,
    PackError,
    frame_header,
    pack,
    pack_size,
    parse_content_range,
    parse_frame_header,
    read_pack,
)

XML = b'<data id="f" encrypted="yes"/>'
FILES = [("photo.jpg.enc", b"\x00\x01" * 40), ("submission.xml.enc", b"cipher" * 9)]


def entries(body: bytes) -> list[tuple[str, bytes]]:
    return [(entry.name, entry.reader.read()) for entry in read_pack(io.BytesIO(body))]


def test_a_pack_holds_the_xml_first_then_every_file_in_order():
    body = pack(XML, FILES)
    assert body.startswith(PACK_MAGIC)
    assert entries(body) == [("submission.xml", XML), *FILES]
    assert pack_size([("submission.xml", len(XML)), *((n, len(c)) for n, c in FILES)]) == len(body)


def test_entries_are_streamed_and_skipped_when_not_read():
    names = [entry.name for entry in read_pack(io.BytesIO(pack(XML, FILES)))]
    assert names == ["submission.xml", "photo.jpg.enc", "submission.xml.enc"]


def test_a_truncated_pack_names_the_entry_and_byte():
    body = pack(XML, FILES)[:-5]
    with pytest.raises(PackError, match=r"entry 2 \(submission.xml.enc\) at byte \d+ ends 5"):
        entries(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"PK\x03\x04 not ours", "signature"),
        (PACK_MAGIC, "empty"),
        (PACK_MAGIC + b"\x00\x05photo", "entry 0"),
    ],
    ids=["magic", "empty", "cut-in-header"],
)
def test_bodies_that_are_not_packs_are_refused(body, message):
    with pytest.raises(PackError, match=message):
        entries(body)


def test_the_first_entry_must_be_the_submission_xml():
    body = pack(XML, [])
    renamed = body.replace(b"submission.xml", b"xubmission.xml", 1)
    with pytest.raises(PackError, match="entry 0 must be 'submission.xml'"):
        entries(renamed)


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "", "."])
def test_file_names_must_be_plain(name):
    with pytest.raises(PackError):
        pack(XML, [(name, b"x")])


def test_a_name_appearing_twice_is_refused_on_both_sides():
    with pytest.raises(PackError, match="twice"):
        pack(XML, [("a.enc", b"1"), ("a.enc", b"2")])
    forged = pack(XML, [("a.enc", b"1"), ("b.enc", b"2")]).replace(b"b.enc", b"a.enc")
    with pytest.raises(PackError, match="twice"):
        entries(forged)


def test_frame_headers_carry_a_content_range_for_one_item():
    header = frame_header(17, 1000, 500, 3500)
    assert header == b"17 1000-1499/3500\n"
    frame = parse_frame_header(header)
    assert (frame.index, frame.first, frame.last, frame.total, frame.length) == (
        17,
        1000,
        1499,
        3500,
        500,
    )
    assert parse_content_range(17, "bytes 1000-1499/3500") == frame


@pytest.mark.parametrize(
    "line",
    [b"17 1000-999/3500\n", b"17 0-3500/3500\n", b"x 0-1/2\n", b"17 0-1/2", b"17 -1-2/3\n"],
)
def test_malformed_frame_headers_are_refused(line):
    with pytest.raises(FrameError):
        parse_frame_header(line)


def test_a_malformed_content_range_is_refused():
    with pytest.raises(FrameError, match="Content-Range"):
        parse_content_range(0, "bytes=0-")
