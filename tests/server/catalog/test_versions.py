"""Versions of a form: the version string is its identity, drafts wait, publishing a new
version leaves older ones open until they are closed, and downloads give back the bytes."""

from __future__ import annotations

import io

import pytest

from server.catalog import service
from server.errors import Conflict
from tests.factories import AdminFactory, DistrictFactory, UserFactory
from tests.server.catalog.helpers import (
    HOUSEHOLD_CHANGED_XLSX,
    HOUSEHOLD_FORM_ID,
    HOUSEHOLD_FORM_VERSION,
    HOUSEHOLD_XLSX,
    MINIMAL_V2_XLSX,
    MINIMAL_XLSX,
    VILLAGES_CSV,
    catalog_counts,
    md5,
)
from tests.support.xlsforms import (
    xlsx_from_sheets,
)


def post_form(client, headers, data: bytes, **fields):
    return client.post(
        "/api/v1/forms",
        data={"file": (io.BytesIO(data), "household_registration.xlsx"), **fields},
        headers=headers,
        content_type="multipart/form-data",
    )


def test_same_version_with_the_same_bytes_answers_200_and_stores_nothing_new(
    client, session, bearer, upload
):
    upload(MINIMAL_XLSX)
    before = catalog_counts(session)

    response = post_form(client, bearer(AdminFactory()), MINIMAL_XLSX)

    assert response.status_code == 200
    body = response.get_json()
    assert body["created"] is False
    assert body["version"]["version"] == "1"
    assert body["version"]["state"] == "published"
    assert catalog_counts(session) == before


def test_same_version_with_different_content_is_refused_with_409_and_nothing_stored(
    client, session, bearer, upload
):
    upload(HOUSEHOLD_XLSX, attachments=[("villages.csv", VILLAGES_CSV)])
    before = catalog_counts(session)

    response = post_form(client, bearer(AdminFactory()), HOUSEHOLD_CHANGED_XLSX)

    assert response.status_code == 409
    error = response.get_json()["error"]
    assert HOUSEHOLD_FORM_VERSION in error["message"]
    assert "change the version" in error["message"]
    assert catalog_counts(session) == before
    session.expire_all()
    stored = service.get_version(session, HOUSEHOLD_FORM_ID, HOUSEHOLD_FORM_VERSION)
    assert stored.title == "Household registration"


def test_a_resaved_workbook_with_the_same_questions_is_the_same_version(upload):
    first = upload(MINIMAL_XLSX, publish=False)
    # Different bytes (an extra sheet pyxform ignores), same form.
    resaved = xlsx_from_sheets(
        {
            "survey": [["type", "name", "label"], ["text", "name", "What is your name?"]],
            "settings": [["form_id", "version", "form_title"], ["minimal", "1", "Minimal"]],
            "notes": [["Reviewed by the district office, 2026-11-20"]],
        }
    )
    assert resaved != MINIMAL_XLSX

    again = upload(resaved, publish=False)

    assert again.created is False
    assert again.version.id == first.version.id


def test_same_bytes_after_a_key_rotation_are_still_the_same_version(upload, session, kek):
    first = upload(MINIMAL_XLSX)
    service.rotate_key(session, None, kek)

    again = upload(MINIMAL_XLSX)

    assert again.created is False
    assert again.version.id == first.version.id
    assert len(first.form.versions) == 1


def test_uploading_the_same_draft_again_with_publish_publishes_it(upload):
    draft = upload(MINIMAL_XLSX, publish=False)
    assert draft.version.state == "draft"

    again = upload(MINIMAL_XLSX, publish=True)

    assert again.created is False
    assert again.version.id == draft.version.id
    assert again.version.state == "published"


