"""Pooled PostgreSQL connections: pinged only after sitting idle, replaced when gone."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from server import db as db_module

pytestmark = pytest.mark.skipif(
    not os.environ.get("DIIWAAN_DATABASE_URL", "").startswith("postgresql"),
    reason="the ping is for PostgreSQL's pool (SQLite has no server to lose)",
)


@pytest.fixture
def engine():
    engine = db_module.make_engine(os.environ["DIIWAAN_DATABASE_URL"])
    yield engine
    engine.dispose()


def _kill(pid: int) -> None:
    killer = db_module.make_engine(os.environ["DIIWAAN_DATABASE_URL"])
    try:
        with killer.connect() as connection:
            assert connection.execute(text(f"SELECT pg_terminate_backend({pid})")).scalar()
    finally:
        killer.dispose()


def test_a_connection_used_a_moment_ago_is_trusted_without_a_round_trip(engine):
    """No ping within PING_AFTER_IDLE_SECONDS: a connection killed in that window fails
    once (and the pool is refreshed), the cost of saving a round trip per request."""
    with engine.connect() as connection:
        victim = connection.execute(text("SELECT pg_backend_pid()")).scalar()
    _kill(victim)
    with pytest.raises(OperationalError), engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar() != victim


def test_a_connection_killed_while_idle_is_replaced_before_use(engine, monkeypatch):
    with engine.connect() as connection:
        victim = connection.execute(text("SELECT pg_backend_pid()")).scalar()
    with engine.connect() as other:  # a second pooled connection kills the first
        other.execute(text("SELECT 1"))
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    _kill(victim)
    # Both pooled connections are idle "long enough" now: the dead one fails its ping and
    # is discarded; the query runs on a live connection instead of raising.
    for _ in range(2):
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
            assert pid != victim
            assert connection.in_transaction()
