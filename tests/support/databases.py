"""Databases and ports of their own for tests that run the real application: a PostgreSQL
database beside the test database (never the test database itself), a free local port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, create_engine, make_url, text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def recreate_database(shared_url: str, name: str) -> str:
    """Drop `name` on the server of `shared_url` if it exists and create it afresh;
    returns its URL."""
    with _server(shared_url, name) as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(shared_url).set(database=name).render_as_string(hide_password=False)


def drop_database(shared_url: str, name: str) -> None:
    """Drop `name` on the server of `shared_url`, if it exists."""
    with _server(shared_url, name) as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def _server(shared_url: str, name: str) -> Iterator[Connection]:
    """A connection to the test database's server, for creating or dropping `name`."""
    if name == make_url(shared_url).database:
        raise ValueError(f"{name} is the test database itself, not one beside it")
    # CREATE and DROP DATABASE cannot run inside a transaction.
    engine = create_engine(shared_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()
