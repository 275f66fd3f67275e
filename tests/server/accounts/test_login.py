"""Signing in and out of the pages: passwords, throttling, sessions, CSRF, redirects."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from server.accounts import service
from server.accounts.models import AuditEvent, User, WebSession
from server.db import as_utc, utcnow
from tests.conftest import PASSWORD, Browser
from tests.factories import AdminFactory, SupervisorFactory, UserFactory

WRONG = "not the password at all"


def max_failures(app) -> int:
    return app.config["DIIWAAN"].login_max_failures


def fail_until_locked(browser: Browser, app, username: str) -> None:
    for _ in range(max_failures(app)):
        assert browser.login(username, WRONG).status_code == 401


def test_login_page_offers_a_form_with_a_csrf_token(client):
    response = client.get("/login")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'name="csrf_token"' in page
    assert 'name="username"' in page
    assert 'type="password"' in page


def test_admin_signs_in_and_lands_on_the_start_page(browser, session):
    admin = AdminFactory(display_name="Faadumo Warsame")
    response = browser.login(admin.username)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = browser.get("/").get_data(as_text=True)
    assert "Welcome, Faadumo Warsame" in page
    assert 'href="/users"' in page
    session.expire_all()
    assert session.get(User, admin.id).last_login_at is not None


def test_anonymous_visitor_is_sent_to_login_and_back_to_the_page_asked_for(browser):
    admin = AdminFactory()
    response = browser.get("/users")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/users"
    browser.refresh_csrf("/login?next=/users")
    response = browser.post(
        "/login", {"username": admin.username, "password": PASSWORD, "next": "/users"}
    )
    assert response.headers["Location"] == "/users"


def test_username_is_matched_case_insensitively(browser):
    AdminFactory(username="hodan.ali")
    assert browser.login("Hodan.Ali").status_code == 302


def test_wrong_password_shows_a_message_and_does_not_sign_in(browser):
    admin = AdminFactory()
    response = browser.login(admin.username, WRONG)
    assert response.status_code == 401
    assert "wrong username or password" in response.get_data(as_text=True)
    assert browser.get("/").status_code == 302


def test_after_a_wrong_password_the_username_stays_filled_in(browser):
    admin = AdminFactory()
    page = browser.login(admin.username, WRONG).get_data(as_text=True)
    assert f'name="username" value="{admin.username}"' in page
    assert 'type="password" autocomplete="current-password" required autofocus' in page


def test_unknown_username_gets_the_same_message_as_a_wrong_password(browser):
    response = browser.login("nobody-here", WRONG)
    assert response.status_code == 401
    assert "wrong username or password" in response.get_data(as_text=True)


def test_logout_ends_the_session(browser):
    admin = AdminFactory()
    browser.login(admin.username)
    browser.refresh_csrf("/")
    response = browser.post("/logout")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert browser.get("/").status_code == 302


def signed_in_cookie(browser: Browser, username: str) -> str:
    browser.login(username)
    cookie = browser.client.get_cookie("diiwaan_session")
    assert cookie is not None and browser.get("/").status_code == 200
    return cookie.value


def test_a_copy_of_the_cookie_stops_working_once_its_browser_signs_out(browser):
    copied = signed_in_cookie(browser, AdminFactory().username)

    assert browser.post("/logout").status_code == 302
    browser.client.set_cookie("diiwaan_session", copied)

    response = browser.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_signing_out_one_browser_leaves_the_users_other_browsers_signed_in(app, browser):
    admin = AdminFactory()
    other = Browser(app.test_client())
    signed_in_cookie(other, admin.username)
    signed_in_cookie(browser, admin.username)

    browser.post("/logout")

    assert browser.get("/").status_code == 302
    assert other.get("/").status_code == 200


def test_a_sign_in_ends_when_it_expires_however_active_the_browser(browser, session):
    admin = AdminFactory()
    signed_in_cookie(browser, admin.username)
    (sign_in,) = session.scalars(select(WebSession).where(WebSession.user_id == admin.id))
    assert as_utc(sign_in.expires_at) - as_utc(sign_in.created_at) == dt.timedelta(hours=12)

    sign_in.expires_at = utcnow() - dt.timedelta(seconds=1)
    session.flush()

    response = browser.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_expired_sign_ins_are_purged_and_live_ones_kept(browser, session):
    admin, supervisor = AdminFactory(), SupervisorFactory()
    signed_in_cookie(browser, admin.username)
    signed_in_cookie(Browser(browser.client.application.test_client()), supervisor.username)
    expired = session.scalars(select(WebSession).where(WebSession.user_id == admin.id)).one()
    expired.expires_at = utcnow() - dt.timedelta(minutes=1)
    session.flush()

    assert service.purge_expired_web_sessions(session) == 1

    assert [row.user_id for row in session.scalars(select(WebSession))] == [supervisor.id]


def test_an_administrator_signs_a_user_out_of_every_browser(app, browser, session):
    supervisor = SupervisorFactory()
    laptop, phone = Browser(app.test_client()), Browser(app.test_client())
    signed_in_cookie(laptop, supervisor.username)
    signed_in_cookie(phone, supervisor.username)
    browser.login(AdminFactory().username)

    page = browser.get(f"/users/{supervisor.id}").get_data(as_text=True)
    assert page.count("<tr><td>20") == 2  # two sign-ins listed, with their times
    response = browser.post(f"/users/{supervisor.id}/sign-out")

    assert response.status_code == 302
    user_page = browser.get(response.headers["Location"]).get_data(as_text=True)
    assert "out of 2 browser(s)" in user_page
    assert laptop.get("/").status_code == 302 and phone.get("/").status_code == 302
    assert browser.get("/").status_code == 200  # the administrator's own sign-in stays
    (event,) = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "user.sign_out_everywhere")
    )
    assert (event.target_id, event.details) == (str(supervisor.id), {"sign_ins": 2})


def test_lockout_after_max_failures_answers_429_with_retry_after(app, browser):
    supervisor = SupervisorFactory()
    fail_until_locked(browser, app, supervisor.username)
    # Even the right password is refused while the lockout lasts.
    response = browser.login(supervisor.username, PASSWORD)
    assert response.status_code == 429
    assert "too many failed sign-ins" in response.get_data(as_text=True)
    lockout_seconds = app.config["DIIWAAN"].login_lockout_minutes * 60
    assert 0 < int(response.headers["Retry-After"]) <= lockout_seconds + 1


def test_one_failure_short_of_the_limit_does_not_lock(app, browser):
    supervisor = SupervisorFactory()
    for _ in range(max_failures(app) - 1):
        browser.login(supervisor.username, WRONG)
    assert browser.login(supervisor.username).status_code == 302


def test_success_resets_the_failure_count(app, browser, session):
    supervisor = SupervisorFactory()
    for _ in range(max_failures(app) - 1):
        browser.login(supervisor.username, WRONG)
    browser.login(supervisor.username)
    session.expire_all()
    assert session.get(User, supervisor.id).failed_logins == 0


def test_failure_bookkeeping_is_committed_although_the_request_failed(app, browser, session):
    supervisor = SupervisorFactory()
    browser.login(supervisor.username, WRONG)
    session.expire_all()
    assert session.get(User, supervisor.id).failed_logins == 1
    for _ in range(max_failures(app) - 1):
        browser.login(supervisor.username, WRONG)
    session.expire_all()
    locked_until = session.get(User, supervisor.id).locked_until
    assert locked_until is not None and as_utc(locked_until) > utcnow()


def test_lockout_ends_when_its_time_is_up(app, browser, session):
    supervisor = SupervisorFactory()
    fail_until_locked(browser, app, supervisor.username)
    session.expire_all()
    session.get(User, supervisor.id).locked_until = utcnow() - dt.timedelta(seconds=1)
    session.flush()
    assert browser.login(supervisor.username).status_code == 302


def test_setting_a_new_password_lifts_the_lockout(app, browser):
    supervisor = SupervisorFactory()
    fail_until_locked(browser, app, supervisor.username)
    result = app.test_cli_runner().invoke(
        args=["users", "set-password", supervisor.username, "--password", "a fresh passphrase"]
    )
    assert result.exit_code == 0, result.output
    assert browser.login(supervisor.username, "a fresh passphrase").status_code == 302


def test_deactivated_user_cannot_sign_in(browser):
    enumerator = UserFactory(active=False)
    response = browser.login(enumerator.username)
    assert response.status_code == 401
    assert "deactivated" in response.get_data(as_text=True)
    assert browser.get("/").status_code == 302


def test_deactivating_a_user_ends_their_open_session(browser, session):
    admin, supervisor = AdminFactory(), SupervisorFactory()
    browser.login(supervisor.username)
    assert browser.get("/").status_code == 200
    service.deactivate_user(session, admin, supervisor)
    assert browser.get("/").status_code == 302


def test_session_cookie_is_httponly_and_samesite_lax(browser):
    admin = AdminFactory()
    response = browser.login(admin.username)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if "diiwaan_session=" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_session_cookie_is_secure_when_configured(make_app):
    secure = Browser(make_app(session_cookie_secure=True).test_client())
    admin = AdminFactory()
    response = secure.login(admin.username)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if "diiwaan_session=" in c)
    assert "; Secure" in cookie


def test_signing_in_replaces_the_session_started_before_it(browser):
    admin = AdminFactory()
    browser.refresh_csrf("/login")
    before = browser.csrf
    browser.login(admin.username)
    # The CSRF token issued to the anonymous visitor no longer works.
    response = browser.client.post(
        "/logout", data={"csrf_token": before}, headers={"Accept": "text/html"}
    )
    assert response.status_code == 400


def test_password_change_signs_other_browsers_out_but_not_the_one_that_changed_it(app, session):
    admin = AdminFactory()
    here, elsewhere = Browser(app.test_client()), Browser(app.test_client())
    here.login(admin.username)
    elsewhere.login(admin.username)
    page = here.get(f"/users/{admin.id}").get_data(as_text=True)
    here.refresh_csrf(f"/users/{admin.id}")
    row_version = page.split('name="row_version" value="')[1].split('"')[0]
    response = here.post(
        f"/users/{admin.id}",
        {
            "display_name": admin.display_name,
            "role": "admin",
            "active": "on",
            "password": "a brand new passphrase",
            "row_version": row_version,
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    assert here.get("/users").status_code == 200
    assert elsewhere.get("/users").status_code == 302
    assert elsewhere.login(admin.username, "a brand new passphrase").status_code == 302


def test_admin_resetting_someone_elses_password_signs_that_person_out(app, browser, session):
    admin, supervisor = AdminFactory(), SupervisorFactory()
    browser.login(supervisor.username)
    assert browser.get("/").status_code == 200
    service.set_password(session, admin, supervisor, "reset by the admin")
    assert browser.get("/").status_code == 302


def test_login_post_without_csrf_token_is_refused(client):
    admin = AdminFactory()
    response = client.post("/login", data={"username": admin.username, "password": PASSWORD})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_page_forms_without_csrf_token_change_nothing(browser, session):
    admin = AdminFactory()
    browser.login(admin.username)
    response = browser.client.post(
        "/users/new",
        data={"username": "sneaky", "password": "long enough password", "role": "admin"},
    )
    assert response.status_code == 400
    assert session.query(User).filter_by(username="sneaky").count() == 0


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "javascript:alert(1)",
    ],
)
def test_next_never_redirects_off_site(browser, target):
    admin = AdminFactory()
    browser.refresh_csrf("/login")
    response = browser.post(
        "/login", {"username": admin.username, "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_next_keeps_a_local_path_with_its_query(browser):
    admin = AdminFactory()
    browser.refresh_csrf("/login")
    response = browser.post(
        "/login", {"username": admin.username, "password": PASSWORD, "next": "/audit?action=login"}
    )
    assert response.headers["Location"] == "/audit?action=login"
