"""Every endpoint × every role × own/other district, generated from the app's url_map.

`RULES` says, for each (endpoint, method), what each role gets when the URL names a
record of its own district (A) and, for endpoints that name one, of the other (B). A new
endpoint without a rule fails `test_every_route_has_a_rule`, and its matrix case fails
too. Each call runs in a SAVEPOINT rolled back afterwards, so calls never see each other's
effects; the world of records is built once for the module.

Outcomes: "ok" means the caller got through (any status below 500 other than 401, 403,
404, 405 and a redirect to the login page: a 400 for an empty form or a 409 for a record
already decided still means authorisation let the caller in); "login" is a redirect to the
sign-in page; a number is that exact status.

Every answer to a non-administrator is also searched for district B's markers (names,
national IDs, entity, submission and instance ids, B's form and enumerator): personal
data never crosses districts, whatever the status.
"""

from __future__ import annotations

import gzip
import io
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask, url_for

from server.db import db
from tests import factories
from tests.security.world import (
    ROLES,
    World,
    assembled_app,
    basic_auth,
    bearer,
    build_world,
    signed_in_cookie,
)
from tests.support.submissions import PHOTO_NAME, encode_multipart

OK, LOGIN = "ok", "login"
ANON, ADMIN, SUP, ENUM, PARTNER = ROLES


@dataclass(frozen=True)
class Rule:
    """Expected outcome per role for a record of district A (`own`) and, when the URL
    names a district's record, of district B (`other`)."""

    own: dict[str, Any]
    other: dict[str, Any] | None = None


def roles(anonymous: Any, admin: Any, supervisor: Any, enumerator: Any, partner: Any) -> dict:
    return dict(zip(ROLES, (anonymous, admin, supervisor, enumerator, partner), strict=True))


def unscoped(*outcomes: Any) -> Rule:
    return Rule(roles(*outcomes))


def scoped(*outcomes: Any, other: dict[str, Any] | None = None) -> Rule:
    """A URL naming a district's record: who may open A's gets 403 for B's, except
    administrators (every district); `other` overrides."""
    own = roles(*outcomes)
    derived = {
        role: (outcome if role in (ANON, ADMIN) or outcome != OK else 403)
        for role, outcome in own.items()
    }
    return Rule(own, {**derived, **(other or {})})


def same_both(*outcomes: Any) -> Rule:
    """The URL names a district's record, and the district does not change the answer."""
    own = roles(*outcomes)
    return Rule(own, dict(own))


PAGE_ADMIN = unscoped(LOGIN, OK, 403, 403, 403)
PAGE_ANY = unscoped(LOGIN, OK, OK, OK, OK)
PAGE_REVIEW = unscoped(LOGIN, OK, OK, 403, 403)
API_ADMIN = unscoped(401, OK, 403, 403, 403)
API_ANY = unscoped(401, OK, OK, OK, OK)
API_REVIEW = unscoped(401, OK, OK, 403, 403)
# The sync API takes device tokens only: an API token is refused whoever holds it; the
# enumerator's own device is served, another's is not found.
SYNC_DEVICE = Rule(roles(401, 403, 403, OK, 403), roles(401, 403, 403, 404, 403))
OPENROSA_FORM = scoped(401, OK, OK, OK, 403)

