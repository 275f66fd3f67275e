"""Questionnaire pages: the forms list, uploading with every problem shown by sheet, row
and column, version history, the preview, publish/close, assignment, who may do what,
and the QR code that provisions ODK Collect."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import zlib

import qrcode
import qrcode.image.svg

from server.catalog import service
from tests.factories import AdminFactory, DistrictFactory, SupervisorFactory, UserFactory
from tests.server.catalog.helpers import (
    HOUSEHOLD_FORM_ID,
    HOUSEHOLD_FORM_VERSION,
    HOUSEHOLD_XLSX,
    MINIMAL_V2_XLSX,
    MINIMAL_XLSX,
    OTHER_XLSX,
    VILLAGES_CSV,
    XFORMS_LIST,
    catalog_counts,
    ns,
    parse_xml,
)
from tests.support.xlsforms import SO, formula, xlsx_from_sheets

TWO_FORMULAS_XLSX = xlsx_from_sheets(
    {
        "survey": [
            ["type", "name", "label", "hint"],
            ["text", "full_name", "Name", formula('"Write the " & "full name"')],
            ["integer", "age", "Age", None],
            ["integer", "children", formula("1+1"), None],
        ],
        "settings": [["form_id", "version"], ["formulas", "1"]],
    }
)


def page_text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def problem_rows(page: str) -> set[tuple[str, str, str]]:
    """(sheet, row, column) of each row in the upload page's problem table."""
    return set(re.findall(r"<tr><td>(\w*)</td><td>(\d*)</td><td>([^<]*)</td><td>", page))


# ----------------------------------------------------------------------------- uploading


def test_upload_page_lists_every_problem_by_sheet_row_and_column_and_stores_nothing(
    browser, session
):
    browser.login(AdminFactory().username)
    before = catalog_counts(session)

    response = browser.post(
        "/forms/upload",
        {"file": (io.BytesIO(TWO_FORMULAS_XLSX), "formulas.xlsx"), "publish": "on"},
        content_type="multipart/form-data",
    )

    assert response.status_code == 400
    page = page_text(response)
    assert "the XLSForm has 2 problem(s); nothing was stored" in page
    assert problem_rows(page) == {("survey", "2", "hint"), ("survey", "4", "label")}
    assert "Cell survey!D2 holds a formula" in page
    assert catalog_counts(session) == before


def test_uploading_in_the_web_form_with_its_files_publishes_and_assigns_the_form(
    browser, session, store
):
    district = DistrictFactory()
    browser.login(AdminFactory().username)

    response = browser.post(
        "/forms/upload",
        {
            "file": (io.BytesIO(HOUSEHOLD_XLSX), "household_registration.xlsx"),
            "media": [(io.BytesIO(VILLAGES_CSV), "villages.csv")],
            "publish": "on",
            "district_ids": [str(district.id)],
        },
        content_type="multipart/form-data",
    )

    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/forms/{HOUSEHOLD_FORM_ID}")
    session.expire_all()
    version = service.get_version(session, HOUSEHOLD_FORM_ID, HOUSEHOLD_FORM_VERSION)
    assert version.state == "published"
    assert version.form.district_ids == {district.id}
    [attachment] = version.attachments
    assert store.read(attachment.sha256) == VILLAGES_CSV
    detail = page_text(browser.get(response.headers["Location"]))
    assert f"uploaded version {HOUSEHOLD_FORM_VERSION} (published)" in detail


