"""The audit log: what writes an event, and who may read it."""

from __future__ import annotations

from sqlalchemy import select

from server.accounts import service
from server.accounts.models import AuditEvent
from tests.conftest import PASSWORD
from tests.factories import AdminFactory, DistrictFactory, SupervisorFactory, UserFactory


def events(session, action: str | None = None) -> list[AuditEvent]:
    session.expire_all()
    statement = select(AuditEvent).order_by(AuditEvent.id)
    if action:
        statement = statement.where(AuditEvent.action == action)
    return list(session.scalars(statement))


def test_signing_in_is_recorded_with_who_and_from_where(browser, session):
    supervisor = SupervisorFactory()
    browser.login(supervisor.username)
    [event] = events(session, "login")
    assert (event.actor_id, event.actor_name) == (supervisor.id, supervisor.username)
    assert (event.target_type, event.target_id) == ("user_account", str(supervisor.id))
    assert event.remote_addr == "127.0.0.1"


def test_failed_sign_ins_are_recorded_with_the_reason(browser, session):
    supervisor = SupervisorFactory()
    browser.login(supervisor.username, "wrong password")
    browser.login("nobody-at-all", "wrong password")
    wrong, unknown = events(session, "login.failed")
    assert (wrong.actor_name, wrong.details["reason"]) == (supervisor.username, "wrong password")
    assert wrong.details["locked"] is False
    assert (unknown.actor_id, unknown.actor_name) == (None, "nobody-at-all")
    assert unknown.details["reason"] == "unknown user"


def test_refusals_during_a_lockout_are_recorded(app, browser, session):
    supervisor = SupervisorFactory()
    for _ in range(app.config["DIIWAAN"].login_max_failures):
        browser.login(supervisor.username, "wrong password")
    browser.login(supervisor.username)
    assert events(session, "login.failed")[-1].details["locked"] is True
    assert [event.actor_name for event in events(session, "login.locked")] == [supervisor.username]


def test_signing_out_is_recorded(browser, session):
    supervisor = SupervisorFactory()
    browser.login(supervisor.username)
    browser.refresh_csrf("/")
    browser.post("/logout")
    assert [event.actor_id for event in events(session, "logout")] == [supervisor.id]


def test_creating_and_changing_users_is_recorded_with_the_changes(client, bearer, session):
    admin, district = AdminFactory(), DistrictFactory()
    headers = bearer(admin)
    created = client.post(
        "/api/v1/users",
        json={
            "username": "ilhaan",
            "role": "enumerator",
            "password": "long enough password",
            "district_ids": [district.id],
        },
        headers=headers,
    ).get_json()
    client.patch(
        f"/api/v1/users/{created['id']}",
        json={"role": "supervisor", "display_name": "Ilhaan Maxamed"},
        headers=headers,
    )
    [create] = events(session, "user.create")
    assert (create.actor_id, create.target_id) == (admin.id, created["id"])
    assert create.details == {
        "username": "ilhaan",
        "role": "enumerator",
        "districts": [district.id],
    }
    assert "password" not in str(create.details)
    [change] = events(session, "user.update")
    assert change.details == {
        "role": ["enumerator", "supervisor"],
        "display_name": "Ilhaan Maxamed",
    }


def test_an_edit_that_changes_nothing_writes_no_event(client, bearer, session):
    admin, supervisor = AdminFactory(), SupervisorFactory()
    client.patch(
        f"/api/v1/users/{supervisor.id}",
        json={"display_name": supervisor.display_name},
        headers=bearer(admin),
    )
    assert events(session, "user.update") == []


def test_setting_a_password_is_recorded_without_the_password(session):
    admin, supervisor = AdminFactory(), SupervisorFactory()
    service.set_password(session, admin, supervisor, "a secret passphrase")
    [event] = events(session, "user.set_password")
    assert event.actor_id == admin.id
    assert "a secret passphrase" not in str(event.details)