RULES: dict[tuple[str, str], Rule] = {
    # accounts pages
    ("accounts.audit_log", "GET"): PAGE_ADMIN,
    ("accounts.districts", "GET"): PAGE_ANY,
    ("accounts.districts", "POST"): PAGE_ADMIN,
    ("accounts.login", "GET"): unscoped(OK, OK, OK, OK, OK),
    # Empty credentials sign nobody in, whoever is already signed in.
    ("accounts.login", "POST"): unscoped(401, 401, 401, 401, 401),
    ("accounts.logout", "POST"): unscoped(LOGIN, LOGIN, LOGIN, LOGIN, LOGIN),
    ("accounts.token_revoke", "POST"): PAGE_ADMIN,
    ("accounts.user_edit", "GET"): PAGE_ADMIN,
    ("accounts.user_edit", "POST"): PAGE_ADMIN,
    ("accounts.user_new", "GET"): PAGE_ADMIN,
    ("accounts.user_new", "POST"): PAGE_ADMIN,
    ("accounts.user_token_new", "POST"): PAGE_ADMIN,
    ("accounts.user_sign_out", "POST"): PAGE_ADMIN,
    ("accounts.users", "GET"): PAGE_ADMIN,
    # accounts API
    ("accounts_api.Audit", "GET"): API_ADMIN,
    ("accounts_api.AuthToken", "POST"): unscoped(OK, OK, OK, OK, OK),
    ("accounts_api.AuthToken", "DELETE"): API_ANY,
    ("accounts_api.Districts", "GET"): API_ANY,
    ("accounts_api.TokenItem", "DELETE"): API_ADMIN,
    ("accounts_api.Tokens", "GET"): API_ANY,
    ("accounts_api.Tokens", "POST"): API_ADMIN,
    ("accounts_api.UserItem", "GET"): API_ADMIN,
    ("accounts_api.UserItem", "PATCH"): API_ADMIN,
    ("accounts_api.Users", "GET"): API_ADMIN,
    ("accounts_api.Users", "POST"): API_ADMIN,
    # documentation: public, no personal data
    ("api-docs.openapi_json", "GET"): unscoped(OK, OK, OK, OK, OK),
    ("api_docs", "GET"): unscoped(OK, OK, OK, OK, OK),
    ("static", "GET"): unscoped(OK, OK, OK, OK, OK),
    # questionnaires
    ("catalog.collect_qr", "POST"): PAGE_ADMIN,
    ("catalog.form_detail", "GET"): scoped(LOGIN, OK, OK, OK, 403),
    ("catalog.form_districts", "POST"): same_both(LOGIN, OK, 403, 403, 403),
    ("catalog.forms", "GET"): unscoped(LOGIN, OK, OK, OK, 403),
    ("catalog.keys", "GET"): PAGE_ADMIN,
    ("catalog.keys_rotate", "POST"): PAGE_ADMIN,
    ("catalog.upload", "GET"): PAGE_ADMIN,
    ("catalog.upload", "POST"): PAGE_ADMIN,
    ("catalog.version_action", "POST"): same_both(LOGIN, OK, 403, 403, 403),
    ("catalog.version_preview", "GET"): scoped(LOGIN, OK, OK, OK, 403),
    ("catalog.version_source", "GET"): same_both(LOGIN, OK, 403, 403, 403),
    ("forms_api.FormDistricts", "PUT"): same_both(401, OK, 403, 403, 403),
    ("forms_api.FormItem", "GET"): scoped(401, OK, OK, OK, 403),
    ("forms_api.FormRegistryMode", "PUT"): same_both(401, OK, 403, 403, 403),
    ("forms_api.Forms", "GET"): unscoped(401, OK, OK, OK, 403),
    ("forms_api.Forms", "POST"): API_ADMIN,
    ("forms_api.KeyRotate", "POST"): API_ADMIN,
    ("forms_api.Keys", "GET"): API_ADMIN,
    ("forms_api.VersionAttachments", "POST"): same_both(401, OK, 403, 403, 403),
    ("forms_api.VersionClose", "POST"): same_both(401, OK, 403, 403, 403),
    ("forms_api.VersionDefinition", "GET"): scoped(401, OK, OK, OK, 403),
    ("forms_api.VersionPublish", "POST"): same_both(401, OK, 403, 403, 403),
    # devices (OpenRosa, HTTP Basic)
    ("openrosa_forms.form_list", "GET"): unscoped(401, OK, 403, OK, 403),
    ("openrosa_forms.form_xml", "GET"): OPENROSA_FORM,
    ("openrosa_forms.form_manifest", "GET"): OPENROSA_FORM,
    # The household form is in both districts; its villages.csv is served to who may read
    # the form. Entity lists are answered by the registry (test_exports checks scoping).
    ("openrosa_forms.form_media", "GET"): unscoped(401, OK, OK, OK, 403),
    ("openrosa_forms.form_integrity", "GET"): unscoped(401, 404, 404, 404, 403),
    ("openrosa_submissions.submission_head", "GET"): unscoped(401, OK, OK, OK, OK),
    ("openrosa_submissions.submission_post", "POST"): scoped(
        401, OK, 403, OK, 403, other={ENUM: 403}
    ),
    # home and processing
    ("home.index", "GET"): PAGE_ANY,
    ("intake.failures", "GET"): PAGE_ADMIN,
    ("intake.reprocess", "POST"): PAGE_ADMIN,
    ("submissions_api.Reprocess", "POST"): API_ADMIN,
    ("submissions_api.Submissions", "GET"): API_REVIEW,
    ("submissions_api.SubmissionItem", "GET"): scoped(401, OK, OK, 403, 403),
    ("submissions_api.SubmissionRaw", "GET"): scoped(401, OK, OK, 403, 403),
    ("submissions_api.SubmissionAttachmentItem", "GET"): scoped(401, OK, OK, 403, 403),
    # registry pages and API
    ("registry.households", "GET"): PAGE_ANY,
    ("registry.entity", "GET"): scoped(LOGIN, OK, OK, OK, OK),
    ("registry.candidates", "GET"): PAGE_REVIEW,
    ("registry.candidate", "GET"): scoped(LOGIN, OK, OK, 403, 403),
    ("registry.decide", "POST"): scoped(LOGIN, OK, OK, 403, 403),
    ("registry.undo_merge", "POST"): scoped(LOGIN, OK, OK, 403, 403),
    ("registry.conflicts", "GET"): PAGE_REVIEW,
    ("registry.conflict", "GET"): scoped(LOGIN, OK, OK, 403, 403),
    ("registry.conflict", "POST"): scoped(LOGIN, OK, OK, 403, 403),
    ("registry_api.Entities", "GET"): API_ANY,
    ("registry_api.EntityItem", "GET"): scoped(401, OK, OK, OK, OK),
    ("registry_api.Changes", "GET"): API_ANY,
    ("registry_api.Candidates", "GET"): API_REVIEW,
    ("registry_api.CandidateDecision", "POST"): scoped(401, OK, OK, 403, 403),
    ("registry_api.MergeUndo", "POST"): scoped(401, OK, OK, 403, 403),
    ("registry_api.Conflicts", "GET"): API_REVIEW,
    ("registry_api.ConflictResolve", "POST"): scoped(401, OK, OK, 403, 403),
    # review pages and API
    ("review.dashboard", "GET"): PAGE_REVIEW,
    ("review.queue", "GET"): PAGE_REVIEW,
    ("review.bulk_approve", "GET"): PAGE_REVIEW,
    ("review.bulk_approve", "POST"): PAGE_REVIEW,
    ("review.submission", "GET"): scoped(LOGIN, OK, OK, 403, 403),
    ("review.submission_file", "GET"): scoped(LOGIN, OK, OK, 403, 403),
    ("review.decide", "POST"): scoped(LOGIN, OK, OK, 403, 403),
    ("review.comment", "POST"): scoped(LOGIN, OK, OK, 403, 403),
    ("review.edit", "GET"): scoped(LOGIN, OK, OK, 403, 403),
    ("review.edit", "POST"): scoped(LOGIN, OK, OK, 403, 403),
    ("review_api.Queue", "GET"): API_REVIEW,
    ("review_api.DashboardItem", "GET"): API_REVIEW,
    ("review_api.BulkApprove", "POST"): API_REVIEW,
    ("review_api.Review", "GET"): scoped(401, OK, OK, 403, 403),
    ("review_api.ReviewDecision", "POST"): scoped(401, OK, OK, 403, 403),
    ("review_api.Comments", "GET"): scoped(401, OK, OK, 403, 403),
    ("review_api.Comments", "POST"): scoped(401, OK, OK, 403, 403),
    ("review_api.Edits", "GET"): scoped(401, OK, OK, 403, 403),
    ("review_api.Edits", "POST"): scoped(401, OK, OK, 403, 403),
    # batch sync (device tokens)
    ("sync_api.info", "GET"): unscoped(401, 403, 403, OK, 403),
    # Enrolling a device id that is another user's tablet is a conflict, not a takeover.
    ("sync_api.enroll", "PUT"): Rule(roles(401, 403, 403, OK, 403), roles(401, 403, 403, 409, 403)),
    ("sync_api.device_record", "GET"): SYNC_DEVICE,
    ("sync_api.forms", "GET"): SYNC_DEVICE,
    ("sync_api.entities", "GET"): SYNC_DEVICE,
    ("sync_api.status", "POST"): SYNC_DEVICE,
    ("sync_api.open_session", "POST"): SYNC_DEVICE,
    ("sync_api.session_state", "GET"): SYNC_DEVICE,
    ("sync_api.upload_frames", "POST"): SYNC_DEVICE,
    ("sync_api.upload_item", "PUT"): SYNC_DEVICE,
    ("sync_api.close_session", "POST"): SYNC_DEVICE,
}


