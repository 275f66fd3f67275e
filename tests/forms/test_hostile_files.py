"""Uploaded files that must be refused before pyxform reads them, each with a clear reason."""

import io
import struct
import zipfile

import pytest

from forms.xlsform import ConversionLimits, FormConversionError, Problem, convert
from tests.support.xlsforms import formula, minimal_form_xlsx, xlsx_from_sheets


def conversion_errors(data: bytes, filename: str = "form.xlsx", **kwargs: object) -> list[Problem]:
    with pytest.raises(FormConversionError) as caught:
        convert(data, filename, validate=False, **kwargs)  # type: ignore[arg-type]
    assert caught.value.errors, "a refused form must carry at least one error"
    return caught.value.errors


def with_extra_member(xlsx: bytes, name: str, content: bytes, *, deflate: bool = True) -> bytes:
    buffer = io.BytesIO(xlsx)
    compression = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "a", compression=compression) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def with_declared_size(zip_bytes: bytes, member_name: str, declared_size: int) -> bytes:
    """The same zip, but its central directory claims `declared_size` for one member."""
    data = bytearray(zip_bytes)
    name = member_name.encode()
    offset = data.find(b"PK\x01\x02")
    while offset != -1:
        name_length = struct.unpack_from("<H", data, offset + 28)[0]
        if data[offset + 46 : offset + 46 + name_length] == name:
            struct.pack_into("<I", data, offset + 24, declared_size)
            return bytes(data)
        offset = data.find(b"PK\x01\x02", offset + 4)
    raise AssertionError(f"{member_name} not in the archive")


def test_a_pdf_named_xlsx_is_not_a_spreadsheet() -> None:
    errors = conversion_errors(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "household.xlsx")
    assert "not a spreadsheet" in errors[0].message


def test_a_zip_without_a_workbook_is_not_a_spreadsheet() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
    errors = conversion_errors(buffer.getvalue())
    assert any("without an Excel workbook" in error.message for error in errors)


def test_an_empty_upload_is_refused() -> None:
    assert "empty" in conversion_errors(b"")[0].message


def test_an_xlsm_file_is_refused_as_macro_enabled() -> None:
    errors = conversion_errors(minimal_form_xlsx(), "household.xlsm")
    assert "macro" in errors[0].message.lower()


def test_a_workbook_carrying_vba_project_is_refused_whatever_its_name() -> None:
    xlsx = with_extra_member(minimal_form_xlsx(), "xl/vbaProject.bin", b"\xd0\xcf\x11\xe0VBA")
    errors = conversion_errors(xlsx, "innocent.xlsx")
    assert any("vbaProject.bin" in error.message for error in errors)


def test_an_excel_97_workbook_with_a_vba_stream_is_refused() -> None:
    fake_xls = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 200 + "_VBA_PROJECT_CUR".encode("utf-16-le")
    )
    errors = conversion_errors(fake_xls, "old.xls")
    assert "macros" in errors[0].message


def test_a_member_declaring_a_huge_uncompressed_size_is_refused_as_zip_bomb() -> None:
    xlsx = with_extra_member(minimal_form_xlsx(), "xl/media/padding.bin", b"x" * 100)
    bomb = with_declared_size(xlsx, "xl/media/padding.bin", 4_000_000_000)
    errors = conversion_errors(bomb)
    assert any("zip bomb" in error.message and "4,000" in error.message for error in errors)


def test_a_member_compressed_more_than_100_to_1_is_refused() -> None:
    xlsx = with_extra_member(minimal_form_xlsx(), "xl/media/zeros.bin", b"\x00" * 3_000_000)
    errors = conversion_errors(xlsx)
    assert any(
        "xl/media/zeros.bin" in error.message and "to 1" in error.message for error in errors
    )


def test_the_uncompressed_size_limit_is_configurable() -> None:
    xlsx = minimal_form_xlsx()
    errors = conversion_errors(xlsx, limits=ConversionLimits(max_uncompressed_bytes=1000))
    assert "at most 1,000 are accepted" in errors[0].message


def test_a_formula_cell_is_refused_naming_sheet_and_cell() -> None:
    xlsx = xlsx_from_sheets(
        {
            "survey": [
                ["type", "name", "label"],
                ["text", "name", "Name"],
                ["integer", "age", formula('CONCAT("Age of ", B2)')],
            ]
        }
    )
    errors = conversion_errors(xlsx)
    assert len(errors) == 1
    assert "survey!C3" in errors[0].message
    assert (errors[0].sheet, errors[0].row, errors[0].column) == ("survey", 3, "label")


def test_formulas_on_sheets_pyxform_does_not_read_are_ignored() -> None:
    xlsx = xlsx_from_sheets(
        {
            "survey": [["type", "name", "label"], ["text", "name", "Name"]],
            "notes": [["total"], [formula("SUM(1, 2)")]],
        }
    )
    converted = convert(xlsx, "notes.xlsx", validate=False)
    assert converted.definition.question_at("/name") is not None


def test_a_sheet_with_too_many_rows_is_refused() -> None:
    rows: list[list[str | None]] = [["type", "name", "label"]]
    rows += [["text", f"q{n}", f"Question {n}"] for n in range(60)]
    errors = conversion_errors(
        xlsx_from_sheets({"survey": rows}), limits=ConversionLimits(max_rows=50)
    )
    assert errors[0].sheet == "survey"
    assert errors[0].row == 51
    assert "more than 50 rows" in errors[0].message


def test_rows_are_limited_to_5000_per_sheet_by_default() -> None:
    assert ConversionLimits().max_rows == 5000
    assert ConversionLimits().max_uncompressed_bytes == 50 * 1024 * 1024


def test_a_sheet_with_too_many_columns_is_refused() -> None:
    header = ["type", "name", "label", *[f"extra_{n}" for n in range(20)]]
    row = ["text", "name", "Name", *["x"] * 20]
    errors = conversion_errors(
        xlsx_from_sheets({"survey": [header, row]}), limits=ConversionLimits(max_columns=10)
    )
    assert errors[0].sheet == "survey"
    assert "more than 10 columns" in errors[0].message


def test_an_oversized_upload_is_refused_before_it_is_opened() -> None:
    errors = conversion_errors(
        b"PK\x03\x04" + b"\x00" * 2000, limits=ConversionLimits(max_file_bytes=1000)
    )
    assert "at most 1,000 bytes" in errors[0].message


def test_a_sheet_declaring_xml_entities_is_refused() -> None:
    original = zipfile.ZipFile(io.BytesIO(minimal_form_xlsx()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in original.infolist():
            content = original.read(member.filename)
            if member.filename == "xl/worksheets/sheet1.xml":
                content = b'<!DOCTYPE s [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>' + content
            archive.writestr(member, content)
    errors = conversion_errors(buffer.getvalue())
    assert "damaged or unsafe" in errors[0].message