def test_a_draft_takes_its_missing_file_on_the_form_page_and_is_then_published(browser, session):
    browser.login(AdminFactory().username)
    browser.post(
        "/forms/upload",
        {"file": (io.BytesIO(HOUSEHOLD_XLSX), "household_registration.xlsx")},
        content_type="multipart/form-data",
    )
    base = f"/forms/{HOUSEHOLD_FORM_ID}/{HOUSEHOLD_FORM_VERSION}"

    draft_page = page_text(browser.get(f"/forms/{HOUSEHOLD_FORM_ID}"))
    early = browser.post(f"{base}/publish")
    added = browser.post(
        f"{base}/attachments",
        {"file": (io.BytesIO(VILLAGES_CSV), "villages.csv")},
        content_type="multipart/form-data",
    )
    published = browser.post(f"{base}/publish")

    assert "Still needed before publishing: villages.csv" in draft_page
    assert f"{base}/publish" in draft_page
    assert early.status_code == 409
    assert (added.status_code, published.status_code) == (302, 302)
    session.expire_all()
    version = service.get_version(session, HOUSEHOLD_FORM_ID, HOUSEHOLD_FORM_VERSION)
    assert version.state == "published"
    assert [a.filename for a in version.attachments] == ["villages.csv"]


# --------------------------------------------------------------- list, history, actions


def test_forms_list_shows_administrators_every_form_and_supervisors_their_districts(
    browser, upload
):
    north, south = DistrictFactory(), DistrictFactory()
    upload(MINIMAL_XLSX, district_ids=[north.id])
    upload(OTHER_XLSX, district_ids=[south.id])

    browser.login(AdminFactory().username)
    as_admin = page_text(browser.get("/forms"))
    browser.login(SupervisorFactory(districts=[north]).username)
    as_supervisor = page_text(browser.get("/forms"))

    assert "Minimal" in as_admin and "Other form" in as_admin
    assert "Upload an XLSForm" in as_admin
    assert "Minimal" in as_supervisor and north.name in as_supervisor
    assert "Other form" not in as_supervisor
    assert "Upload an XLSForm" not in as_supervisor


def test_form_page_shows_the_version_history_and_its_buttons_publish_and_close(
    browser, upload, session
):
    upload(MINIMAL_XLSX)
    upload(MINIMAL_V2_XLSX, publish=False)
    browser.login(AdminFactory().username)

    history = page_text(browser.get("/forms/minimal"))
    rows = re.findall(r"<tr>\s*<td>(\d+)</td>\s*<td><span class=\"state state-(\w+)\">", history)
    assert rows == [("2", "draft"), ("1", "published")]
    assert "managed" in history

    published = browser.post("/forms/minimal/2/publish")
    closed = browser.post("/forms/minimal/1/close")
    unknown = browser.post("/forms/minimal/1/explode")

    assert (published.status_code, closed.status_code) == (302, 302)
    assert unknown.status_code == 400
    session.expire_all()
    assert service.get_version(session, "minimal", "2").state == "published"
    assert service.get_version(session, "minimal", "1").state == "closed"
    history = page_text(browser.get("/forms/minimal"))
    rows = re.findall(r"<tr>\s*<td>(\d+)</td>\s*<td><span class=\"state state-(\w+)\">", history)
    assert rows == [("2", "published"), ("1", "closed")]


def test_assignment_form_saves_districts_and_registry_mode(browser, upload, session):
    north, south = DistrictFactory(), DistrictFactory()
    upload(MINIMAL_XLSX, district_ids=[north.id])
    browser.login(AdminFactory().username)

    response = browser.post(
        "/forms/minimal/districts",
        {"district_ids": [str(south.id)], "registry_mode": "receipt"},
    )

    assert response.status_code == 302
    session.expire_all()
    form = service.get_form(session, "minimal")
    assert form.district_ids == {south.id}
    assert form.registry_mode == "receipt"


def test_preview_shows_labels_types_choices_and_skip_logic_in_each_language(browser, upload):
    upload(HOUSEHOLD_XLSX, publish=False)
    browser.login(AdminFactory().username)
    url = f"/forms/{HOUSEHOLD_FORM_ID}/{HOUSEHOLD_FORM_VERSION}/preview"

    english = page_text(browser.get(url))
    somali = page_text(browser.get(f"{url}?lang={SO}"))

    assert "How many people live in this household?" in english
    assert "select_one" in english and "select_one_from_file" in english
    assert "Baidoa" in english and "Walking or climbing steps" in english
    assert "shown when ${disability} = 'yes'" in re.sub(r"</?code>", "", english)
    assert "choices filtered by" in english and "${region}" in english
    assert "choices from file villages.csv" in re.sub(r"</?code>", "", english)
    assert "saved to households.national_id" in english
    assert "Household member" in english and "(repeat" in english
    assert "Immisa qof ayaa ku nool qoyskan?" in somali
    assert "Baydhabo" in somali