def test_publishing_a_new_version_leaves_the_older_one_open_until_it_is_closed(upload, session):
    district = DistrictFactory()
    enumerator = UserFactory(districts=[district])
    first = upload(MINIMAL_XLSX, district_ids=[district.id]).version
    second = upload(MINIMAL_V2_XLSX).version

    assert (first.state, second.state) == ("published", "published")
    newest = service.fillable_versions(session, enumerator)
    assert [v.version for v in newest] == ["2"]
    every = service.fillable_versions(session, enumerator, all_versions=True)
    assert [v.version for v in every] == ["1", "2"]

    service.close_version(session, None, first)

    assert first.state == "closed" and first.closed_at is not None
    every = service.fillable_versions(session, enumerator, all_versions=True)
    assert [v.version for v in every] == ["2"]


def test_a_draft_is_not_offered_to_devices_until_published(upload, session):
    district = DistrictFactory()
    enumerator = UserFactory(districts=[district])
    draft = upload(MINIMAL_XLSX, publish=False, district_ids=[district.id]).version

    assert service.fillable_versions(session, enumerator) == []

    service.publish_version(session, None, draft)

    assert service.fillable_versions(session, enumerator) == [draft]
    assert draft.published_at is not None


def test_publishing_a_draft_whose_files_are_missing_is_refused_with_409(
    client, bearer, upload, session
):
    upload(HOUSEHOLD_XLSX, publish=False)
    headers = bearer(AdminFactory())
    url = f"/api/v1/forms/{HOUSEHOLD_FORM_ID}/versions/{HOUSEHOLD_FORM_VERSION}"

    refused = client.post(f"{url}/publish", headers=headers)

    assert refused.status_code == 409
    assert refused.get_json()["error"]["details"] == {"missing_attachments": ["villages.csv"]}

    added = client.post(
        f"{url}/attachments",
        data={"file": (io.BytesIO(VILLAGES_CSV), "villages.csv")},
        headers=headers,
        content_type="multipart/form-data",
    )
    assert added.status_code == 201
    assert added.get_json()["missing_attachments"] == []
    assert added.get_json()["attachments"][0]["md5"] == md5(VILLAGES_CSV)

    published = client.post(f"{url}/publish", headers=headers)
    assert published.status_code == 200
    assert published.get_json()["state"] == "published"


def test_a_closed_version_cannot_be_published_again_nor_given_files(upload, session, store):
    version = upload(MINIMAL_XLSX).version
    service.close_version(session, None, version)

    with pytest.raises(Conflict):
        service.publish_version(session, None, version)
    with pytest.raises(Conflict):
        service.add_attachment(
            session, None, version, filename="logo.png", data=b"png", store=store
        )
    assert version.state == "closed"
    assert version.attachments == []


def test_closing_through_the_api_answers_the_closed_version(client, bearer, upload):
    upload(MINIMAL_XLSX)

    response = client.post("/api/v1/forms/minimal/versions/1/close", headers=bearer(AdminFactory()))

    assert response.status_code == 200
    body = response.get_json()
    assert body["state"] == "closed"
    assert body["closed_at"] is not None


def test_administrator_downloads_the_uploaded_xlsx_and_the_xform_unchanged(browser, upload):
    version = upload(MINIMAL_XLSX, "minimal.xlsx", publish=False).version
    browser.login(AdminFactory().username)

    source = browser.get("/forms/minimal/1/source")
    xform = browser.get("/forms/minimal/1/form.xml")

    assert source.status_code == 200
    assert source.data == MINIMAL_XLSX
    assert "minimal.xlsx" in source.headers["Content-Disposition"]
    assert xform.status_code == 200
    assert xform.data == version.xform_xml
    assert md5(xform.data) == version.xform_md5


def test_unknown_form_or_version_answers_404(client, bearer, upload):
    upload(MINIMAL_XLSX)
    headers = bearer(AdminFactory())

    assert client.get("/api/v1/forms/no_such_form", headers=headers).status_code == 404
    missing = client.post("/api/v1/forms/minimal/versions/9/publish", headers=headers)
    assert missing.status_code == 404
    assert "9" in missing.get_json()["error"]["message"]
