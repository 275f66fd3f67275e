"""Importing regions, districts and villages from CSV: all rows or none, clear line numbers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import func, select

from server.accounts import service
from server.accounts.models import District, Region, Village
from server.errors import Forbidden, ValidationFailed
from tests.factories import AdminFactory, SupervisorFactory

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "somalia_locations.csv"

GOOD = """region_code,region_name,district_code,district_name,village_code,village_name
SO-BY,Bay,SO-BY-BAI,Baidoa,SO-BY-BAI-BER,Berdale
SO-BY,Bay,SO-BY-BAI,Baidoa,SO-BY-BAI-AWD,Awdinle
SO-BY,Bay,SO-BY-DIN,Dinsoor,,
SO-BN,Banadir,SO-BN-HOD,Hodan,,
"""


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def district(session, code: str) -> District:
    session.expire_all()
    return session.scalar(select(District).where(District.code == code))


def test_good_file_imports_regions_districts_and_villages(session):
    result = service.import_locations(session, AdminFactory(), GOOD)
    assert (result.regions, result.districts, result.villages) == (2, 3, 2)
    baidoa = district(session, "SO-BY-BAI")
    assert (baidoa.name, baidoa.region.code, baidoa.region.name) == ("Baidoa", "SO-BY", "Bay")
    assert sorted(village.name for village in baidoa.villages) == ["Awdinle", "Berdale"]
    assert district(session, "SO-BN-HOD").region.name == "Banadir"


def test_village_columns_are_optional(session):
    text = (
        "region_code,region_name,district_code,district_name\nSO-HI,Hiraan,SO-HI-BEL,Beledweyne\n"
    )
    result = service.import_locations(session, None, text)
    assert (result.districts, result.villages) == (1, 0)


def test_byte_order_mark_and_stray_spaces_are_tolerated(session):
    text = (
        "\ufeffregion_code , region_name,district_code,district_name\n"
        " SO-NU ,Nugaal,SO-NU-GAR, Garowe\n"
    )
    service.import_locations(session, None, text)
    assert district(session, "SO-NU-GAR").name == "Garowe"


def test_bad_rows_import_nothing_and_each_problem_names_its_line(session):
    text = (
        "region_code,region_name,district_code,district_name,village_code,village_name\n"
        "SO-BY,Bay,SO-BY-BAI,Baidoa,,\n"
        "SO-BY,Bay,SO-BY-DIN,,,\n"
        "SO BN,Banadir,SO-BN-HOD,Hodan,,\n"
        "SO-BN,Banadir,SO-BN-WAD,Wadajir,SO-BN-WAD-01,\n"
        "SO-BY,Bay Region,SO-BY-BUR,Burhakaba,,\n"
        "SO-BN,Banadir,SO-BY-BAI,Baidoa,,\n"
    )
    with pytest.raises(ValidationFailed) as raised:
        service.import_locations(session, None, text)
    assert raised.value.message == "5 problem(s) in the file; nothing was imported"
    assert raised.value.details["rows"] == [
        "line 3: district_name is empty",
        "line 4: region_code 'SO BN' is not a code (letters, digits, . _ -)",
        "line 5: village_code and village_name go together",
        "line 6: region SO-BY has two names in this file",
        "line 7: district SO-BY-BAI is listed under two regions",
    ]
    assert count(session, Region) == count(session, District) == count(session, Village) == 0


def test_missing_columns_are_named(session):
    with pytest.raises(ValidationFailed) as raised:
        service.import_locations(session, None, "region_code,district_code\nA,B\n")
    assert raised.value.message == "line 1: missing column(s) region_name, district_name"


def test_header_without_rows_is_refused(session):
    with pytest.raises(ValidationFailed, match="the file has no rows"):
        service.import_locations(session, None, ",".join(service.LOCATION_COLUMNS) + "\n")


def test_reimporting_renames_in_place_without_duplicates(session):
    service.import_locations(session, None, GOOD)
    baidoa_id = district(session, "SO-BY-BAI").id
    renamed = GOOD.replace("Baidoa", "Baydhabo").replace(",Bay,", ",Bay Region,")
    service.import_locations(session, None, renamed)
    baidoa = district(session, "SO-BY-BAI")
    assert (baidoa.id, baidoa.name, baidoa.region.name) == (baidoa_id, "Baydhabo", "Bay Region")
    assert (count(session, Region), count(session, District), count(session, Village)) == (2, 3, 2)


def test_reimport_can_move_a_district_to_another_region(session):
    service.import_locations(session, None, GOOD)
    moved = GOOD.replace("SO-BN,Banadir,SO-BN-HOD", "SO-BY,Bay,SO-BN-HOD")
    service.import_locations(session, None, moved)
    assert district(session, "SO-BN-HOD").region.code == "SO-BY"


def test_only_admins_may_import(session):
    with pytest.raises(Forbidden):
        service.import_locations(session, SupervisorFactory(), GOOD)


def test_the_somalia_example_imports_completely(session):
    text = EXAMPLE.read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    result = service.import_locations(session, None, text)
    assert result.regions == len({row["region_code"] for row in rows}) == 18
    assert result.districts == len({row["district_code"] for row in rows})
    assert result.villages == len([row for row in rows if row["village_code"]])
    assert result.districts >= 80
    assert district(session, "SO-BN-HOD").name == "Hodan"
    assert district(session, "SO-BY-BAI").region.name == "Bay"
    assert len(district(session, "SO-BY-BAI").villages) >= 3


# --------------------------------------------------------------------- page and CLI


def upload(browser, text: bytes, filename: str = "locations.csv"):
    return browser.post(
        "/districts",
        {"file": (io.BytesIO(text), filename)},
        content_type="multipart/form-data",
    )


def test_admin_imports_on_the_districts_page(browser, session):
    browser.login(AdminFactory().username)
    browser.refresh_csrf("/districts")
    response = upload(browser, GOOD.encode())
    assert response.status_code == 302
    page = browser.get("/districts").get_data(as_text=True)
    assert "Imported 2 regions, 3 districts, 2 villages." in page
    assert "Dinsoor" in page
    assert "SO-BN-HOD" in page


def test_page_lists_bad_lines_and_imports_nothing(browser, session):
    browser.login(AdminFactory().username)
    browser.refresh_csrf("/districts")
    response = upload(browser, b"region_code,region_name,district_code,district_name\nA,B,,D\n")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "nothing was imported" in page
    assert "line 2: district_code is empty" in page
    assert count(session, District) == 0


def test_page_refuses_a_file_that_is_not_utf8(browser):
    browser.login(AdminFactory().username)
    browser.refresh_csrf("/districts")
    response = upload(browser, "region_code\nGalkacyo \u00e9".encode("latin-1"))
    assert response.status_code == 400
    assert "not UTF-8 text (byte" in response.get_data(as_text=True)


def test_supervisor_sees_districts_but_may_not_import(browser, session):
    browser.login(SupervisorFactory().username)
    browser.refresh_csrf("/districts")
    page = browser.get("/districts").get_data(as_text=True)
    assert 'type="file"' not in page
    response = upload(browser, GOOD.encode())
    assert response.status_code == 403
    assert "may not do this (districts.manage)" in response.get_data(as_text=True)
    assert count(session, District) == 0


def test_cli_import_reports_counts(app, tmp_path, session):
    path = tmp_path / "locations.csv"
    path.write_text(GOOD, encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["districts", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "imported 2 regions, 3 districts, 2 villages"
    assert district(session, "SO-BY-DIN").name == "Dinsoor"


def test_cli_import_failure_lists_lines_and_exits_non_zero(app, tmp_path, session):
    path = tmp_path / "locations.csv"
    path.write_text(GOOD + "SO-BY,Bay,,Nowhere,,\n", encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["districts", "import", str(path)])
    assert result.exit_code == 1
    assert "1 problem(s) in the file; nothing was imported" in result.output
    assert "line 6: district_code is empty" in result.output
    assert count(session, District) == 0


def test_cli_import_refuses_a_file_that_is_not_utf8(app, tmp_path):
    path = tmp_path / "locations.csv"
    path.write_bytes("region_code\nGalkacyo \u00e9\n".encode("latin-1"))
    result = app.test_cli_runner().invoke(args=["districts", "import", str(path)])
    assert result.exit_code == 1
    assert "is not UTF-8 text" in result.output