# ------------------------------------------------------------------ the routes


def _routes() -> list[tuple[str, str]]:
    """(endpoint, method) of every route of a freshly assembled application."""
    with assembled_app() as application:
        return sorted(
            {
                (rule.endpoint, method)
                for rule in application.url_map.iter_rules()
                for method in rule.methods or ()
                if method not in ("HEAD", "OPTIONS")
            }
        )


ROUTES = _routes()


def _channel(endpoint: str) -> str:
    if endpoint.startswith("openrosa_"):
        return "openrosa"
    if endpoint.startswith("sync_api."):
        return "sync"
    if "_api." in endpoint or endpoint.startswith("api-docs."):
        return "api"
    return "page"


# The URL parameters of each endpoint, from the records of one district.
def _url_values(world: World, endpoint: str, district: str) -> dict[str, Any]:
    records = world.records(district)
    household_form = {"form_id": "household_registration", "version": "2026112601"}
    form = {"form_id": records.form_id, "version": records.form_version}
    values: dict[str, dict[str, Any]] = {
        "static": {"filename": "style.css"},
        "catalog.form_detail": {"form_id": records.form_id},
        "catalog.form_districts": {"form_id": records.form_id},
        "catalog.version_action": {**form, "action": "publish"},
        "catalog.version_preview": form,
        "catalog.version_source": form,
        "forms_api.FormDistricts": {"form_id": records.form_id},
        "forms_api.FormItem": {"form_id": records.form_id},
        "forms_api.FormRegistryMode": {"form_id": records.form_id},
        "forms_api.VersionAttachments": form,
        "forms_api.VersionClose": form,
        "forms_api.VersionDefinition": form,
        "forms_api.VersionPublish": form,
        "openrosa_forms.form_xml": form,
        "openrosa_forms.form_manifest": form,
        "openrosa_forms.form_media": {**household_form, "filename": "villages.csv"},
        "openrosa_forms.form_integrity": {**household_form, "filename": "households.csv"},
        "registry.entity": {"entity_id": records.household_id},
        "registry_api.EntityItem": {"entity_id": records.household_id},
        "registry.candidate": {"candidate_id": records.candidate_id},
        "registry.decide": {"candidate_id": records.candidate_id},
        "registry_api.CandidateDecision": {"candidate_id": records.candidate_id},
        "registry.undo_merge": {"merge_id": records.merge_id},
        "registry_api.MergeUndo": {"merge_id": records.merge_id},
        "registry.conflict": {"conflict_id": records.conflict_id},
        "registry_api.ConflictResolve": {"conflict_id": records.conflict_id},
        "review.submission_file": {"submission_id": records.submission_id, "name": PHOTO_NAME},
        "submissions_api.SubmissionAttachmentItem": {
            "submission_id": records.submission_id,
            "name": PHOTO_NAME,
        },
        "sync_api.session_state": {"session_id": records.sync_session_id},
        "sync_api.upload_frames": {"session_id": records.sync_session_id},
        "sync_api.upload_item": {"session_id": records.sync_session_id, "index": 0},
        "sync_api.close_session": {"session_id": records.sync_session_id},
    }
    if endpoint in values:
        return values[endpoint]
    if endpoint.startswith(("review.", "review_api.", "submissions_api.")):
        return {"submission_id": records.submission_id}
    if endpoint.startswith("sync_api."):
        return {"device_id": records.device_id}
    if endpoint in (
        "accounts.user_edit",
        "accounts.user_token_new",
        "accounts.user_sign_out",
        "catalog.collect_qr",
    ):
        return {"user_id": world.other_users["enumerator"].id}
    if endpoint == "accounts_api.UserItem":
        return {"user_id": world.other_users["enumerator"].id}
    if endpoint in ("accounts.token_revoke", "accounts_api.TokenItem"):
        return {"token_id": world.other_token_id}
    return {}


