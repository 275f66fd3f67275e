"""Live-server fixtures for the sync client: a gunicorn subprocess with its own database,
one enumerator, an encrypted form assigned to her district and her device token."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url

from sync.client import Backoff, SyncClient
from tests.support.databases import drop_database
from tests.support.liveserver import LiveServer, sync_server

FORM_ID = "daily_visit"
FORM_VERSION = "2026112601"


def visit_xml(name: str = "Faadumo", instance_id: str | None = None) -> bytes:
    """What a device records for the one-question `daily_visit` form."""
    instance_id = instance_id or f"uuid:{uuid.uuid4()}"
    return (
        f'<data id="{FORM_ID}" version="{FORM_VERSION}"><name>{name}</name>'
        f"<meta><instanceID>{instance_id}</instanceID></meta></data>"
    ).encode()


@pytest.fixture(scope="module")
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, str]]:
    """(server, device token); one per test module, each with a database of its own,
    named after the test database (two runs on one server keep apart) and dropped
    afterwards."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    shared_url = os.environ.get("DIIWAAN_DATABASE_URL")
    test_database = make_url(shared_url).database if shared_url else "test"
    database_name = f"{test_database}_sync_live_{module.removeprefix('test_')}"
    server: LiveServer | None = None
    try:
        server, token = sync_server(tmp_path_factory.mktemp(module), shared_url, database_name)
        yield server, token
    finally:
        if server is not None:
            server.stop()
        if shared_url:
            drop_database(shared_url, database_name)


def quick_backoff(give_up_after: int = 40) -> Backoff:
    """Backoff on a test clock: the same algorithm, with waits in tens of milliseconds."""
    return Backoff(base=0.02, cap=0.5, give_up_after=give_up_after)


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., SyncClient]]:
    clients: list[SyncClient] = []

    def build(name: str = "tablet", **options: object) -> SyncClient:
        options.setdefault("backoff", quick_backoff())
        options.setdefault("timeout", 20.0)
        client = SyncClient(tmp_path / name, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()
