"""The byte formats of the batch sync protocol (docs/sync-protocol.md), for client and server.

A *pack* is one submission as one body: the `xml_submission_file` (for an encrypted
submission, the ODK manifest) first, then every attachment (the `.enc` files), each as a
length-prefixed entry. A *frame* is a slice of one pack inside an upload request: a one-line
header in Content-Range style, then the bytes. Both are streamed: nothing here needs a
whole pack in memory.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "FRAME_HEADER_MAX",
    "PACK_MAGIC",
    "PACK_XML_NAME",
    "Frame",
    "FrameError",
    "PackEntry",
    "PackError",
    "Readable",
    "frame_header",
    "pack",
    "pack_size",
    "parse_content_range",
    "parse_frame_header",
    "read_pack",
]

PACK_MAGIC = b"DWPACK1\n"
# The first entry of every pack: the xml_submission_file of OpenRosa.
PACK_XML_NAME = "submission.xml"
_NAME_LENGTH = struct.Struct(">H")
_ENTRY_SIZE = struct.Struct(">Q")
MAX_NAME_BYTES = 255
MAX_ENTRIES = 1000


class PackError(ValueError):
    """The bytes are not a well-formed pack; the message names the entry and byte offset."""


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class PackEntry:
    """One file of a pack; `reader` yields exactly `size` bytes and must be drained (or
    left) before the next entry is read."""

    name: str
    size: int
    offset: int
    reader: Readable


def pack(xml: bytes, files: Sequence[tuple[str, bytes]]) -> bytes:
    """One submission as one body: `xml` (the xml_submission_file) first, then `files`."""
    entries: list[tuple[str, bytes]] = [(PACK_XML_NAME, xml), *files]
    seen: set[str] = set()
    parts = [PACK_MAGIC]
    for index, (name, content) in enumerate(entries):
        encoded = _check_name(name, index, sum(map(len, parts)))
        if name in seen:
            raise PackError(f"file {name!r} appears twice in the pack")
        seen.add(name)
        parts += [_NAME_LENGTH.pack(len(encoded)), encoded, _ENTRY_SIZE.pack(len(content)), content]
    return b"".join(parts)


def pack_size(names_and_sizes: Iterable[tuple[str, int]]) -> int:
    """The size of a pack holding files of these names and sizes (the XML included)."""
    return len(PACK_MAGIC) + sum(
        _NAME_LENGTH.size + len(name.encode("utf-8")) + _ENTRY_SIZE.size + size
        for name, size in names_and_sizes
    )


def _check_name(name: str, index: int, offset: int) -> bytes:
    encoded = name.encode("utf-8")
    if not encoded or len(encoded) > MAX_NAME_BYTES:
        raise PackError(
            f"entry {index} at byte {offset}: a file name is 1-{MAX_NAME_BYTES} UTF-8 bytes"
        )
    if "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
        raise PackError(f"entry {index} at byte {offset}: {name[:80]!r} is not a plain file name")
    return encoded


class _Bounded:
    """Reads at most `remaining` bytes from `stream`; short reads mean a truncated pack."""

    def __init__(self, stream: Readable, size: int, describe: str) -> None:
        self._stream = stream
        self.remaining = size
        self._describe = describe

    def read(self, size: int = -1, /) -> bytes:
        if self.remaining <= 0:
            return b""
        wanted = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self._stream.read(wanted)
        if not data:
            raise PackError(f"{self._describe} ends {self.remaining} bytes early (truncated)")
        self.remaining -= len(data)
        return data

    def drain(self) -> None:
        while self.remaining > 0:
            self.read(1024 * 1024)


def _read_exactly(stream: Readable, size: int, what: str) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise PackError(f"{what}: the pack ends after {len(data)} of {size} bytes")
        data += chunk
    return data


def read_pack(stream: Readable, *, max_entries: int = MAX_ENTRIES) -> Iterator[PackEntry]:
    """Yield the entries of a pack in order; the first is always the XML.

    Raises PackError for a wrong magic, a bad or repeated name, a truncated entry, or
    more than `max_entries` files.
    """
    magic = stream.read(len(PACK_MAGIC))
    if magic != PACK_MAGIC:
        raise PackError(f"the body does not start with the pack signature {PACK_MAGIC!r}")
    offset = len(PACK_MAGIC)
    seen: set[str] = set()
    index = 0
    while True:
        head = stream.read(_NAME_LENGTH.size)
        if not head:
            break
        if len(head) < _NAME_LENGTH.size:
            head += _read_exactly(stream, _NAME_LENGTH.size - len(head), f"entry {index}")
        (name_length,) = _NAME_LENGTH.unpack(head)
        raw_name = _read_exactly(stream, name_length, f"entry {index} name at byte {offset}")
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise PackError(f"entry {index} at byte {offset}: the name is not UTF-8") from None
        _check_name(name, index, offset)
        if index == 0 and name != PACK_XML_NAME:
            raise PackError(f"entry 0 must be {PACK_XML_NAME!r}, not {name[:80]!r}")
        if name in seen:
            raise PackError(f"entry {index} at byte {offset}: {name!r} appears twice")
        if index >= max_entries:
            raise PackError(f"the pack holds more than {max_entries} files")
        seen.add(name)
        (size,) = _ENTRY_SIZE.unpack(
            _read_exactly(stream, _ENTRY_SIZE.size, f"entry {index} size at byte {offset}")
        )
        header_bytes = _NAME_LENGTH.size + name_length + _ENTRY_SIZE.size
        reader = _Bounded(stream, size, f"entry {index} ({name}) at byte {offset}")
        yield PackEntry(name, size, offset, reader)
        reader.drain()
        offset += header_bytes + size
        index += 1
    if index == 0:
        raise PackError(f"the pack is empty; it must hold {PACK_XML_NAME!r} first")


# ----------------------------------------------------------------------------- frames

FRAME_HEADER_MAX = 80
_FRAME_HEADER = re.compile(rb"^(\d{1,6}) (\d{1,15})-(\d{1,15})/(\d{1,15})\n$")


@dataclass(frozen=True)
class Frame:
    """Bytes `first`..`last` (inclusive) of the pack of session item `index`, of `total`."""

    index: int
    first: int
    last: int
    total: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


class FrameError(ValueError):
    """A frame header that does not follow `<index> <first>-<last>/<total>\\n`."""


def frame_header(index: int, first: int, length: int, total: int) -> bytes:
    """`17 0-3499/3500\\n`: the header of a frame carrying `length` bytes from `first`."""
    if length <= 0 or first < 0 or first + length > total:
        raise ValueError(f"bad frame: {length} bytes from {first} of {total}")
    return f"{index} {first}-{first + length - 1}/{total}\n".encode("ascii")


def parse_frame_header(line: bytes) -> Frame:
    match = _FRAME_HEADER.match(line)
    if match is None:
        shown = line[:FRAME_HEADER_MAX].decode("ascii", "replace")
        raise FrameError(
            f"frame header {shown!r} is not '<item index> <first byte>-<last byte>/<total>'"
        )
    index, first, last, total = (int(group) for group in match.groups())
    if last < first or last >= total:
        raise FrameError(
            f"frame header for item {index}: bytes {first}-{last} do not lie within a pack "
            f"of {total} bytes"
        )
    return Frame(index, first, last, total)


_CONTENT_RANGE = re.compile(r"^bytes (\d{1,15})-(\d{1,15})/(\d{1,15})$")


def parse_content_range(index: int, value: str) -> Frame:
    """The frame a `PUT .../items/<index>` with `Content-Range: bytes 0-3499/3500` carries."""
    match = _CONTENT_RANGE.match(value.strip())
    if match is None:
        raise FrameError(
            f"Content-Range {value[:80]!r} is not 'bytes <first byte>-<last byte>/<total>'"
        )
    first, last, total = match.groups()
    return parse_frame_header(f"{index} {first}-{last}/{total}\n".encode("ascii"))
