"""Fixtures for the security suites: people in one district, their tokens, the CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from server.accounts import service as accounts
from server.accounts.models import District, User
from tests.factories import AdminFactory, DistrictFactory, SupervisorFactory, UserFactory


@pytest.fixture
def district() -> District:
    return DistrictFactory(code="hodan", name="Hodan")


@pytest.fixture
def admin() -> User:
    return AdminFactory(username="sec.admin")


@pytest.fixture
def supervisor(district: District) -> User:
    return SupervisorFactory(username="sec.supervisor", districts=[district])


@pytest.fixture
def enumerator(district: District) -> User:
    return UserFactory(username="sec.enumerator", districts=[district])


@pytest.fixture
def issue(session: Session) -> Callable[..., str]:
    """`issue(user, kind="api")` → the secret of a new token."""

    def make(user: User, kind: str = "api") -> str:
        return accounts.issue_token(session, None, user, kind=kind)[1]

    return make


@pytest.fixture
def run(app: Flask) -> Callable[..., Any]:
    """`run("tokens", "create", ...)`: the diiwaan command line, in-process."""
    runner = app.test_cli_runner()

    def invoke(*args: str, **kwargs: Any) -> Any:
        return runner.invoke(args=list(args), **kwargs)

    return invoke
