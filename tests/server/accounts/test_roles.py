"""Who may do what, and where: permissions by role, district scoping, the last
administrator, and optimistic locking of user edits."""

from __future__ import annotations

import pytest
from flask import jsonify
from sqlalchemy import select, update

from server.accounts import service
from server.accounts.models import District, User
from server.db import db
from server.errors import Forbidden, Unauthorized
from tests.conftest import PASSWORD, Browser
from tests.factories import AdminFactory, DistrictFactory, SupervisorFactory, UserFactory

# What each role may do, written out from the issue rather than read from PERMISSIONS,
# so a change to the table has to be a deliberate change here too.
EXPECTED = {
    "users.manage": {"admin"},
    "districts.manage": {"admin"},
    "audit.read": {"admin"},
    "forms.manage": {"admin"},
    "keys.manage": {"admin"},
    "submissions.manage": {"admin"},
    "forms.read": {"admin", "supervisor", "enumerator"},
    "forms.fill": {"admin", "enumerator"},
    "submissions.read": {"admin", "supervisor"},
    "submissions.review": {"admin", "supervisor"},
    "registry.decide": {"admin", "supervisor"},
    "registry.read": {"admin", "supervisor", "enumerator", "partner"},
    "tokens.own": {"admin", "supervisor", "enumerator", "partner"},
}
ROLES = ("admin", "supervisor", "enumerator", "partner")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("permission", sorted(EXPECTED))
def test_require_grants_exactly_the_permissions_of_the_role(session, role, permission):
    user = UserFactory(role=role)
    if role in EXPECTED[permission]:
        assert service.require(user, permission) is user
    else:
        with pytest.raises(Forbidden, match=f"the {role} role may not do this"):
            service.require(user, permission)


def test_permission_table_has_nothing_the_tests_do_not_know_about():
    granted = {p for permissions in service.PERMISSIONS.values() for p in permissions}
    assert granted == set(EXPECTED)
    assert set(service.PERMISSIONS) == set(ROLES)


def test_require_without_a_user_is_unauthorized():
    with pytest.raises(Unauthorized):
        service.require(None, "registry.read")


def test_deactivated_user_has_no_permissions(session):
    admin = AdminFactory(active=False)
    with pytest.raises(Forbidden):
        service.require(admin, "users.manage")


@pytest.fixture
def three_districts(session):
    return DistrictFactory(name="Hodan"), DistrictFactory(name="Baidoa"), DistrictFactory()


def test_admin_sees_every_district(session, three_districts):
    admin = AdminFactory(districts=[three_districts[0]])
    assert service.visible_district_ids(admin) is None
    for district in three_districts:
        service.require_district(admin, district.id)
    service.require_district(admin, None)


@pytest.mark.parametrize("role", ["supervisor", "enumerator", "partner"])
def test_other_roles_see_only_their_own_districts(session, three_districts, role):
    hodan, baidoa, elsewhere = three_districts
    user = UserFactory(role=role, districts=[hodan, baidoa])
    assert service.visible_district_ids(user) == {hodan.id, baidoa.id}
    service.require_district(user, hodan.id)
    with pytest.raises(Forbidden, match="not assigned"):
        service.require_district(user, elsewhere.id)
    with pytest.raises(Forbidden):
        service.require_district(user, None)


@pytest.mark.parametrize(
    ("role", "assigned", "expected"),
    [
        ("admin", [], ["Baidoa", "Hodan", "Other"]),
        ("supervisor", ["Hodan"], ["Hodan"]),
        ("enumerator", ["Hodan", "Baidoa"], ["Baidoa", "Hodan"]),
        ("partner", [], []),
    ],
)
def test_scope_to_districts_filters_a_query_by_role(session, role, assigned, expected):
    districts = {
        name: DistrictFactory(name=name, code=f"T-{name}") for name in ("Hodan", "Baidoa", "Other")
    }
    user = UserFactory(role=role, districts=[districts[name] for name in assigned])
    statement = select(District.name).where(District.code.startswith("T-"))
    scoped = service.scope_to_districts(statement, District.id, user)
    assert sorted(session.scalars(scoped)) == expected


def test_supervisor_gets_403_on_the_users_api(client, bearer):
    response = client.get("/api/v1/users", headers=bearer(SupervisorFactory()))
    assert response.status_code == 403


@pytest.mark.parametrize("role", ["supervisor", "enumerator", "partner"])
def test_only_admins_read_the_audit_log(client, bearer, role):
    response = client.get("/api/v1/audit", headers=bearer(UserFactory(role=role)))
    assert response.status_code == 403
    assert f"the {role} role may not" in response.get_json()["error"]["message"]


def test_any_signed_in_role_may_list_districts(client, bearer):
    DistrictFactory(name="Wadajir")
    response = client.get("/api/v1/districts", headers=bearer(UserFactory(role="partner")))
    assert response.status_code == 200
    assert "Wadajir" in [district["name"] for district in response.get_json()]


def test_navigation_shows_each_role_only_what_it_may_open(app):
    supervisor = Browser(app.test_client())
    supervisor.login(SupervisorFactory().username)
    page = supervisor.get("/").get_data(as_text=True)
    assert 'href="/districts"' in page
    assert 'href="/users"' not in page
    assert 'href="/audit"' not in page


# --------------------------------------------------------------- the last admin


