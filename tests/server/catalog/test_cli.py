"""`diiwaan forms publish FILE.xlsx [--draft] [--district CODE]`, `diiwaan forms list` and
`diiwaan keys rotate`."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from server.catalog import service
from server.catalog.models import ServerKey
from tests.factories import DistrictFactory
from tests.server.catalog.helpers import (
    HOUSEHOLD_FORM_ID,
    HOUSEHOLD_FORM_VERSION,
    HOUSEHOLD_XLSX,
    MINIMAL_CHANGED_XLSX,
    MINIMAL_XLSX,
    catalog_counts,
)
from tests.support.xlsforms import xlsx_from_sheets

DUPLICATE_NAMES_XLSX = xlsx_from_sheets(
    {
        "survey": [
            ["type", "name", "label"],
            ["text", "full_name", "Name"],
            ["integer", "age", "Age"],
            ["text", "full_name", "Name again"],
        ],
        "settings": [["form_id", "version"], ["duplicates", "1"]],
    }
)


@pytest.fixture
def run(app):
    runner = app.test_cli_runner()

    def invoke(*args: str):
        return runner.invoke(args=list(args))

    return invoke


@pytest.fixture
def xlsx_file(tmp_path):
    def write(data: bytes, name: str = "form.xlsx") -> str:
        path = tmp_path / name
        path.write_bytes(data)
        return str(path)

    return write


def test_forms_publish_uploads_publishes_and_assigns_by_district_code(run, xlsx_file, session):
    district = DistrictFactory(code="BN-HODAN")

    result = run(
        "forms", "publish", xlsx_file(MINIMAL_XLSX, "minimal.xlsx"), "--district", "BN-HODAN"
    )

    assert result.exit_code == 0, result.output
    assert "uploaded minimal version 1 (published, encryption managed)" in result.output
    session.expire_all()
    version = service.get_version(session, "minimal", "1")
    assert version.state == "published"
    assert version.source_filename == "minimal.xlsx"
    assert version.form.district_ids == {district.id}

    listed = run("forms", "list")
    assert listed.exit_code == 0
    assert "minimal" in listed.output and "BN-HODAN" in listed.output
    assert "1:published" in listed.output


def test_forms_publish_draft_keeps_a_draft_until_published_without_the_flag(
    run, xlsx_file, session
):
    path = xlsx_file(MINIMAL_XLSX, "minimal.xlsx")

    drafted = run("forms", "publish", path, "--draft")
    published = run("forms", "publish", path)

    assert "uploaded minimal version 1 (draft," in drafted.output
    assert published.exit_code == 0, published.output
    assert "unchanged: minimal version 1 (published," in published.output
    session.expire_all()
    assert service.get_version(session, "minimal", "1").state == "published"


def test_forms_publish_says_which_files_a_form_still_needs(run, xlsx_file, session):
    result = run("forms", "publish", xlsx_file(HOUSEHOLD_XLSX))

    assert result.exit_code == 0, result.output
    assert "(draft, encryption managed)" in result.output
    assert "still needs files: villages.csv" in result.output
    session.expire_all()
    assert service.get_version(session, HOUSEHOLD_FORM_ID, HOUSEHOLD_FORM_VERSION).state == "draft"


def test_forms_publish_of_a_broken_form_fails_listing_problems_by_row(run, xlsx_file, session):
    before = catalog_counts(session)

    result = run("forms", "publish", xlsx_file(DUPLICATE_NAMES_XLSX))

    assert result.exit_code == 1
    assert "nothing was stored" in result.output
    assert "sheet survey, row 4, column name:" in result.output
    assert catalog_counts(session) == before


def test_forms_publish_refuses_a_changed_form_under_an_existing_version(run, xlsx_file, session):
    run("forms", "publish", xlsx_file(MINIMAL_XLSX, "v1.xlsx"))
    before = catalog_counts(session)

    result = run("forms", "publish", xlsx_file(MINIMAL_CHANGED_XLSX, "v1-edited.xlsx"))

    assert result.exit_code == 1
    assert "version 1 of form minimal already exists with different content" in result.output
    assert catalog_counts(session) == before


def test_forms_publish_with_an_unknown_district_code_stores_nothing(run, xlsx_file, session):
    before = catalog_counts(session)

    result = run("forms", "publish", xlsx_file(MINIMAL_XLSX), "--district", "NOWHERE")

    assert result.exit_code == 1
    assert "NOWHERE" in result.output
    assert catalog_counts(session) == before


def test_keys_rotate_makes_a_new_active_key_and_keeps_the_old(run, session, kek):
    old = service.active_key(session, kek)
    session.flush()

    result = run("keys", "rotate")

    assert result.exit_code == 0, result.output
    session.expire_all()
    keys = session.scalars(select(ServerKey).order_by(ServerKey.created_at)).all()
    assert [(k.id == old.id, k.active) for k in keys] == [(True, False), (False, True)]
    assert f"new active key {keys[1].fingerprint}" in result.output
