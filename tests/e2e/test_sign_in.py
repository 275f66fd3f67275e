"""In a real browser: the administrator signs in, creates a supervisor, signs out."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_PASSWORD, ROOT

pytestmark = pytest.mark.browser


def sign_in(page, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def district_checkbox(page, region: str, district: str):
    row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=region, exact=True))
    return row.get_by_label(district, exact=True)


def test_admin_signs_in_creates_a_supervisor_for_a_district_and_signs_out(
    live_server, page, screenshot
):
    imported = live_server.cli(
        "districts", "import", str(ROOT / "docs" / "examples" / "somalia_locations.csv")
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith("imported 18 regions, ")

    page.goto("/users")
    expect(page).to_have_url(re.compile(r"/login\?next=/users$"))
    screenshot("1-login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/users$"))

    page.get_by_role("link", name="Diiwaan").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Administrator")
    screenshot("2-start")

    page.get_by_role("navigation", name="main").get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Users")
    page.get_by_role("link", name="New user").click()
    page.get_by_label("Username").fill("hodan.supervisor")
    page.get_by_label("Display name").fill("Xaliimo Cabdi")
    page.get_by_label("Role").select_option("supervisor")
    hodan = district_checkbox(page, "Banadir", "Hodan")
    hodan.check()
    page.get_by_label("Password").fill("a good long password")
    screenshot("3-new-user")
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status")).to_have_text("User hodan.supervisor created.")
    expect(district_checkbox(page, "Banadir", "Hodan")).to_be_checked()
    expect(district_checkbox(page, "Banadir", "Wadajir")).not_to_be_checked()
    expect(page.get_by_label("Role")).to_have_value("supervisor")
    screenshot("4-created")

    page.get_by_role("navigation", name="main").get_by_role("link", name="Users").click()
    row = page.get_by_role("row").filter(has_text="hodan.supervisor")
    expect(row).to_contain_text("Xaliimo Cabdi")
    expect(row).to_contain_text("Hodan")
    screenshot("5-users")

    nav = page.get_by_role("navigation", name="main")
    nav.get_by_role("link", name="Districts").click()
    expect(page.get_by_role("row").filter(has_text="SO-BN-HOD")).to_contain_text("Banadir")
    screenshot("6-districts")
    nav.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("row").filter(has_text="hodan.supervisor")).to_contain_text(
        "user.create"
    )
    screenshot("7-audit")
    nav.get_by_role("link", name="API").click()
    expect(page.get_by_role("heading", name="POST /api/v1/auth/token")).to_be_visible()
    screenshot("8-api-docs", full_page=False)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/users")
    expect(page).to_have_url(re.compile(r"/login\?next=/users$"))

    # The new supervisor can sign in and is not offered user management.
    sign_in(page, "hodan.supervisor", "a good long password")
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Xaliimo Cabdi")
    expect(page.get_by_text("for Hodan")).to_be_visible()
    expect(
        page.get_by_role("navigation", name="main").get_by_role("link", name="Users")
    ).to_have_count(0)
    screenshot("9-supervisor-start")


def test_wrong_password_shows_the_error_on_the_login_page(live_server, page, screenshot):
    sign_in(page, "admin", "not the password")
    expect(page.get_by_role("alert")).to_have_text("wrong username or password")
    expect(page.get_by_label("Username")).to_have_value("admin")
    expect(page.get_by_label("Password")).to_be_focused()
    expect(page).to_have_url(re.compile(r"/login$"))
    screenshot("wrong-password")


def test_an_administrator_signs_a_lost_laptop_out(live_server, chromium, page, screenshot):
    made = live_server.cli(
        "users", "create", "laptop.admin", "--role", "admin", "--password", "a lost laptop's pass"
    )
    assert made.returncode == 0, made.stderr
    laptop = chromium.new_context(base_url=live_server.url)
    try:
        lost = laptop.new_page()
        sign_in(lost, "laptop.admin", "a lost laptop's pass")
        expect(lost.get_by_role("heading", level=1)).to_have_text("Welcome, laptop.admin")

        sign_in(page, "admin", ADMIN_PASSWORD)
        page.goto("/users")
        page.get_by_role("link", name="laptop.admin").click()
        expect(page.get_by_role("heading", name="Signed in")).to_be_visible()
        screenshot("sign-ins")
        page.get_by_role("button", name="Sign out of every browser").click()
        expect(page.get_by_role("status")).to_have_text("Signed laptop.admin out of 1 browser(s).")
        expect(page.get_by_text("Not signed in on any browser.")).to_be_visible()

        lost.reload()
        expect(lost).to_have_url(re.compile(r"/login\?next=/$"))
    finally:
        laptop.close()
