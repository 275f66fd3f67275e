"""Test harness: one database per run built with `alembic upgrade head`, each test in a
transaction rolled back at the end. DIIWAAN_DATABASE_URL picks PostgreSQL; otherwise a
throwaway SQLite file."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from server.app import create_app
from server.cli import upgrade_database
from server.db import db
from tests import factories

PASSWORD = "correct horse battery staple"


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("DIIWAAN_DATABASE_URL")
    if url:
        _reset_postgres(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    upgrade_database(url)
    return url


def app_settings(database_url: str, data_dir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "database_url": database_url,
        "data_dir": data_dir,
        "secret_key": "test-secret-key-0123456789",
        "key_encryption_key": "test-key-encryption-key-0123456789",
        "password_hash_cheap": True,
        # ODK Validate starts a JVM per upload; tests of the validator call it directly.
        "odk_validate": False,
        "TESTING": True,
        **extra,
    }


@pytest.fixture(scope="session")
def app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return create_app(app_settings(database_url, tmp_path_factory.mktemp("data")))


@pytest.fixture(autouse=True)
def _transaction(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that touches the app runs inside one rolled-back transaction."""
    if "app" not in request.fixturenames:
        yield
        return
    application: Flask = request.getfixturevalue("app")
    assert db.engine is not None
    connection = db.engine.connect()
    outer = connection.begin()
    db.bind_to_connection(connection)
    # Tests and factories use their own session on the same connection; requests made
    # through the test client get theirs, as in production.
    factories.current_session = db.new_session()
    try:
        yield
    finally:
        factories.current_session.close()
        factories.current_session = None
        db.bind_to_connection(None)
        outer.rollback()
        connection.close()
    del application


@pytest.fixture
def session(app: Flask) -> Session:
    """The test's own session (the one factories write with)."""
    assert factories.current_session is not None
    return factories.current_session


class Browser:
    """A test client that behaves like a person at a browser: signs in, keeps CSRF."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.csrf = ""

    def refresh_csrf(self, url: str = "/login") -> str:
        page = self.client.get(url).get_data(as_text=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, f"no CSRF token on {url}"
        self.csrf = match.group(1)
        return self.csrf

    def login(self, username: str, password: str = PASSWORD) -> Any:
        self.client.post("/logout", data={"csrf_token": self.csrf})
        self.refresh_csrf("/login")
        response = self.client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": self.csrf},
        )
        if response.status_code == 302:
            # Signing in starts a fresh session, and with it a fresh CSRF token.
            self.refresh_csrf("/")
        return response

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.client.get(url, **kwargs)

    def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        form = {"csrf_token": self.csrf, **(data or {})}
        return self.client.post(url, data=form, **kwargs)


@pytest.fixture
def browser(app: Flask) -> Browser:
    return Browser(app.test_client())


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
