from tests.factories import AdminFactory


def test_admin_can_sign_in_and_sees_users_page(browser):
    admin = AdminFactory()
    response = browser.login(admin.username)
    assert response.status_code == 302
    page = browser.get("/users")
    assert page.status_code == 200
    assert admin.username in page.get_data(as_text=True)
