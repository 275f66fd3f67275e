"""API and device tokens: issuing, using (Bearer and /key/<token>/), expiry, revocation."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

from sqlalchemy import select

from server.accounts import service
from server.accounts.models import Token
from server.db import as_utc, utcnow
from tests.conftest import PASSWORD
from tests.factories import AdminFactory, DistrictFactory, SupervisorFactory, UserFactory


def sign_in_for_token(client, username, **extra):
    return client.post(
        "/api/v1/auth/token", json={"username": username, "password": PASSWORD, **extra}
    )


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_password_exchange_answers_201_with_the_secret_and_its_expiry(app, client):
    admin = AdminFactory()
    before = utcnow()
    response = sign_in_for_token(client, admin.username, name="MIS nightly")
    assert response.status_code == 201
    body = response.get_json()
    assert len(body["token"]) >= 40
    assert body["kind"] == "api"
    assert body["name"] == "MIS nightly"
    assert body["username"] == admin.username
    assert body["prefix"] == body["token"][:8]
    expires_at = dt.datetime.fromisoformat(body["expires_at"])
    hours = app.config["DIIWAAN"].api_token_hours
    assert before + dt.timedelta(hours=hours) <= as_utc(expires_at)
    assert as_utc(expires_at) <= utcnow() + dt.timedelta(hours=hours)


def test_password_exchange_honours_a_shorter_lifetime(client):
    admin = AdminFactory()
    body = sign_in_for_token(client, admin.username, hours=2).get_json()
    expires_at = as_utc(dt.datetime.fromisoformat(body["expires_at"]))
    assert expires_at <= utcnow() + dt.timedelta(hours=2)


def test_password_exchange_with_a_wrong_password_is_401(client):
    admin = AdminFactory()
    response = client.post(
        "/api/v1/auth/token", json={"username": admin.username, "password": "wrong password"}
    )
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "wrong username or password"


def test_password_exchange_is_throttled_like_the_login_page(app, client):
    admin = AdminFactory()
    for _ in range(app.config["DIIWAAN"].login_max_failures):
        client.post("/api/v1/auth/token", json={"username": admin.username, "password": "nope"})
    response = sign_in_for_token(client, admin.username)
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "too_many_requests"
    assert int(response.headers["Retry-After"]) > 0


def test_bearer_token_lets_an_admin_list_users(client):
    admin = AdminFactory()
    secret = sign_in_for_token(client, admin.username).get_json()["token"]
    response = client.get("/api/v1/users", headers=auth(secret))
    assert response.status_code == 200
    assert admin.username in [user["username"] for user in response.get_json()]


def test_api_ignores_the_session_cookie(browser):
    admin = AdminFactory()
    browser.login(admin.username)
    # A signed-in browser cannot be used cross-site against the (CSRF-exempt) API.
    assert browser.get("/api/v1/users").status_code == 401


def test_expired_token_is_refused_with_a_message_naming_expiry(client, session):
    admin = AdminFactory()
    body = sign_in_for_token(client, admin.username, hours=1).get_json()
    token = session.get(Token, uuid.UUID(body["id"]))
    token.expires_at = utcnow() - dt.timedelta(seconds=1)
    session.flush()
    response = client.get("/api/v1/users", headers=auth(body["token"]))
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "this token has expired"


def test_revoked_token_stops_working_at_once(client, bearer):
    admin = AdminFactory()
    body = sign_in_for_token(client, admin.username).get_json()
    assert client.get("/api/v1/users", headers=auth(body["token"])).status_code == 200
    response = client.delete(f"/api/v1/tokens/{body['id']}", headers=bearer(admin))
    assert response.status_code == 200
    assert response.get_json()["revoked_at"] is not None
    response = client.get("/api/v1/users", headers=auth(body["token"]))
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "this token has been revoked"


def test_delete_auth_token_revokes_the_token_it_was_sent_with(client, session):
    admin = AdminFactory()
    body = sign_in_for_token(client, admin.username).get_json()
    response = client.delete("/api/v1/auth/token", headers=auth(body["token"]))
    assert response.status_code == 204
    session.expire_all()
    assert session.get(Token, uuid.UUID(body["id"])).revoked_at is not None
    assert client.get("/api/v1/users", headers=auth(body["token"])).status_code == 401


def test_delete_auth_token_without_a_token_is_401(client):
    assert client.delete("/api/v1/auth/token").status_code == 401


def test_someone_elses_token_cannot_be_revoked_by_a_non_admin(client, bearer, session):
    owner, other = SupervisorFactory(), SupervisorFactory()
    token, _secret = service.issue_token(session, None, owner, kind="api")
    response = client.delete(f"/api/v1/tokens/{token.id}", headers=bearer(other))
    assert response.status_code == 403
    session.expire_all()
    assert session.get(Token, token.id).revoked_at is None


def test_token_is_stored_only_as_a_hash(client, session):
    admin = AdminFactory()
    body = sign_in_for_token(client, admin.username).get_json()
    row = session.execute(select(Token.__table__).where(Token.id == uuid.UUID(body["id"]))).one()
    stored = " ".join(str(value) for value in row)
    assert body["token"] not in stored
    assert row.secret_hash == hashlib.sha256(body["token"].encode()).hexdigest()


def test_unknown_bearer_token_is_401(client):
    response = client.get("/api/v1/districts", headers=auth("x" * 43))
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "unknown token"


def test_device_token_works_as_url_prefix(client, session):
    district = DistrictFactory(name="Hodan")
    enumerator = UserFactory(districts=[district])
    _token, secret = service.issue_token(session, None, enumerator, kind="device")
    response = client.get(f"/key/{secret}/api/v1/districts")
    assert response.status_code == 200
    assert "Hodan" in [item["name"] for item in response.get_json()]


def test_device_token_also_works_as_bearer(client, bearer):
    enumerator = UserFactory()
    assert client.get("/api/v1/districts", headers=bearer(enumerator, "device")).status_code == 200


def test_api_token_is_refused_as_url_prefix(client, session):
    admin = AdminFactory()
    _token, secret = service.issue_token(session, None, admin, kind="api")
    response = client.get(f"/key/{secret}/api/v1/districts")
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "unknown token"


def test_revoked_device_token_is_refused_as_url_prefix(client, session):
    enumerator = UserFactory()
    token, secret = service.issue_token(session, None, enumerator, kind="device")
    service.revoke_token(session, None, token)
    assert client.get(f"/key/{secret}/api/v1/districts").status_code == 401


def test_using_a_token_records_when_it_was_last_used(client, session):
    enumerator = UserFactory()
    token, secret = service.issue_token(session, None, enumerator, kind="device")
    assert token.last_used_at is None
    client.get(f"/key/{secret}/api/v1/districts")
    session.expire_all()
    first_use = session.get(Token, token.id).last_used_at
    assert first_use is not None
    # Within the minute a second use writes nothing (a syncing tablet reads a lot).
    client.get(f"/key/{secret}/api/v1/districts")
    session.expire_all()
    assert session.get(Token, token.id).last_used_at == first_use


def test_device_tokens_are_only_for_enumerators(client, bearer):
    admin, supervisor = AdminFactory(), SupervisorFactory()
    response = client.post(
        "/api/v1/tokens",
        json={"user_id": str(supervisor.id), "kind": "device"},
        headers=bearer(admin),
    )
    assert response.status_code == 400
    assert "enumerators" in response.get_json()["error"]["message"]


def test_admin_issues_a_device_token_for_an_enumerators_tablet(client, bearer):
    admin, enumerator = AdminFactory(), UserFactory()
    response = client.post(
        "/api/v1/tokens",
        json={"user_id": str(enumerator.id), "kind": "device", "name": "tablet 07"},
        headers=bearer(admin),
    )
    assert response.status_code == 201
    body = response.get_json()
    assert (body["kind"], body["name"], body["expires_at"]) == ("device", "tablet 07", None)
    assert client.get(f"/key/{body['token']}/api/v1/districts").status_code == 200


def test_a_user_cannot_issue_tokens_for_someone_else(client, bearer):
    supervisor, enumerator = SupervisorFactory(), UserFactory()
    response = client.post(
        "/api/v1/tokens",
        json={"user_id": str(enumerator.id), "kind": "device"},
        headers=bearer(supervisor),
    )
    assert response.status_code == 403


def test_token_list_shows_own_tokens_to_non_admins(client, bearer, session):
    supervisor, other = SupervisorFactory(), SupervisorFactory()
    service.issue_token(session, None, other, kind="api", name="not mine")
    headers = bearer(supervisor)
    names = [token["username"] for token in client.get("/api/v1/tokens", headers=headers).json]
    assert names == [supervisor.username]


def test_deactivating_a_user_revokes_their_tokens(client, session):
    admin, enumerator = AdminFactory(), UserFactory()
    _token, secret = service.issue_token(session, None, enumerator, kind="device")
    service.deactivate_user(session, admin, enumerator)
    response = client.get(f"/key/{secret}/api/v1/districts")
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "this token has been revoked"


def test_token_page_shows_the_new_secret_once(browser, session):
    admin, enumerator = AdminFactory(), UserFactory()
    browser.login(admin.username)
    browser.refresh_csrf(f"/users/{enumerator.id}")
    response = browser.post(f"/users/{enumerator.id}/tokens", {"name": "tablet 12"})
    assert response.status_code == 302
    page = browser.get(f"/users/{enumerator.id}").get_data(as_text=True)
    secret = page.split('<code class="secret">')[1].split("<")[0]
    token = session.scalar(select(Token).where(Token.user_id == enumerator.id))
    assert (token.kind, token.name, token.prefix) == ("device", "tablet 12", secret[:8])
    assert secret not in browser.get(f"/users/{enumerator.id}").get_data(as_text=True)


def test_revoke_button_revokes_the_token(browser, session):
    admin, enumerator = AdminFactory(), UserFactory()
    token, _secret = service.issue_token(session, None, enumerator, kind="device")
    browser.login(admin.username)
    browser.refresh_csrf(f"/users/{enumerator.id}")
    response = browser.post(f"/tokens/{token.id}/revoke")
    assert response.headers["Location"] == f"/users/{enumerator.id}"
    session.expire_all()
    assert session.get(Token, token.id).revoked_at is not None


def test_no_secret_starts_with_a_dash_a_command_line_would_take_for_an_option(session, monkeypatch):
    # token_urlsafe's alphabet includes '-': one secret in 64 would start with it.
    drawn = iter(["-starts-with-a-dash-" + "x" * 23, "plain-" + "y" * 37])
    monkeypatch.setattr(service.secrets, "token_urlsafe", lambda _nbytes: next(drawn))
    enumerator = UserFactory(districts=[DistrictFactory(name="Hodan")])

    _token, secret = service.issue_token(session, None, enumerator, kind="device")

    assert secret == "plain-" + "y" * 37
    assert service.user_for_token(session, secret)[0] == enumerator
