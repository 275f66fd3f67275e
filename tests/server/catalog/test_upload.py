"""Uploading XLSForms: what a converted version stores, the definition model it carries,
attachments by content hash, and bad input refused with a clear 4xx and nothing stored."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from forms.xlsform import odk_validate_available
from server.catalog import service
from server.errors import PayloadTooLarge
from tests.factories import AdminFactory, DistrictFactory
from tests.server.catalog.helpers import (
    HOUSEHOLD_FORM_ID,
    HOUSEHOLD_FORM_VERSION,
    HOUSEHOLD_XLSX,
    MEDIA_FILES,
    MEDIA_XLSX,
    MINIMAL_XLSX,
    VILLAGES_CSV,
    XFORMS,
    catalog_counts,
    md5,
    parse_xml,
    sha256,
)
from tests.support.xlsforms import EN, SO, formula, xlsx_from_sheets

SETTINGS = [["form_id", "version"], ["broken_form", "1"]]


# ------------------------------------------------------------------ a converted version


def test_household_form_is_stored_with_its_xform_md5_source_and_attachment(upload, session, store):
    result = upload(
        HOUSEHOLD_XLSX,
        "household_registration.xlsx",
        attachments=[("villages.csv", VILLAGES_CSV)],
    )

    assert result.created
    session.expire_all()
    version = service.get_version(session, HOUSEHOLD_FORM_ID, HOUSEHOLD_FORM_VERSION)
    assert version.form.form_id == HOUSEHOLD_FORM_ID
    assert version.form.title == version.title == "Household registration"
    assert version.state == "published"
    assert version.published_at is not None
    assert version.source_filename == "household_registration.xlsx"
    assert version.source_sha256 == sha256(HOUSEHOLD_XLSX)
    assert store.read(version.source_sha256) == HOUSEHOLD_XLSX
    assert version.xform_md5 == md5(version.xform_xml)

    root = parse_xml(version.xform_xml)
    instance = root.find(f".//{{{XFORMS}}}instance/{{{XFORMS}}}data")
    assert instance is not None
    assert instance.get("id") == HOUSEHOLD_FORM_ID
    assert instance.get("version") == HOUSEHOLD_FORM_VERSION

    [attachment] = version.attachments
    assert attachment.filename == "villages.csv"
    assert attachment.sha256 == sha256(VILLAGES_CSV)
    assert attachment.md5 == md5(VILLAGES_CSV)
    assert attachment.size == len(VILLAGES_CSV)
    assert store.path(attachment.sha256).name == sha256(VILLAGES_CSV)
    assert store.read(attachment.sha256) == VILLAGES_CSV


def test_definition_models_member_repeat_entity_lists_cascades_and_media(upload, session):
    upload(HOUSEHOLD_XLSX, attachments=[("villages.csv", VILLAGES_CSV)])
    session.expire_all()
    definition = service.definition_of(
        service.get_version(session, HOUSEHOLD_FORM_ID, HOUSEHOLD_FORM_VERSION)
    )

    assert definition.settings.form_id == HOUSEHOLD_FORM_ID
    assert definition.settings.version == HOUSEHOLD_FORM_VERSION
    assert definition.settings.encryption == "managed"
    # A set: PostgreSQL's JSONB does not keep the order of the labels' language keys.
    assert set(definition.languages) == {EN, SO}
    assert definition.settings.default_language == EN
    assert definition.repeat_paths() == ["/member"]

    households, members = definition.entity_declarations
    assert (households.list_name, households.repeat_path) == ("households", None)
    assert (members.list_name, members.repeat_path) == ("members", "/member")
    assert households.properties["national_id"] == "/head/national_id"
    assert households.properties["hh_size"] == "/hh_size"
    assert members.properties["full_name"] == "/member/full_name"
    assert members.properties["date_of_birth"] == "/member/date_of_birth"

    district = definition.question_at("/location/district")
    assert district is not None
    assert (district.type, district.choice_list) == ("select_one", "district")
    assert district.choice_filter is not None and "${region}" in district.choice_filter
    baidoa = definition.choice_lists["district"].choice("baidoa")
    assert baidoa is not None and baidoa.extra["region"] == "bay"
    assert baidoa.labels[SO] == "Baydhabo"

    village = definition.question_at("/location/village")
    assert village is not None
    assert (village.type, village.itemset_file) == ("select_one_from_file", "villages.csv")
    assert definition.media_files == ["villages.csv"]

    photo = definition.question_at("/location/dwelling_photo")
    assert photo is not None and photo.is_attachment and photo.type == "image"
    difficulties = definition.question_at("/member/difficulties")
    assert difficulties is not None
    assert difficulties.type == "select_multiple"
    assert difficulties.relevant is not None and "${disability}" in difficulties.relevant
    hh_size = definition.question_at("/hh_size")
    assert hh_size is not None and hh_size.required and hh_size.labels[EN].startswith("How many")


def test_every_static_media_file_is_stored_by_content_hash(upload, store):
    result = upload(MEDIA_XLSX, attachments=list(MEDIA_FILES.items()))

    assert result.version.state == "published"
    stored = {a.filename: a for a in result.version.attachments}
    assert set(stored) == set(MEDIA_FILES)
    for name, content in MEDIA_FILES.items():
        assert stored[name].sha256 == sha256(content)
        assert store.read(stored[name].sha256) == content
    assert stored["logo.png"].content_type == "image/png"


def test_an_attachment_the_form_does_not_name_is_refused(upload, session):
    before = catalog_counts(session)
    with pytest.raises(service.ValidationFailed) as refused:
        upload(MINIMAL_XLSX, attachments=[("villages.csv", VILLAGES_CSV)])
    assert "villages.csv" in refused.value.message
    assert catalog_counts(session) == before


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(app, session, store, kek):
    before = catalog_counts(session)
    with pytest.raises(PayloadTooLarge):
        service.upload_form(
            session,
            None,
            data=MINIMAL_XLSX,
            filename="minimal.xlsx",
            store=store,
            key_encryption_key=kek,
            max_bytes=len(MINIMAL_XLSX) - 1,
        )
    assert catalog_counts(session) == before


def test_the_documented_example_form_publishes_with_its_villages_csv(upload):
    examples = Path(__file__).resolve().parents[3] / "docs" / "examples"

    result = upload(
        (examples / "household_registration.xlsx").read_bytes(),
        "household_registration.xlsx",
        attachments=[("villages.csv", (examples / "villages.csv").read_bytes())],
    )

    assert result.version.state == "published"
    definition = service.definition_of(result.version)
    assert definition.entity_lists == ["households", "members"]
    assert definition.settings.encryption == "managed"
    assert result.version.warnings == []


# ------------------------------------------------------------------------- bad input


def _with_member(xlsx: bytes, name: str, content: bytes) -> bytes:
    buffer = io.BytesIO(xlsx)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def _huge_sheet() -> bytes:
    rows = [["type", "name", "label"]] + [["text", f"q{n}", f"Question {n}"] for n in range(5001)]
    return xlsx_from_sheets({"survey": rows, "settings": SETTINGS})


# (file name, bytes, words the message must contain, (sheet, row, column) of a problem)
BAD_UPLOADS: dict[str, tuple[str, Callable[[], bytes], str, tuple | None]] = {
    "not a spreadsheet": (
        "household.xlsx",
        lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< >>\nendobj\n",
        "not a spreadsheet",
        None,
    ),
    "empty file": ("household.xlsx", lambda: b"", "empty", None),
    "xlsm with macros": ("household.xlsm", lambda: MINIMAL_XLSX, "macro", None),
    "xlsx carrying a VBA project": (
        "household.xlsx",
        lambda: _with_member(MINIMAL_XLSX, "xl/vbaProject.bin", b"\x00" * 512),
        "macros",
        None,
    ),
    "zip bomb": (
        "household.xlsx",
        lambda: _with_member(MINIMAL_XLSX, "xl/media/padding.bin", b"\x00" * (3 * 1024 * 1024)),
        "zip bomb",
        None,
    ),
    "huge sheet": ("household.xlsx", _huge_sheet, "more than 5,000 rows", ("survey", 5001, None)),
    "formula cells": (
        "household.xlsx",
        lambda: xlsx_from_sheets(
            {
                "survey": [
                    ["type", "name", "label"],
                    ["text", "name", "Name"],
                    ["integer", "age", formula("SUM(1,2)")],
                ],
                "settings": SETTINGS,
            }
        ),
        "formula",
        ("survey", 3, "label"),
    ),
    "duplicate question names": (
        "household.xlsx",
        lambda: xlsx_from_sheets(
            {
                "survey": [
                    ["type", "name", "label"],
                    ["text", "full_name", "Name"],
                    ["integer", "age", "Age"],
                    ["text", "full_name", "Name again"],
                ],
                "settings": SETTINGS,
            }
        ),
        "must be unique",
        ("survey", 4, "name"),
    ),
    "unknown question type": (
        "household.xlsx",
        lambda: xlsx_from_sheets(
            {
                "survey": [
                    ["type", "name", "label"],
                    ["text", "full_name", "Name"],
                    ["txet", "nickname", "Nickname"],
                ],
                "settings": SETTINGS,
            }
        ),
        "Unknown question type 'txet'",
        ("survey", 3, "type"),
    ),
    "no version": (
        "household.xlsx",
        lambda: xlsx_from_sheets(
            {
                "survey": [["type", "name", "label"], ["text", "full_name", "Name"]],
                "settings": [["form_id"], ["unversioned"]],
            }
        ),
        "version",
        ("settings", None, "version"),
    ),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS), ids=list(BAD_UPLOADS))
def test_bad_upload_gets_a_400_naming_the_problem_and_stores_nothing(case, client, session, bearer):
    filename, make, words, place = BAD_UPLOADS[case]
    headers = bearer(AdminFactory())
    before = catalog_counts(session)

    response = client.post(
        "/api/v1/forms",
        data={"file": (io.BytesIO(make()), filename)},
        headers=headers,
        content_type="multipart/form-data",
    )

    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    problems = error["details"]["problems"]
    assert any(words in problem["message"] for problem in problems), problems
    if place is not None:
        places = {(p["sheet"], p["row"], p["column"]) for p in problems}
        assert place in places, problems
    assert catalog_counts(session) == before


@pytest.fixture
def odk_validate(app):
    """ODK Validate on, as in production (the test settings turn it off for speed)."""
    if not odk_validate_available():
        pytest.skip("ODK Validate needs Java")
    service.configure(odk_validate=True)
    yield
    service.configure(odk_validate=app.config["DIIWAAN"].odk_validate)


def test_skip_logic_that_only_odk_validate_catches_is_refused_naming_its_row(
    odk_validate, upload, session
):
    broken = xlsx_from_sheets(
        {
            "survey": [
                ["type", "name", "label", "relevant"],
                ["integer", "age", "Age", None],
                ["text", "school", "School", "${age} > 5 and"],
            ],
            "settings": SETTINGS,
        }
    )
    before = catalog_counts(session)

    with pytest.raises(service.ValidationFailed) as refused:
        upload(broken)

    [problem] = refused.value.details["problems"]
    assert problem["message"].startswith("ODK Validate:")
    assert (problem["sheet"], problem["row"]) == ("survey", 3)
    assert catalog_counts(session) == before


def test_an_unknown_district_refuses_the_whole_upload_even_when_the_form_converts(
    client, session, bearer
):
    headers = bearer(AdminFactory())
    before = catalog_counts(session)

    response = client.post(
        "/api/v1/forms",
        data={"file": (io.BytesIO(MINIMAL_XLSX), "minimal.xlsx"), "district_ids": "987654"},
        headers=headers,
        content_type="multipart/form-data",
    )

    assert response.status_code == 400
    assert "987654" in str(response.get_json()["error"]["details"])
    assert catalog_counts(session) == before


def test_broken_xml_attachment_refuses_the_upload_in_the_web_form(browser, session):
    admin = AdminFactory()
    DistrictFactory()
    browser.login(admin.username)
    before = catalog_counts(session)

    response = browser.post(
        "/forms/upload",
        {
            "file": (io.BytesIO(MEDIA_XLSX), "media_form.xlsx"),
            "media": [
                (io.BytesIO(b"<root><item><name>s1</name></root>"), "schools.xml"),
                (io.BytesIO(VILLAGES_CSV), "villages.csv"),
            ],
            "publish": "on",
        },
        content_type="multipart/form-data",
    )

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "schools.xml is not well-formed XML" in page
    assert catalog_counts(session) == before


def test_an_xml_attachment_with_an_entity_bomb_is_refused(client, session, bearer, upload):
    upload(MEDIA_XLSX, publish=False)
    headers = bearer(AdminFactory())
    before = catalog_counts(session)
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><root>&lol2;</root>'
    )

    response = client.post(
        "/api/v1/forms/media_form/versions/1/attachments",
        data={"file": (io.BytesIO(bomb), "schools.xml")},
        headers=headers,
        content_type="multipart/form-data",
    )

    assert response.status_code == 400
    assert "schools.xml" in response.get_json()["error"]["message"]
    assert catalog_counts(session) == before


def test_csv_attachment_that_is_not_utf8_names_the_bad_byte(upload, session, store):
    version = upload(HOUSEHOLD_XLSX, publish=False).version
    with pytest.raises(service.ValidationFailed) as refused:
        service.add_attachment(
            session,
            None,
            version,
            filename="villages.csv",
            data=b"name,label\ntaleex,Taleex\n" + b"\xff\xfe",
            store=store,
        )
    assert "not UTF-8" in refused.value.message
    assert "offset 25" in refused.value.message
    assert version.attachments == []
