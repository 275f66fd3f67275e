"""The floor under `bench/ingest.py`: the least a Python intake served by gunicorn can do
and still keep issue #5's rule that a submission is durable before it is acknowledged.

    .venv/bin/python bench/ingest.py --servers floor-gthread:2x8 gthread:2x8 --drain-workers 0

For each POST it parses the multipart body with python-multipart (as Diiwaan does),
writes each part to a staging file, fsyncs it, renames it into a directory named by its
sha256 and fsyncs that directory, then inserts one row for the submission and one per
file with psycopg and commits, and answers 201 with an OpenRosa envelope. It checks no
token, looks up no form, reads no XML and refuses nothing: every rate Diiwaan's intake
reaches is below this one, on the same machine and clients. `bench/ingest.py` creates its
two tables (`floor_submission`, `floor_file`) and points FLOOR_DIR and FLOOR_DB at a
scratch directory and the bench database. Never served outside the benchmark.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

TABLES = (
    "CREATE TABLE floor_submission (id bigserial PRIMARY KEY, instance_id text UNIQUE,"
    " received_at timestamptz DEFAULT now())",
    "CREATE TABLE floor_file (submission_id bigint REFERENCES floor_submission,"
    " sha256 text, PRIMARY KEY (submission_id, sha256))",
)
ENVELOPE = (
    b'<OpenRosaResponse xmlns="http://openrosa.org/http/response">'
    b'<message nature="">submission stored</message></OpenRosaResponse>'
)
_local = threading.local()


@functools.cache
def _prepared_root() -> str:
    """FLOOR_DIR with its staging and 256 shard directories, made once per process
    rather than per request: the floor does no work it can do ahead."""
    root = os.environ["FLOOR_DIR"]
    for name in ("tmp", *(f"{n:02x}" for n in range(256))):
        os.makedirs(os.path.join(root, name), exist_ok=True)
    return root


def _connection() -> psycopg.Connection[Any]:
    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = _local.connection = psycopg.connect(os.environ["FLOOR_DB"])
    return connection


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Part:
    """One part being staged: written as it arrives, then fsynced and moved in."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.staged = os.path.join(root, "tmp", secrets.token_hex(16))
        self.fd = os.open(self.staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        os.write(self.fd, data)

    def keep(self) -> str:
        os.fsync(self.fd)
        os.close(self.fd)
        digest = self.sha256.hexdigest()
        directory = os.path.join(self.root, digest[:2])
        os.replace(self.staged, os.path.join(directory, digest))
        _fsync(directory)
        return digest


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["REQUEST_METHOD"] != "POST":  # the bench's readiness probe
        start_response("204 No Content", [("X-OpenRosa-Version", "1.0")])
        return [b""]
    root = _prepared_root()
    _, options = parse_options_header(environ["CONTENT_TYPE"])
    kept: list[str] = []
    parts: list[_Part] = []

    def begin() -> None:
        parts.append(_Part(root))

    def data(chunk: bytes, start: int, end: int) -> None:
        parts[-1].write(chunk[start:end])

    def end() -> None:
        kept.append(parts[-1].keep())

    parser = MultipartParser(
        options[b"boundary"],
        {"on_part_begin": begin, "on_part_data": data, "on_part_end": end},
    )
    stream, left = environ["wsgi.input"], int(environ.get("CONTENT_LENGTH") or 0)
    while left > 0 and (chunk := stream.read(min(left, 65536))):
        left -= len(chunk)
        parser.write(chunk)
    parser.finalize()
    connection = _connection()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO floor_submission (instance_id) VALUES (%s) RETURNING id",
            (secrets.token_hex(16),),
        )
        row = cursor.fetchone()
        assert row is not None
        cursor.executemany(
            "INSERT INTO floor_file (submission_id, sha256) VALUES (%s, %s)",
            [(row[0], digest) for digest in kept],
        )
    connection.commit()
    start_response(
        "201 Created",
        [("Content-Type", "text/xml"), ("Content-Length", str(len(ENVELOPE)))],
    )
    return [ENVELOPE]