def _visit_xml(form_id: str) -> bytes:
    return (
        f'<data id="{form_id}" version="1"><name>Nimco</name>'
        f"<meta><instanceID>uuid:{uuid.uuid4()}</instanceID></meta></data>"
    ).encode()


# What each call sends: valid enough that the answer is about who is asking.
def _request_body(world: World, endpoint: str, method: str, district: str) -> dict[str, Any]:
    records = world.records(district)
    json_bodies: dict[tuple[str, str], Any] = {
        ("accounts_api.AuthToken", "POST"): {},
        ("accounts_api.Tokens", "POST"): {
            "user_id": str(world.other_users["enumerator"].id),
            "kind": "device",
        },
        ("accounts_api.UserItem", "PATCH"): {"display_name": "Renamed"},
        ("accounts_api.Users", "POST"): {
            "username": "matrix.newcomer",
            "display_name": "Newcomer",
            "password": "a long enough passphrase",
            "role": "enumerator",
        },
        ("forms_api.FormDistricts", "PUT"): {"district_ids": []},
        ("forms_api.FormRegistryMode", "PUT"): {"registry_mode": "approval"},
        ("registry_api.CandidateDecision", "POST"): {"decision": "separate"},
        ("registry_api.ConflictResolve", "POST"): {"choices": {"phone": "server"}},
        ("review_api.BulkApprove", "POST"): {},
        ("review_api.ReviewDecision", "POST"): {"state": "has_issues", "expected_version": 0},
        ("review_api.Comments", "POST"): {"body": "Please check the phone number."},
        ("review_api.Edits", "POST"): {"expected_version": 0, "changes": {}},
        ("submissions_api.Reprocess", "POST"): {"failed": True},
        ("sync_api.enroll", "PUT"): {"name": "tablet"},
        ("sync_api.open_session", "POST"): {"items": []},
        ("sync_api.status", "POST"): {"instance_ids": [records.instance_id]},
    }
    if (endpoint, method) in json_bodies:
        return {"json": json_bodies[(endpoint, method)]}
    if endpoint in ("forms_api.Forms", "forms_api.VersionAttachments") and method == "POST":
        return {
            "data": {"file": (io.BytesIO(b"not a spreadsheet"), "form.xlsx")},
            "content_type": "multipart/form-data",
        }
    if endpoint == "openrosa_submissions.submission_post":
        body, content_type = encode_multipart(_visit_xml(records.form_id))
        return {"data": body, "content_type": content_type}
    if endpoint == "sync_api.upload_frames":
        return {"data": b"", "content_type": "application/vnd.diiwaan.frames"}
    if endpoint == "registry.decide":
        return {"data": {"decision": "separate"}}
    if endpoint == "registry.undo_merge":
        return {"data": {"next": "/registry"}}
    if endpoint == "review.decide":
        return {"data": {"state": "has_issues"}}
    if endpoint == "review.comment":
        return {"data": {"body": "Please check the phone number."}}
    return {}


