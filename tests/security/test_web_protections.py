"""Browser and session protections: security headers on every kind of response, CSRF on
every state-changing page (generated from the url_map), a fresh session at sign-in,
revocation that takes effect on the very next request on every channel, and secrets that
never reach a log record or the audit log."""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.routing import IntegerConverter, UUIDConverter

from server.accounts.models import AuditEvent, Token
from tests.factories import PASSWORD

PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def basic(username: str, password: str = PASSWORD) -> dict[str, str]:
    return {
        "Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    }


def assert_protected(response: Any, what: str) -> None:
    for name, value in PAGE_HEADERS.items():
        assert response.headers.get(name) == value, (
            f"{what}: {name} is {response.headers.get(name)}"
        )
    policy = response.headers.get("Content-Security-Policy", "")
    # Nothing of ours may be framed or run foreign scripts, whatever the content type.
    assert "frame-ancestors 'none'" in policy or "default-src 'none'" in policy, (what, policy)
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, (what, policy)


# ---------------------------------------------------------------------- headers


def test_every_kind_of_response_carries_the_security_headers(
    client, browser, admin, enumerator, issue
):
    device = issue(enumerator, "device")
    token = issue(admin)
    browser.login(admin.username)
    responses = {
        "login page": client.get("/login"),
        "signed-in page": browser.get("/users"),
        "error page": browser.get("/forms/no-such-form"),
        "redirect": client.get("/users"),
        "JSON": client.get("/api/v1/districts", headers={"Authorization": f"Bearer {token}"}),
        "JSON error": client.get("/api/v1/districts"),
        "JSON 405": client.delete("/api/v1/districts", headers={"Authorization": "Bearer x"}),
        "OpenRosa XML": client.get("/formList", headers=basic(enumerator.username)),
        "OpenRosa error": client.get("/formList"),
        "device prefix": client.get(f"/key/{device}/formList"),
        "sync JSON": client.get("/api/v1/sync", headers={"Authorization": f"Bearer {device}"}),
        "OpenAPI": client.get("/api/v1/openapi.json"),
        "static": client.get("/static/style.css"),
    }
    for what, response in responses.items():
        assert_protected(response, what)
        response.close()
    assert responses["OpenRosa XML"].mimetype == "text/xml"
    assert responses["static"].status_code == 200


def test_answers_to_a_signed_in_caller_are_never_cached(client, browser, admin, issue):
    browser.login(admin.username)
    token = issue(admin)
    for response in (
        browser.get("/users"),
        client.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"}),
    ):
        assert response.headers["Cache-Control"] == "no-store"


# ------------------------------------------------------------------------- CSRF

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def _page_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) of every state-changing route that a browser reaches with
    its session cookie: not the token-authenticated API, not the OpenRosa devices."""
    routes = []
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.rpartition(".")[0]
        if rule.rule.startswith("/api/") or blueprint.startswith("openrosa_"):
            continue
        values: dict[str, Any] = {}
        for argument, converter in rule._converters.items():
            if isinstance(converter, UUIDConverter):
                values[argument] = uuid.uuid4()
            elif isinstance(converter, IntegerConverter):
                values[argument] = 1
            else:
                values[argument] = "x"
        url = rule.build(values)[1] if values else rule.rule
        for method in sorted((rule.methods or set()) & STATE_CHANGING):
            routes.append((rule.endpoint, method, url))
    return routes


def test_every_state_changing_page_refuses_a_request_without_a_csrf_token(
    app, browser, admin, session
):
    routes = _page_routes(app)
    # Every form of the site, not a handful: sign-in, users, forms, review, registry.
    assert {
        "accounts.login",
        "accounts.user_new",
        "catalog.upload",
        "review.decide",
        "registry.decide",
        "intake.reprocess",
    } <= {endpoint for endpoint, _m, _u in routes}
    browser.login(admin.username)
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    refused = {}
    for endpoint, method, url in routes:
        response = browser.client.open(url, method=method, data={"anything": "1"})
        refused[endpoint, method] = (response.status_code, response.get_data(as_text=True))
    accepted = {
        key: status
        for key, (status, body) in refused.items()
        if status != 400 or "CSRF" not in body
    }
    assert accepted == {}, "state-changing pages that did not refuse a missing CSRF token"
    # Nothing was done: no audit event, the session still works.
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events
    assert browser.get("/users").status_code == 200


def test_a_csrf_token_from_another_session_is_refused(app, browser, admin, supervisor, session):
    other = type(browser)(app.test_client())
    other.login(supervisor.username)
    browser.login(admin.username)
    response = browser.client.post("/keys/rotate", data={"csrf_token": other.csrf})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert (
        session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "key.rotate")
        )
        == 0
    )


def test_the_api_ignores_the_session_cookie_so_csrf_cannot_reach_it(browser, admin):
    """The API is exempt from CSRF because a cookie alone never authenticates there."""
    browser.login(admin.username)
    response = browser.client.post(
        "/api/v1/users",
        json={
            "username": "planted",
            "display_name": "x",
            "password": "long passphrase 1",
            "role": "admin",
        },
    )
    assert response.status_code == 401


# ---------------------------------------------------------------------- sessions


def test_a_session_cookie_planted_before_sign_in_is_not_the_one_after(app, admin):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    planted = client.get_cookie("diiwaan_session")
    assert planted is not None
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login", data={"username": admin.username, "password": PASSWORD, "csrf_token": csrf}
    )
    assert response.status_code == 302
    signed_in = client.get_cookie("diiwaan_session")
    assert signed_in is not None and signed_in.value != planted.value
    # The attacker's copy of the planted cookie is still anonymous.
    attacker = app.test_client()
    attacker.set_cookie("diiwaan_session", planted.value)
    assert attacker.get("/users").headers["Location"].startswith("/login")
    # And the CSRF token of the planted session no longer works for the victim.
    response = client.post("/keys/rotate", data={"csrf_token": csrf})
    assert response.status_code == 400


def test_a_forged_or_tampered_session_cookie_is_anonymous(app, admin):
    client = app.test_client()
    payload = (
        base64.urlsafe_b64encode(json.dumps({"user_id": str(admin.id)}).encode())
        .decode()
        .rstrip("=")
    )
    client.set_cookie("diiwaan_session", f"{payload}.AAAAAA.bad-signature")
    assert client.get("/users").headers["Location"].startswith("/login")


# ----------------------------------------------------------------- revocation


def test_a_revoked_api_token_fails_on_the_next_request(client, admin, issue, session):
    secret = issue(admin)
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/users", headers=headers).status_code == 200
    token = session.scalars(select(Token).where(Token.user_id == admin.id)).one()
    other = issue(admin)
    revoked = client.delete(
        f"/api/v1/tokens/{token.id}", headers={"Authorization": f"Bearer {other}"}
    )
    assert revoked.status_code == 200
    response = client.get("/api/v1/users", headers=headers)
    assert response.status_code == 401
    assert "revoked" in response.get_json()["error"]["message"]


def test_a_revoked_device_token_fails_at_once_on_every_channel(client, enumerator, run, session):
    created = run("tokens", "create", enumerator.username, "--kind", "device").output.split()
    token_id, secret = created[1], created[-1]
    device_id = uuid.uuid4()
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get(f"/key/{secret}/formList").status_code == 200
    assert (
        client.put(
            f"/api/v1/sync/devices/{device_id}", json={"name": "tablet"}, headers=bearer
        ).status_code
        == 201
    )
    opened = client.post(
        f"/api/v1/sync/devices/{device_id}/sessions", json={"items": []}, headers=bearer
    )
    assert opened.status_code == 201
    session_id = opened.get_json()["session_id"]

    assert run("tokens", "revoke", token_id).exit_code == 0

    # The very next request on each channel: URL prefix, Bearer on sync, mid-session.
    answers = {
        "formList by URL prefix": client.get(f"/key/{secret}/formList"),
        "submission by URL prefix": client.post(f"/key/{secret}/submission"),
        "sync info": client.get("/api/v1/sync", headers=bearer),
        "sync session state": client.get(f"/api/v1/sync/sessions/{session_id}", headers=bearer),
        "sync frames": client.post(
            f"/api/v1/sync/sessions/{session_id}/frames",
            data=b"",
            content_type="application/vnd.diiwaan.frames",
            headers=bearer,
        ),
        "registry API": client.get("/api/v1/registry/entities", headers=bearer),
    }
    assert {what: r.status_code for what, r in answers.items()} == dict.fromkeys(answers, 401)


def test_deactivating_a_user_stops_their_basic_auth_and_tokens_at_once(
    client, admin, enumerator, issue
):
    device = issue(enumerator, "device")
    admin_token = issue(admin)
    assert client.get("/formList", headers=basic(enumerator.username)).status_code == 200
    response = client.patch(
        f"/api/v1/users/{enumerator.id}",
        json={"active": False},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert response.status_code == 200
    assert client.get("/formList", headers=basic(enumerator.username)).status_code == 401
    assert client.get(f"/key/{device}/formList").status_code == 401


# ---------------------------------------------------------------- secrets in logs


@pytest.fixture
def all_logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def _everything_logged(caplog: Any) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        lines.append(repr(record.args))
        if record.exc_text:
            lines.append(record.exc_text)
    return "\n".join(lines)


def _audit_text(session: Any) -> str:
    session.expire_all()
    return "\n".join(
        json.dumps([event.actor_name, event.action, event.target_id, event.details], default=str)
        for event in session.scalars(select(AuditEvent))
    )


def test_passwords_and_token_secrets_never_reach_a_log_record_or_the_audit_log(
    app, client, browser, admin, enumerator, session, run, issue, all_logs, monkeypatch
):
    secrets = [PASSWORD]
    wrong = "a wrong passphrase 7731"
    secrets.append(wrong)
    # Sign-in pages: right and wrong passwords.
    browser.login(admin.username)
    browser.login(admin.username, wrong)
    browser.login("nobody-here", wrong)
    # HTTP Basic from a device: right and wrong.
    client.get("/formList", headers=basic(enumerator.username))
    client.get("/formList", headers=basic(enumerator.username, wrong))
    # Bearer tokens: a good one, an unknown one, a revoked one.
    admin_token = issue(admin)
    secrets.append(admin_token)
    headers = {"Authorization": f"Bearer {admin_token}"}
    client.get("/api/v1/users", headers=headers)
    unknown = "unknown-token-0123456789abcdef0123456789"
    secrets.append(unknown)
    client.get("/api/v1/users", headers={"Authorization": f"Bearer {unknown}"})
    # Tokens made through the API (password exchange, device token for a tablet)...
    exchanged = client.post(
        "/api/v1/auth/token", json={"username": admin.username, "password": PASSWORD}
    )
    assert exchanged.status_code == 201
    secrets.append(exchanged.get_json()["token"])
    issued = client.post(
        "/api/v1/tokens", json={"user_id": str(enumerator.id), "kind": "device"}, headers=headers
    )
    assert issued.status_code == 201
    secrets.append(issued.get_json()["token"])
    client.get(f"/key/{issued.get_json()['token']}/formList")
    # ...and through the command line.
    created = run("tokens", "create", enumerator.username, "--kind", "device")
    assert created.exit_code == 0
    secrets.append(created.output.split()[-1])
    # Passwords set through the API and the command line.
    new_password = "a brand new passphrase 4410"
    secrets.append(new_password)
    client.patch(f"/api/v1/users/{enumerator.id}", json={"password": new_password}, headers=headers)
    cli_password = "console passphrase 99871"
    secrets.append(cli_password)
    monkeypatch.setenv("DIIWAAN_NEW_PASSWORD", cli_password)
    assert run("users", "create", "sec.newcomer", "--role", "partner").exit_code == 0
    assert run("users", "set-password", "sec.newcomer").exit_code == 0
    # A too-short password is refused without being echoed.
    client.post(
        "/api/v1/users",
        json={
            "username": "sec.short",
            "display_name": "x",
            "password": "short-7q",
            "role": "partner",
        },
        headers=headers,
    )
    secrets.append("short-7q")

    logged = _everything_logged(all_logs)
    audit = _audit_text(session)
    assert len(all_logs.records) >= 5 and "login" in audit  # the capture did see things
    for secret in secrets:
        assert secret not in logged, f"a secret reached the logs: {secret[:6]}…"
        assert secret not in audit, f"a secret reached the audit log: {secret[:6]}…"
    # Tokens are kept only as hashes.
    stored = " ".join(t.secret_hash + t.prefix for t in session.scalars(select(Token)))
    assert not [s for s in secrets if s in stored]