def test_last_admin_cannot_be_demoted(client, bearer):
    admin = AdminFactory()
    response = client.patch(
        f"/api/v1/users/{admin.id}", json={"role": "supervisor"}, headers=bearer(admin)
    )
    assert response.status_code == 409
    assert "last active administrator" in response.get_json()["error"]["message"]


def test_last_admin_cannot_be_deactivated(client, bearer, session):
    admin = AdminFactory()
    headers = bearer(admin)
    response = client.patch(f"/api/v1/users/{admin.id}", json={"active": False}, headers=headers)
    assert response.status_code == 409
    session.expire_all()
    assert session.get(User, admin.id).active is True


def test_last_admin_cannot_be_deactivated_from_the_command_line(app):
    admin = AdminFactory()
    result = app.test_cli_runner().invoke(args=["users", "deactivate", admin.username])
    assert result.exit_code == 1
    assert "last active administrator" in result.output


def test_a_deactivated_admin_does_not_count_as_another_admin(client, bearer):
    admin = AdminFactory()
    AdminFactory(active=False)
    response = client.patch(
        f"/api/v1/users/{admin.id}", json={"role": "supervisor"}, headers=bearer(admin)
    )
    assert response.status_code == 409


def test_an_admin_may_be_demoted_when_another_remains(client, bearer):
    admin, colleague = AdminFactory(), AdminFactory()
    response = client.patch(
        f"/api/v1/users/{colleague.id}", json={"role": "supervisor"}, headers=bearer(admin)
    )
    assert response.status_code == 200
    assert response.get_json()["role"] == "supervisor"


# ------------------------------------------------------------ optimistic locking


def test_patch_with_the_current_row_version_succeeds_and_advances_it(client, bearer):
    admin, supervisor = AdminFactory(), SupervisorFactory()
    headers = bearer(admin)
    before = client.get(f"/api/v1/users/{supervisor.id}", headers=headers).get_json()
    response = client.patch(
        f"/api/v1/users/{supervisor.id}",
        json={"display_name": "Cali Nuur", "row_version": before["row_version"]},
        headers=headers,
    )
    assert response.status_code == 200
    assert response.get_json()["row_version"] == before["row_version"] + 1


def test_patch_with_a_stale_row_version_is_409_and_changes_nothing(client, bearer, session):
    admin, supervisor = AdminFactory(), SupervisorFactory(display_name="Original")
    headers = bearer(admin)
    read = client.get(f"/api/v1/users/{supervisor.id}", headers=headers).get_json()["row_version"]
    first = client.patch(
        f"/api/v1/users/{supervisor.id}",
        json={"display_name": "First editor", "row_version": read},
        headers=headers,
    )
    assert first.status_code == 200
    second = client.patch(
        f"/api/v1/users/{supervisor.id}",
        json={"display_name": "Second editor", "row_version": read},
        headers=headers,
    )
    assert second.status_code == 409
    assert "changed by someone else" in second.get_json()["error"]["message"]
    session.expire_all()
    assert session.get(User, supervisor.id).display_name == "First editor"


def test_stale_edit_form_shows_the_conflict(browser, session):
    admin, supervisor = AdminFactory(), SupervisorFactory()
    browser.login(admin.username)
    browser.refresh_csrf(f"/users/{supervisor.id}")
    service.update_user(session, admin, supervisor, display_name="Changed meanwhile")
    response = browser.post(
        f"/users/{supervisor.id}",
        {"display_name": "Mine", "role": "supervisor", "active": "on", "row_version": "1"},
    )
    assert response.status_code == 400
    assert "changed by someone else" in response.get_data(as_text=True)


def test_the_user_signing_in_does_not_make_an_open_edit_form_stale(app, browser, session):
    admin, supervisor = AdminFactory(), SupervisorFactory()
    browser.login(admin.username)
    browser.refresh_csrf(f"/users/{supervisor.id}")
    version = supervisor.row_version
    # Meanwhile the supervisor signs in (and mistypes once): only bookkeeping changes.
    elsewhere = Browser(app.test_client())
    elsewhere.login(supervisor.username, "mistyped password")
    elsewhere.login(supervisor.username, PASSWORD)
    response = browser.post(
        f"/users/{supervisor.id}",
        {"display_name": "Renamed", "role": "supervisor", "active": "on", "row_version": version},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    session.expire_all()
    assert session.get(User, supervisor.id).display_name == "Renamed"


def test_concurrent_save_that_loses_the_race_is_409_not_500(make_app, session):
    """Both requests read the same row_version; the second flush finds the row changed."""
    racing = make_app()
    admin, supervisor = AdminFactory(), SupervisorFactory(display_name="Before")

    def save_after_a_concurrent_save():
        user = db.session.get(User, supervisor.id)
        # Another administrator's save lands between our read and our write.
        db.session.execute(
            update(User.__table__)
            .where(User.__table__.c.id == supervisor.id)
            .values(row_version=User.__table__.c.row_version + 1, display_name="Winner")
        )
        actor = db.session.get(User, admin.id)
        service.update_user(db.session, actor, user, display_name="Loser")
        return jsonify({})

    racing.add_url_rule("/api/v1/race", "race", save_after_a_concurrent_save)
    response = racing.test_client().get("/api/v1/race")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "conflict"
    session.expire_all()
    assert session.get(User, supervisor.id).display_name == "Before"