# ---------------------------------------------------------------------------- permissions


def test_supervisor_reads_the_preview_of_assigned_forms_but_may_not_upload(
    browser, client, bearer, upload, session
):
    district = DistrictFactory()
    upload(MINIMAL_XLSX, district_ids=[district.id])
    upload(OTHER_XLSX, district_ids=[DistrictFactory().id])
    supervisor = SupervisorFactory(districts=[district])
    browser.login(supervisor.username)
    before = catalog_counts(session)

    assigned = browser.get("/forms/minimal/1/preview")
    elsewhere = browser.get("/forms/other_form/1/preview")
    upload_page = browser.get("/forms/upload")
    posted = browser.post(
        "/forms/upload",
        {"file": (io.BytesIO(MINIMAL_V2_XLSX), "minimal.xlsx")},
        content_type="multipart/form-data",
    )
    api = client.post(
        "/api/v1/forms",
        data={"file": (io.BytesIO(MINIMAL_V2_XLSX), "minimal.xlsx")},
        headers=bearer(supervisor),
        content_type="multipart/form-data",
    )
    publish = browser.post("/forms/minimal/1/close")

    assert assigned.status_code == 200
    assert "What is your name?" in page_text(assigned)
    assert elsewhere.status_code == 403
    assert (upload_page.status_code, posted.status_code, api.status_code) == (403, 403, 403)
    assert publish.status_code == 403
    assert catalog_counts(session) == before
    assert service.get_version(session, "minimal", "1").state == "published"


def test_forms_pages_send_anonymous_visitors_to_sign_in(client):
    response = client.get("/forms")

    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


# ------------------------------------------------------------------- ODK Collect QR code


def test_collect_qr_code_carries_a_device_token_that_opens_the_form_list(browser, client, upload):
    district = DistrictFactory()
    enumerator = UserFactory(districts=[district])
    upload(MINIMAL_XLSX, district_ids=[district.id])
    browser.login(AdminFactory().username)

    response = browser.post(f"/users/{enumerator.id}/collect", {"name": "Tablet 7"})

    assert response.status_code == 200
    page = page_text(response)
    server_url = re.search(r'<code class="secret">([^<]+)</code>', page).group(1)
    payload = service.collect_qr_payload(service.collect_settings(server_url))
    settings = json.loads(zlib.decompress(base64.b64decode(payload)))
    assert settings["general"]["server_url"] == server_url
    assert settings["general"]["username"] == ""
    expected_svg = qrcode.make(
        payload, image_factory=qrcode.image.svg.SvgPathImage, box_size=8
    ).to_string(encoding="unicode")
    assert expected_svg in response.get_data(as_text=True)

    assert server_url.startswith("http://localhost/key/")
    token = server_url.rsplit("/key/", 1)[1]
    form_list = client.get(f"/key/{token}/formList")
    assert form_list.status_code == 200
    [xform] = parse_xml(form_list.data).findall(ns(XFORMS_LIST, "xform"))
    assert xform.findtext(ns(XFORMS_LIST, "formID")) == "minimal"


def test_only_administrators_issue_collect_codes_and_only_for_enumerators(browser):
    enumerator = UserFactory()
    supervisor = SupervisorFactory()

    browser.login(supervisor.username)
    refused = browser.post(f"/users/{enumerator.id}/collect")
    browser.login(AdminFactory().username)
    not_a_tablet_user = browser.post(f"/users/{supervisor.id}/collect")

    assert refused.status_code == 403
    assert not_a_tablet_user.status_code == 400
    assert "enumerators" in page_text(not_a_tablet_user)
