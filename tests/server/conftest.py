"""Helpers for server tests: a separately configured app, and Bearer headers for a user."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from server.accounts import service
from server.accounts.models import User
from server.app import create_app
from server.db import db
from tests.conftest import app_settings


@pytest.fixture
def make_app(app: Flask, database_url: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build another app with its own settings, on the same database and test transaction.

    `create_app` points the process-wide `db` at a new engine; the session-scoped `app`
    gets its engine back afterwards so later tests are unaffected.
    """
    saved = (db.engine, db._factory)
    engines = []

    def build(**extra: Any) -> Flask:
        application = create_app(app_settings(database_url, tmp_path / "data", **extra))
        engines.append(db.engine)
        return application

    yield build
    db.engine, db._factory = saved
    for engine in engines:
        if engine is not None and engine is not saved[0]:
            engine.dispose()


@pytest.fixture
def bearer(session: Session) -> Callable[..., dict[str, str]]:
    """`bearer(user)` issues a token for `user` and returns the Authorization header."""

    def headers_for(
        user: User, kind: str = "api", lifetime: dt.timedelta | None = None
    ) -> dict[str, str]:
        _token, secret = service.issue_token(session, None, user, kind=kind, lifetime=lifetime)
        return {"Authorization": f"Bearer {secret}"}

    return headers_for
