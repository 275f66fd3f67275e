"""The `diiwaan` command: init, users, tokens (districts import is in accounts/test_locations)."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import func, select

from server import cli
from server.accounts.models import Token, User
from tests.factories import AdminFactory, DistrictFactory, SupervisorFactory, UserFactory


@pytest.fixture
def run(app):
    runner = app.test_cli_runner()

    def invoke(*args: str, **kwargs):
        return runner.invoke(args=list(args), **kwargs)

    return invoke


@pytest.fixture
def migrations(monkeypatch):
    """The test database is already at head and held by the test's transaction; record the
    call instead of running Alembic on a second connection (the e2e tests run it for real)."""
    calls: list[str] = []
    monkeypatch.setattr(cli, "upgrade_database", calls.append)
    return calls


def admins(session) -> list[User]:
    session.expire_all()
    return list(session.scalars(select(User).where(User.role == "admin")))


def test_init_migrates_then_creates_one_admin_and_prints_the_password(
    app, run, session, migrations, monkeypatch, browser
):
    monkeypatch.delenv("DIIWAAN_ADMIN_PASSWORD", raising=False)
    result = run("init")
    assert result.exit_code == 0, result.output
    assert migrations == [app.config["DIIWAAN"].database_url]
    match = re.search(r"created user 'admin' with password: (\S+)", result.output)
    assert match, result.output
    assert [user.username for user in admins(session)] == ["admin"]
    assert browser.login("admin", match.group(1)).status_code == 302


def test_init_a_second_time_changes_nothing(run, session, migrations):
    run("init", env={"DIIWAAN_ADMIN_PASSWORD": "first admin password"})
    second = run("init")
    assert second.exit_code == 0
    assert second.output == ""
    assert len(admins(session)) == 1
    assert len(migrations) == 2


def test_init_uses_the_admin_password_from_the_environment(run, browser, migrations):
    result = run("init", env={"DIIWAAN_ADMIN_PASSWORD": "chosen by the operator"})
    assert "password from DIIWAAN_ADMIN_PASSWORD" in result.output
    assert "chosen by the operator" not in result.output
    assert browser.login("admin", "chosen by the operator").status_code == 302


def test_init_leaves_an_existing_admin_alone(run, session, migrations):
    AdminFactory(username="head.office")
    assert run("init").output == ""
    assert [user.username for user in admins(session)] == ["head.office"]


def test_users_create_with_districts_then_list(run, session):
    hodan = DistrictFactory(code="SO-BN-HOD", name="Hodan")
    result = run(
        "users",
        "create",
        "sahra",
        "--role",
        "supervisor",
        "--name",
        "Sahra Cabdi",
        "--district",
        "SO-BN-HOD",
        "--password",
        "long enough password",
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "created sahra (supervisor)"
    session.expire_all()
    sahra = session.scalar(select(User).where(User.username == "sahra"))
    assert (sahra.display_name, sahra.district_ids) == ("Sahra Cabdi", {hodan.id})
    listing = run("users", "list").output
    assert re.search(r"^sahra\s+supervisor\s+active\s+SO-BN-HOD$", listing, re.MULTILINE)


def test_users_create_reads_the_password_from_the_environment(run, browser):
    result = run(
        "users",
        "create",
        "warsame",
        "--role",
        "partner",
        env={"DIIWAAN_NEW_PASSWORD": "password from env"},
    )
    assert result.exit_code == 0, result.output
    assert browser.login("warsame", "password from env").status_code == 302


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--district", "SO-XX-NOPE", "--password", "long enough password"],
            "no district with code 'SO-XX-NOPE'",
        ),
        (["--password", "short"], "password: at least 10 characters"),
    ],
)
def test_users_create_explains_what_is_wrong(run, options, message):
    result = run("users", "create", "sahra", "--role", "enumerator", *options)
    assert result.exit_code == 1
    assert message in result.output


def test_users_create_refuses_a_duplicate(run):
    SupervisorFactory(username="sahra")
    result = run(
        "users", "create", "sahra", "--role", "enumerator", "--password", "long enough password"
    )
    assert result.exit_code == 1
    assert "a user named 'sahra' already exists" in result.output


def test_users_create_refuses_an_unknown_role(run):
    result = run("users", "create", "sahra", "--role", "king", "--password", "x" * 12)
    assert result.exit_code == 2
    assert "'king' is not one of" in result.output


def test_users_deactivate_signs_out_and_revokes_tokens(run, session, client, bearer):
    AdminFactory()
    enumerator = UserFactory()
    headers = bearer(enumerator, "device")
    result = run("users", "deactivate", enumerator.username)
    assert result.exit_code == 0
    assert result.output.strip() == f"deactivated {enumerator.username}"
    session.expire_all()
    assert session.get(User, enumerator.id).active is False
    assert client.get("/api/v1/districts", headers=headers).status_code == 401
    assert "inactive" in run("users", "list").output


def test_users_deactivate_unknown_user(run):
    result = run("users", "deactivate", "nobody")
    assert result.exit_code == 1
    assert "no user named 'nobody'" in result.output


def test_users_set_password(run, browser):
    supervisor = SupervisorFactory()
    result = run("users", "set-password", supervisor.username, "--password", "new passphrase!")
    assert result.exit_code == 0
    assert browser.login(supervisor.username, "new passphrase!").status_code == 302


def test_tokens_create_prints_a_device_secret_that_works(run, session, client):
    enumerator = UserFactory()
    result = run("tokens", "create", enumerator.username, "--name", "tablet 3")
    assert result.exit_code == 0, result.output
    match = re.fullmatch(
        rf"token (\S+) for {enumerator.username} \(device\): (\S+)\n", result.output
    )
    assert match, result.output
    token = session.get(Token, uuid.UUID(match.group(1)))
    assert (token.kind, token.name, token.expires_at) == ("device", "tablet 3", None)
    assert client.get(f"/key/{match.group(2)}/api/v1/districts").status_code == 200


def test_tokens_create_api_token_expires_by_default(run, session):
    supervisor = SupervisorFactory()
    result = run("tokens", "create", supervisor.username, "--kind", "api")
    assert result.exit_code == 0, result.output
    token = session.get(Token, uuid.UUID(result.output.split()[1]))
    assert token.expires_at is not None


def test_tokens_create_refuses_a_device_token_for_a_supervisor(run, session):
    supervisor = SupervisorFactory()
    result = run("tokens", "create", supervisor.username)
    assert result.exit_code == 1
    assert "device tokens are for enumerators' tablets" in result.output
    assert session.scalar(select(func.count()).select_from(Token)) == 0


def test_tokens_revoke_stops_the_token(run, client):
    enumerator = UserFactory()
    created = run("tokens", "create", enumerator.username).output.split()
    token_id, secret = created[1], created[-1]
    result = run("tokens", "revoke", token_id)
    assert result.exit_code == 0
    assert result.output.strip() == f"revoked {token_id}"
    assert client.get(f"/key/{secret}/api/v1/districts").status_code == 401


def test_tokens_revoke_unknown_id(run):
    result = run("tokens", "revoke", "not-a-token-id")
    assert result.exit_code == 1
    assert "no token with id not-a-token-id" in result.output
