"""Creating and editing users on the pages and through the API."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from server.accounts.models import User
from tests.factories import AdminFactory, DistrictFactory, SupervisorFactory, UserFactory

GOOD_PASSWORD = "long enough password"


@pytest.fixture
def admin_browser(browser):
    browser.admin = AdminFactory()
    browser.login(browser.admin.username)
    browser.refresh_csrf("/users/new")
    return browser


def find_user(session, username: str) -> User | None:
    session.expire_all()
    return session.scalar(select(User).where(User.username == username))


def new_user_form(**overrides):
    return {
        "username": "amina.yusuf",
        "display_name": "Amina Yusuf",
        "role": "supervisor",
        "password": GOOD_PASSWORD,
        **overrides,
    }


# --------------------------------------------------------------------------- pages


def test_admin_creates_a_supervisor_with_districts_on_the_page(admin_browser, session):
    hodan, wadajir, _other = DistrictFactory(), DistrictFactory(), DistrictFactory()
    response = admin_browser.post(
        "/users/new", new_user_form(district_ids=[str(hodan.id), str(wadajir.id)])
    )
    assert response.status_code == 302
    user = find_user(session, "amina.yusuf")
    assert response.headers["Location"] == f"/users/{user.id}"
    assert (user.role, user.display_name) == ("supervisor", "Amina Yusuf")
    assert user.district_ids == {hodan.id, wadajir.id}
    page = admin_browser.get(response.headers["Location"]).get_data(as_text=True)
    assert "User amina.yusuf created." in page
    # The new person can sign in with the password given.
    assert admin_browser.login("amina.yusuf", GOOD_PASSWORD).status_code == 302


def test_district_choices_are_grouped_by_region(admin_browser):
    bay = DistrictFactory(name="Baidoa", region__name="Bay")
    DistrictFactory(name="Dinsoor", region=bay.region)
    DistrictFactory(name="Hodan", region__name="Banadir")
    page = admin_browser.get("/users/new").get_data(as_text=True)
    rows = [row for row in page.split("<tr>") if '<th scope="row">' in row]
    by_region = {row.split('<th scope="row">')[1].split("<")[0]: row for row in rows}
    assert "Baidoa" in by_region["Bay"] and "Dinsoor" in by_region["Bay"]
    assert "Hodan" in by_region["Banadir"] and "Baidoa" not in by_region["Banadir"]


def test_users_page_lists_people_with_their_districts(admin_browser):
    district = DistrictFactory(name="Dharkenley")
    SupervisorFactory(username="cabdi.supervisor", districts=[district])
    page = admin_browser.get("/users").get_data(as_text=True)
    assert "cabdi.supervisor" in page
    assert "Dharkenley" in page


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        ({"username": "Not Valid!"}, "username", "2-80 characters"),
        ({"username": "x"}, "username", "Length must be between 2 and 80"),
        ({"password": "short"}, "password", "at least 10 characters"),
        ({"password": ""}, "password", "Length must be between"),
        ({"role": "superuser"}, "role", "Must be one of"),
        ({"district_ids": ["999999"]}, "district_ids", "no district with id 999999"),
    ],
)
def test_page_names_the_field_that_is_wrong_and_keeps_what_was_typed(
    admin_browser, session, overrides, field, problem
):
    form = new_user_form(**overrides)
    response = admin_browser.post("/users/new", form)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f"<strong>{field}</strong>: {problem}" in page
    assert 'value="Amina Yusuf"' in page
    assert find_user(session, form["username"].lower()) is None


def test_page_refuses_a_duplicate_username(admin_browser, session):
    SupervisorFactory(username="amina.yusuf")
    response = admin_browser.post("/users/new", new_user_form())
    assert response.status_code == 400
    assert "a user named &#39;amina.yusuf&#39; already exists" in response.get_data(as_text=True)


def test_usernames_are_stored_in_lower_case(admin_browser, session):
    admin_browser.post("/users/new", new_user_form(username="Amina.Yusuf"))
    assert find_user(session, "amina.yusuf") is not None


def test_admin_edits_role_districts_and_active_flag_on_the_page(admin_browser, session):
    before, after = DistrictFactory(), DistrictFactory()
    enumerator = UserFactory(districts=[before])
    admin_browser.refresh_csrf(f"/users/{enumerator.id}")
    response = admin_browser.post(
        f"/users/{enumerator.id}",
        {
            "display_name": "Xasan Cali",
            "role": "supervisor",
            "district_ids": [str(after.id)],
            "row_version": str(enumerator.row_version),
        },
    )
    assert response.status_code == 302
    user = find_user(session, enumerator.username)
    assert (user.display_name, user.role, user.active) == ("Xasan Cali", "supervisor", False)
    assert user.district_ids == {after.id}


def test_non_admins_cannot_open_user_pages(browser):
    supervisor = SupervisorFactory()
    browser.login(supervisor.username)
    assert browser.get("/users").status_code == 403
    assert browser.get("/users/new").status_code == 403
    assert browser.get(f"/users/{supervisor.id}").status_code == 403


def test_unknown_user_page_is_404(admin_browser):
    assert admin_browser.get("/users/not-a-uuid").status_code == 404
    assert admin_browser.get("/users/00000000-0000-0000-0000-000000000000").status_code == 404


# ----------------------------------------------------------------------------- API


def test_api_creates_a_user_with_districts(client, bearer, session):
    admin, district = AdminFactory(), DistrictFactory()
    response = client.post(
        "/api/v1/users",
        json={
            "username": "faarax",
            "role": "enumerator",
            "password": GOOD_PASSWORD,
            "district_ids": [district.id],
        },
        headers=bearer(admin),
    )
    assert response.status_code == 201
    body = response.get_json()
    assert (body["username"], body["role"], body["district_ids"]) == (
        "faarax",
        "enumerator",
        [district.id],
    )
    assert body["active"] is True
    assert "password" not in body
    assert find_user(session, "faarax").district_ids == {district.id}


def test_api_names_every_missing_field(client, bearer):
    response = client.post("/api/v1/users", json={}, headers=bearer(AdminFactory()))
    assert response.status_code == 400
    assert set(response.get_json()["error"]["details"]) == {
        "username",
        "role",
        "password",
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"username": "has spaces"}, "username"),
        ({"password": "short"}, "password"),
        ({"district_ids": [424242]}, "district_ids"),
    ],
)
def test_api_names_the_field_the_service_refused(client, bearer, overrides, field):
    body = {"username": "faarax", "role": "enumerator", "password": GOOD_PASSWORD, **overrides}
    response = client.post("/api/v1/users", json=body, headers=bearer(AdminFactory()))
    assert response.status_code == 400
    assert field in response.get_json()["error"]["details"]


def test_api_refuses_a_duplicate_username_with_409(client, bearer):
    SupervisorFactory(username="faarax")
    response = client.post(
        "/api/v1/users",
        json={"username": "FAARAX", "role": "enumerator", "password": GOOD_PASSWORD},
        headers=bearer(AdminFactory()),
    )
    assert response.status_code == 409


def test_api_reassigns_districts(client, bearer, session):
    admin = AdminFactory()
    first, second, third = DistrictFactory(), DistrictFactory(), DistrictFactory()
    enumerator = UserFactory(districts=[first])
    response = client.patch(
        f"/api/v1/users/{enumerator.id}",
        json={"district_ids": [second.id, third.id]},
        headers=bearer(admin),
    )
    assert response.status_code == 200
    assert response.get_json()["district_ids"] == sorted([second.id, third.id])
    assert find_user(session, enumerator.username).district_ids == {second.id, third.id}


def test_api_sets_a_password(client, bearer):
    admin, enumerator = AdminFactory(), UserFactory()
    response = client.patch(
        f"/api/v1/users/{enumerator.id}",
        json={"password": "set over the api"},
        headers=bearer(admin),
    )
    assert response.status_code == 200
    token = client.post(
        "/api/v1/auth/token",
        json={"username": enumerator.username, "password": "set over the api"},
    )
    assert token.status_code == 201


def test_api_user_by_unknown_id_is_404(client, bearer):
    response = client.get(
        "/api/v1/users/00000000-0000-0000-0000-000000000000", headers=bearer(AdminFactory())
    )
    assert response.status_code == 404