# ------------------------------------------------------------------ fixtures


@dataclass
class Caller:
    """How each role presents itself on each channel."""

    cookies: dict[str, tuple[str, str]]  # role → (session cookie, CSRF token)
    world: World


@pytest.fixture(scope="module")
def world(app: Flask) -> Iterator[World]:
    """The records, built once and rolled back when the module ends."""
    assert db.engine is not None
    connection = db.engine.connect()
    outer = connection.begin()
    db.bind_to_connection(connection)
    factories.current_session = db.new_session()
    try:
        yield build_world(app, factories.current_session)
    finally:
        factories.current_session.close()
        factories.current_session = None
        db.bind_to_connection(None)
        outer.rollback()
        connection.close()


@pytest.fixture(autouse=True)
def _transaction(world: World) -> Iterator[None]:
    """Replaces the harness's per-test transaction: the module's world stays bound."""
    yield


@pytest.fixture(scope="module")
def caller(app: Flask, world: World) -> Caller:
    cookies = {role: signed_in_cookie(app, user) for role, user in world.users.items()}
    anonymous = app.test_client()
    page = anonymous.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    cookie = anonymous.get_cookie("diiwaan_session")
    assert token and cookie
    cookies[ANON] = (cookie.value, token.group(1))
    return Caller(cookies, world)


