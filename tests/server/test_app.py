"""The application factory, settings from the environment, the error mapping, security
headers and the API description."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.config import ConfigError, load_settings
from tests.factories import AdminFactory, SupervisorFactory, UserFactory

ROOT = Path(__file__).resolve().parents[2]
JSON_ERROR_KEYS = {"code", "message", "details"}


def diiwaan_command() -> str:
    local = ROOT / ".venv" / "bin" / "diiwaan"
    return str(local if local.exists() else Path(sys.executable).parent / "diiwaan")


# ------------------------------------------------------------------------- factory


def test_factory_applies_overrides_to_settings_and_flask_config(make_app):
    application = make_app(
        max_submission_mb=3, max_form_mb=2, login_max_failures=7, session_cookie_secure=True
    )
    settings = application.config["DIIWAAN"]
    assert settings.login_max_failures == 7
    assert settings.max_submission_bytes == 3 * 1024 * 1024
    # The largest body accepted is the larger limit plus room for the multipart envelope.
    assert application.config["MAX_CONTENT_LENGTH"] == 4 * 1024 * 1024
    assert application.config["SESSION_COOKIE_SECURE"] is True
    assert application.config["SECRET_KEY"] == "test-secret-key-0123456789"
    assert application.testing is True


def test_factory_keeps_unknown_overrides_as_extra_settings(make_app):
    application = make_app(SOMETHING_ELSE="kept")
    assert application.config["DIIWAAN"].extra["SOMETHING_ELSE"] == "kept"


# ------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("DIIWAAN_MAX_SUBMISSION_MB", "abc", "expected a whole number"),
        ("DIIWAAN_MAX_SUBMISSION_MB", "-5", "must be between 1 and 4096"),
        ("DIIWAAN_MAX_SUBMISSION_MB", "0", "must be between 1 and 4096"),
        ("DIIWAAN_MAX_FORM_MB", "1.5", "expected a whole number"),
        ("DIIWAAN_LOGIN_MAX_FAILURES", "0", "must be between 1 and 1000"),
        ("DIIWAAN_LOGIN_LOCKOUT_MINUTES", "forever", "expected a whole number"),
        ("DIIWAAN_API_TOKEN_HOURS", "999999", "must be between"),
        ("DIIWAAN_DATABASE_URL", "mysql://root@localhost/diiwaan", "only sqlite:/// and post"),
        ("DIIWAAN_SECRET_KEY", "short", "at least 16 characters"),
        ("DIIWAAN_KEY_ENCRYPTION_KEY", "x" * 31, "at least 32 characters"),
        ("DIIWAAN_SESSION_COOKIE_SECURE", "maybe", "expected true or false"),
        ("DIIWAAN_MATCH_MAX_CANDIDATES", "0", "must be between 1 and 10000"),
        ("DIIWAAN_MATCH_MAX_CANDIDATES", "thirty", "expected a whole number"),
        ("DIIWAAN_MATCH_HOUSEHOLD_MIN_SHARED", "0", "must be between 1 and 100"),
    ],
)
def test_bad_setting_stops_the_start_with_an_error_naming_the_variable(
    tmp_path, variable, value, problem
):
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DIIWAAN_DATA_DIR": str(tmp_path), variable: value})
    assert raised.value.variable == variable
    assert str(raised.value).startswith(f"{variable}: ")
    assert problem in str(raised.value)


def test_good_settings_are_parsed_into_typed_values(tmp_path):
    settings = load_settings(
        environ={
            "DIIWAAN_DATA_DIR": str(tmp_path),
            "DIIWAAN_MAX_SUBMISSION_MB": " 20 ",
            "DIIWAAN_SESSION_COOKIE_SECURE": "yes",
            "DIIWAAN_BASE_URL": "https://diiwaan.example.so/",
            "DIIWAAN_DATABASE_URL": "postgresql+psycopg://diiwaan@db/diiwaan",
        }
    )
    assert settings.max_submission_mb == 20
    assert settings.session_cookie_secure is True
    assert settings.base_url == "https://diiwaan.example.so"
    assert settings.database_url == "postgresql+psycopg://diiwaan@db/diiwaan"


def test_defaults_put_sqlite_and_generated_secrets_in_the_data_dir(tmp_path):
    first = load_settings(environ={"DIIWAAN_DATA_DIR": str(tmp_path)})
    second = load_settings(environ={"DIIWAAN_DATA_DIR": str(tmp_path)})
    assert first.database_url == f"sqlite:///{tmp_path.resolve() / 'diiwaan.db'}"
    assert len(first.secret_key) >= 32
    assert first.key_encryption_key != first.secret_key
    # Generated once and kept, so sessions and sealed keys survive a restart.
    assert (second.secret_key, second.key_encryption_key) == (
        first.secret_key,
        first.key_encryption_key,
    )
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_empty_variable_means_the_default(tmp_path):
    settings = load_settings(
        environ={"DIIWAAN_DATA_DIR": str(tmp_path), "DIIWAAN_MAX_SUBMISSION_MB": ""}
    )
    assert settings.max_submission_mb == 50


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DIIWAAN_MAX_SUBMISSION_MB", "abc"), ("DIIWAAN_DATABASE_URL", "oracle://x")],
)
def test_console_script_exits_non_zero_naming_the_bad_variable(tmp_path, variable, value):
    environment = {key: item for key, item in os.environ.items() if not key.startswith("DIIWAAN_")}
    environment.update({"DIIWAAN_DATA_DIR": str(tmp_path), variable: value})
    finished = subprocess.run(
        [diiwaan_command(), "users", "list"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode != 0
    assert "configuration error" in finished.stderr
    assert variable in finished.stderr
    assert "Traceback" not in finished.stderr


# ------------------------------------------------------------------- error mapping


def assert_json_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == JSON_ERROR_KEYS
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def assert_error_page(response, status):
    assert response.status_code == status
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert f"<h1>{status} " in page
    assert "Back to the start page" in page
    return page


HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def test_400_json_names_the_missing_fields(client):
    error = assert_json_error(client.post("/api/v1/auth/token", json={}), 400, "validation_failed")
    assert set(error["details"]) == {"username", "password"}
    assert "username" in error["message"]


def test_400_page_when_a_form_is_posted_without_csrf_token(client):
    page = assert_error_page(client.post("/login", data={"username": "a", "password": "b"}), 400)
    assert "CSRF" in page


def test_401_json_without_credentials(client):
    assert_json_error(client.get("/api/v1/users"), 401, "unauthorized")


def test_401_page_for_a_browser_with_a_bad_token(client):
    response = client.get("/", headers={**HTML, "Authorization": "Bearer not-a-real-token"})
    assert "unknown token" in assert_error_page(response, 401)


def test_403_json_and_page_for_a_supervisor_asking_for_users(client, browser, bearer):
    supervisor = SupervisorFactory()
    error = assert_json_error(
        client.get("/api/v1/users", headers=bearer(supervisor)), 403, "forbidden"
    )
    assert "users.manage" in error["message"]
    browser.login(supervisor.username)
    assert "may not do this" in assert_error_page(browser.get("/users", headers=HTML), 403)


def test_404_json_under_api_and_page_elsewhere(client):
    assert_json_error(client.get("/api/v1/no-such-thing"), 404, "not_found")
    assert_error_page(client.get("/no-such-page", headers=HTML), 404)


def test_404_json_outside_api_when_the_client_prefers_json(client):
    response = client.get("/no-such-page", headers={"Accept": "application/json"})
    assert_json_error(response, 404, "not_found")


def test_405_json_says_which_methods_are_allowed(client):
    response = client.put("/api/v1/auth/token", json={})
    assert_json_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_405_page_for_get_on_logout(client):
    assert_error_page(client.get("/logout", headers=HTML), 405)


def test_409_json_for_a_duplicate_username(client, bearer):
    admin = AdminFactory()
    body = {"username": admin.username, "password": "long enough password", "role": "partner"}
    response = client.post("/api/v1/users", json=body, headers=bearer(admin))
    assert "already exists" in assert_json_error(response, 409, "conflict")["message"]


def test_409_page_for_a_token_for_a_deactivated_user(browser, session):
    admin = AdminFactory()
    enumerator = UserFactory(active=False)
    browser.login(admin.username)
    browser.refresh_csrf(f"/users/{enumerator.id}")
    response = browser.post(f"/users/{enumerator.id}/tokens", {"name": "tablet"}, headers=HTML)
    assert "deactivated" in assert_error_page(response, 409)


def test_413_json_and_page_for_a_body_over_the_limit(make_app):
    small = make_app(max_submission_mb=1, max_form_mb=1)
    limit = small.config["MAX_CONTENT_LENGTH"]
    client = small.test_client()
    too_big = b"x" * (limit + 1)
    response = client.post("/api/v1/auth/token", data=too_big, content_type="application/json")
    assert_json_error(response, 413, "payload_too_large")
    response = client.post("/login", data={"username": too_big.decode()}, headers=HTML)
    assert_error_page(response, 413)


def test_500_hides_the_exception_from_json_and_browser_clients(make_app):
    fragile = make_app()

    def explode():
        raise RuntimeError("secret internals")

    fragile.add_url_rule("/api/v1/explode", "api_explode", explode)
    fragile.add_url_rule("/explode", "explode", explode)
    client = fragile.test_client()
    response = client.get("/api/v1/explode")
    error = assert_json_error(response, 500, "internal_error")
    assert "secret internals" not in json.dumps(error)
    page = assert_error_page(client.get("/explode", headers=HTML), 500)
    assert "secret internals" not in page
    assert "has been logged" in page


# -------------------------------------------------------------- security & API docs


def test_every_response_carries_security_headers(client):
    response = client.get("/login")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy


def test_signed_in_pages_are_not_cached(browser):
    admin = AdminFactory()
    browser.login(admin.username)
    assert browser.get("/users").headers["Cache-Control"] == "no-store"


def test_openapi_document_lists_the_token_endpoint_and_bearer_scheme(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = json.loads(response.get_data(as_text=True))
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "Diiwaan API"
    assert {"post", "delete"} <= set(spec["paths"]["/api/v1/auth/token"])
    assert "/api/v1/users" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    # Errors are described in our one shape.
    assert "error" in spec["components"]["schemas"]["Error"]["properties"]


def test_api_docs_page_lists_endpoints_without_external_scripts(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "POST /api/v1/auth/token" in page
    assert "GET /api/v1/users" in page
    assert "DELETE /api/v1/tokens/{token_id}" in page
    assert 'href="/api/v1/openapi.json"' in page
    assert "<script" not in page


def test_processes_starting_together_agree_on_the_generated_secret(tmp_path, monkeypatch):
    """Two gunicorn workers on a fresh data dir: both look, neither finds the file, both
    write. The second must read the first one's secret, not crash or overwrite it."""
    first = load_settings(environ={"DIIWAAN_DATA_DIR": str(tmp_path)})
    monkeypatch.setattr(Path, "exists", lambda self: False)
    second = load_settings(environ={"DIIWAAN_DATA_DIR": str(tmp_path)})
    assert second.secret_key == first.secret_key
    assert second.key_encryption_key == first.key_encryption_key
    assert sorted(path.name for path in tmp_path.iterdir()) == ["key_encryption_key", "secret_key"]


def test_api_docs_page_shows_the_signed_in_header(browser):
    admin = AdminFactory(display_name="Faadumo Warsame")
    browser.login(admin.username)
    page = browser.get("/api/v1/docs").get_data(as_text=True)
    assert "Faadumo Warsame (admin)" in page
    assert "Sign out" in page
    # The cookie still opens nothing else under /api/.
    assert browser.get("/api/v1/users").status_code == 401