def test_issuing_and_revoking_tokens_is_recorded(client, session):
    admin = AdminFactory()
    body = client.post(
        "/api/v1/auth/token", json={"username": admin.username, "password": PASSWORD}
    ).get_json()
    client.delete("/api/v1/auth/token", headers={"Authorization": f"Bearer {body['token']}"})
    [issued] = events(session, "token.create")
    [revoked] = events(session, "token.revoke")
    for event in (issued, revoked):
        assert (event.actor_id, event.target_type, event.target_id) == (
            admin.id,
            "token",
            body["id"],
        )
    assert issued.details["kind"] == "api"
    assert body["token"] not in str(issued.details)


def test_console_actions_are_recorded_without_an_actor(app, session):
    enumerator = UserFactory()
    result = app.test_cli_runner().invoke(args=["tokens", "create", enumerator.username])
    assert result.exit_code == 0, result.output
    token_id = result.output.split()[1]
    app.test_cli_runner().invoke(args=["tokens", "revoke", token_id])
    [revoked] = events(session, "token.revoke")
    assert (revoked.actor_id, revoked.actor_name, revoked.target_id) == (None, "", token_id)


def test_districts_import_is_recorded(session):
    admin = AdminFactory()
    service.import_locations(
        session,
        admin,
        "region_code,region_name,district_code,district_name\nSO-SO,Sool,SO-SO-LAS,Las Anod\n",
    )
    [event] = events(session, "districts.import")
    assert event.actor_id == admin.id
    assert event.details == {"regions": 1, "districts": 1, "villages": 0}


# ------------------------------------------------------------------------- reading


def make_history(session):
    admin, supervisor = AdminFactory(username="head.office"), SupervisorFactory()
    service.audit(session, supervisor, "login", supervisor)
    service.audit(session, admin, "user.create", supervisor, username=supervisor.username)
    service.audit(session, admin, "token.create", supervisor, kind="api")
    return admin, supervisor


def test_admin_filters_the_audit_api_by_action_and_actor(client, session):
    admin, supervisor = make_history(session)
    headers = {
        "Authorization": f"Bearer {service.issue_token(session, None, admin, kind='api')[1]}"
    }
    response = client.get("/api/v1/audit?action=token&actor=head.office", headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    # the admin's own token issue above, then the history's token.create, newest first
    assert [event["action"] for event in body["events"]] == ["token.create", "token.create"]
    assert body["total"] == 2
    assert {event["actor_name"] for event in body["events"]} == {"head.office"}
    response = client.get(f"/api/v1/audit?actor={supervisor.username}", headers=headers)
    assert [event["action"] for event in response.get_json()["events"]] == ["login"]


def test_audit_api_pages_newest_first(client, bearer, session):
    admin = AdminFactory()
    for number in range(5):
        service.audit(session, admin, f"test.event{number}")
    headers = bearer(admin)
    body = client.get("/api/v1/audit?action=test.&per_page=2&page=2", headers=headers).get_json()
    assert (body["total"], body["page"], body["per_page"]) == (5, 2, 2)
    assert [event["action"] for event in body["events"]] == ["test.event2", "test.event1"]


def test_admin_filters_the_audit_page(browser, session):
    admin, supervisor = make_history(session)
    browser.login(admin.username)
    page = browser.get("/audit?action=user.create").get_data(as_text=True)
    assert "user.create" in page
    assert "token.create" not in page
    page = browser.get(f"/audit?actor={supervisor.username}").get_data(as_text=True)
    assert "<td>login</td>" in page
    assert "user.create" not in page


def test_audit_page_filters_by_date(browser, session):
    admin = AdminFactory()
    browser.login(admin.username)
    assert "1 event(s)" in browser.get("/audit?since=2000-01-01").get_data(as_text=True)
    assert "0 event(s)" in browser.get("/audit?until=2000-01-01").get_data(as_text=True)


def test_non_admins_cannot_read_the_audit_log(browser, client, bearer):
    supervisor = SupervisorFactory()
    assert client.get("/api/v1/audit", headers=bearer(supervisor)).status_code == 403
    browser.login(supervisor.username)
    assert browser.get("/audit").status_code == 403