def _call(
    app: Flask, caller: Caller, endpoint: str, method: str, role: str, district: str
) -> tuple[Any, str]:
    world = caller.world
    with app.test_request_context():
        url = url_for(endpoint, **_url_values(world, endpoint, district))
    channel = _channel(endpoint)
    client = app.test_client()
    headers: dict[str, str] = {}
    request = _request_body(world, endpoint, method, district)
    if channel == "page":
        cookie, csrf = caller.cookies[role]
        client.set_cookie("diiwaan_session", cookie)
        if method != "GET":
            data = request.get("data") or {}
            request["data"] = {"csrf_token": csrf, **data}
    elif role != ANON:
        if channel == "openrosa":
            headers = {"X-OpenRosa-Version": "1.0", **basic_auth(world.users[role].username)}
        elif channel == "sync" and role == ENUM:
            headers = bearer(world.device_token)
        else:
            headers = bearer(world.api_tokens[role])
    connection = db._bound_connection
    assert connection is not None
    savepoint = connection.begin_nested()
    try:
        response = client.open(url, method=method, headers=headers, **request)
        body = response.get_data()
        response.close()
    finally:
        savepoint.rollback()
    if response.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    # What the caller sent may be echoed back ("form 'x' is not assigned to you").
    sent = url + repr(request.get("json", "")) + repr(request.get("data", ""))[:100_000]
    return response, sent.replace("\n", " ") + "\n" + body.decode("utf-8", "replace")


def _outcome(response: Any) -> Any:
    status = response.status_code
    if status in (301, 302, 303) and response.headers.get("Location", "").startswith("/login"):
        return LOGIN
    if status in (401, 403, 404, 405, 409) or status >= 500:
        return status
    return OK


# -------------------------------------------------------------------- tests


def test_every_route_has_a_rule_and_every_rule_a_route():
    assert set(ROUTES) - set(RULES) == set(), "routes without a rule in RULES"
    assert set(RULES) - set(ROUTES) == set(), "rules for routes that no longer exist"


@pytest.mark.parametrize(("endpoint", "method"), ROUTES, ids=[f"{e} {m}" for e, m in ROUTES])
def test_each_role_gets_what_the_rule_says_and_nothing_of_another_district(
    app: Flask, caller: Caller, endpoint: str, method: str
) -> None:
    rule = RULES.get((endpoint, method))
    assert rule is not None, f"{endpoint} {method} has no rule in RULES: add one"
    cases = [("own", rule.own)] + ([("other", rule.other)] if rule.other else [])
    markers = caller.world.leak_markers()
    problems = []
    for district, expected_by_role in cases:
        for role in ROLES:
            response, text = _call(app, caller, endpoint, method, role, district)
            got = _outcome(response)
            expected = expected_by_role[role]
            if got != expected:
                problems.append(
                    f"{role} on {district} district: expected {expected}, got "
                    f"{response.status_code} {text[:300]!r}"
                )
            if role not in (ANON, ADMIN):
                sent, _, body = text.partition("\n")
                leaked = [m for m in markers if m in body and m not in sent]
                if leaked:
                    problems.append(f"{role} on {district} district saw {leaked}")
    assert not problems, f"{endpoint} {method}:\n" + "\n".join(problems)


def test_list_answers_show_district_a_to_its_people_and_never_district_b(
    app: Flask, caller: Caller
) -> None:
    """The leak search above is only meaningful if the lists do show records: the
    supervisor's lists name district A's household and submission."""
    world = caller.world
    lists: list[tuple[str, str, Callable[[World], str]]] = [
        ("registry_api.Entities", SUP, lambda w: str(w.own.household_id)),
        ("registry_api.Changes", PARTNER, lambda w: str(w.own.household_id)),
        ("registry.households", SUP, lambda w: "Ayaanle"),
        ("submissions_api.Submissions", SUP, lambda w: w.own.instance_id),
        ("review_api.Queue", SUP, lambda w: w.own.instance_id),
        ("review.queue", SUP, lambda w: str(w.own.submission_id)),
        ("registry_api.Candidates", SUP, lambda w: str(w.own.household_id)),
        ("registry_api.Conflicts", SUP, lambda w: str(w.own.household_id)),
    ]
    for endpoint, role, expected in lists:
        response, text = _call(app, caller, endpoint, "GET", role, "own")
        assert response.status_code == 200, (endpoint, text[:300])
        assert expected(world) in text, f"{endpoint} does not show district A's record"
        assert not [m for m in world.leak_markers() if m in text], endpoint
