"""XLSForm → XForm: the one adapter around pyxform, and the guard in front of it.

`convert()` takes an uploaded spreadsheet, refuses hostile or broken files before pyxform
sees them (not a spreadsheet, macros, zip bombs, formula cells, oversized sheets), runs
pyxform (and ODK Validate when Java is there), inserts the server's public key for
managed encryption, and returns the XForm with Diiwaan's own `FormDefinition`. Every
failure is a `FormConversionError` listing `Problem`s that name sheet, row and column.

This is the only module that imports pyxform.
"""

from __future__ import annotations

import copy
import hashlib
import io
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NoReturn

from defusedxml import ElementTree as SafeElementTree
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from pyxform.builder import create_survey_element_from_dict
from pyxform.errors import PyXFormError
from pyxform.utils import external_choices_to_csv, has_external_choices
from pyxform.validators import odk_validate
from pyxform.xls2json import workbook_to_json
from pyxform.xls2json_backends import DefinitionData, get_xlsform

from forms.definition import (
    DEFAULT_LANGUAGE,
    ROOT_PATH,
    Choice,
    ChoiceList,
    EntityDeclaration,
    FormDefinition,
    Group,
    Node,
    Question,
    Repeat,
    Settings,
    Translations,
)

Level = Literal["error", "warning"]

ZIP_MAGIC = b"PK\x03\x04"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Streams of an Excel 97 workbook that carry VBA macros are named like this (UTF-16 in
# the compound file directory).
OLE2_VBA_STREAM = "_VBA_PROJECT".encode("utf-16-le")

# Sheets pyxform reads; any other sheet of a workbook is ignored by the conversion.
XLSFORM_SHEETS = ("survey", "choices", "settings", "external_choices", "entities", "osm")
# pyxform stops reading a sheet after this many empty rows in a row; so do our checks.
EMPTY_ROWS_ENDING_A_SHEET = 60
# Small archive members may compress very well and cannot hurt; the ratio is only
# checked on members at least this large.
RATIO_CHECK_MIN_BYTES = 1024 * 1024
MAX_FORMULA_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    """Something wrong (or worth a warning) in an uploaded form, in the author's terms.

    `row` is the spreadsheet row number as Excel shows it; `column` is the column's
    header from row 1 (e.g. "name", "label::English (en)"), or its letter when it has
    no header.
    """

    level: Level
    message: str
    sheet: str | None = None
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        place = []
        if self.sheet:
            place.append(f"sheet '{self.sheet}'")
        if self.row is not None:
            place.append(f"row {self.row}")
        if self.column:
            place.append(f"column '{self.column}'")
        return f"{', '.join(place)}: {self.message}" if place else self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "message": self.message,
            "sheet": self.sheet,
            "row": self.row,
            "column": self.column,
        }


class FormConversionError(Exception):
    """The form could not be converted; `problems` says why (errors first)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = sorted(problems, key=lambda p: p.level != "error")
        super().__init__("; ".join(str(p) for p in self.problems if p.level == "error"))

    @property
    def errors(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.level == "error"]


@dataclass(frozen=True)
class ConversionLimits:
    """Bounds on an uploaded XLSForm, checked before pyxform reads it."""

    max_file_bytes: int = 20 * 1024 * 1024
    max_uncompressed_bytes: int = 50 * 1024 * 1024
    max_compression_ratio: float = 100.0
    max_archive_members: int = 1000
    max_rows: int = 5000
    max_columns: int = 500


@dataclass
class ConvertedForm:
    """A converted form version: the XForm to serve, and what Diiwaan knows of it."""

    form_id: str
    version: str | None
    title: str | None
    xform_xml: bytes
    definition: FormDefinition
    warnings: list[Problem] = field(default_factory=list)
    md5: str = ""
    # For select_one_external questions: the itemsets.csv attachment pyxform generates.
    itemsets_csv: bytes | None = None

    @property
    def encryption(self) -> str:
        """The encryption mode: none, managed (server key) or self-managed (form's own key)."""
        return self.definition.settings.encryption


def convert(
    data: bytes,
    filename: str,
    *,
    public_key: str | None = None,
    submission_url: str | None = None,
    limits: ConversionLimits = ConversionLimits(),
    validate: bool = True,
) -> ConvertedForm:
    """Convert an uploaded XLSForm (.xlsx, .xls or .csv) to an XForm.

    `public_key` (base64 DER, the server's managed key) is inserted unless the form
    brings its own, which it keeps (`definition.settings.encryption == "self-managed"`).
    `submission_url` replaces the form's own. With `validate`, ODK Validate checks the
    result when Java is available. Raises `FormConversionError`.
    """
    file_type = _check_file(data, filename, limits)
    workbook = _read_workbook(data, file_type)
    _check_sheet_sizes(workbook, limits)
    survey_rows = [dict(row) for row in workbook.survey or []]

    warning_texts: list[str] = []
    try:
        survey_json = workbook_to_json(
            workbook_dict=workbook,
            fallback_form_name=_form_id_from_filename(filename),
            warnings=warning_texts,
        )
    except PyXFormError as error:
        raise FormConversionError([_problem_from_pyxform(error, survey_rows)]) from error
    except Exception as error:  # pyxform may trip over input it did not expect
        raise FormConversionError(
            [Problem("error", f"The form could not be read: {error}")]
        ) from error

    problems: list[Problem] = []
    encryption = _apply_server_settings(survey_json, public_key, submission_url, problems)
    if not survey_json.get("version"):
        problems.append(
            Problem(
                "warning",
                "The settings sheet has no version; devices cannot tell new versions of"
                " this form apart.",
                sheet="settings",
                column="version",
            )
        )
    form_json = copy.deepcopy(survey_json)

    try:
        survey = create_survey_element_from_dict(survey_json)
        xform_text = survey.to_xml(validate=False, pretty_print=False, warnings=warning_texts)
    except PyXFormError as error:
        raise FormConversionError([_problem_from_pyxform(error, survey_rows)]) from error
    except Exception as error:
        raise FormConversionError(
            [Problem("error", f"The form could not be converted: {error}")]
        ) from error

    xform_xml = xform_text.encode("utf-8")
    if validate:
        problems.extend(_run_odk_validate(xform_xml, survey_rows))
    problems.extend(_problem_from_message(text, "warning", survey_rows) for text in warning_texts)
    if any(problem.level == "error" for problem in problems):
        raise FormConversionError(problems)

    itemsets_csv = None
    if has_external_choices(form_json):
        itemsets_text = external_choices_to_csv(workbook)
        itemsets_csv = itemsets_text.encode("utf-8") if itemsets_text else None

    definition = build_definition(form_json, encryption=encryption)
    definition.media_files = _media_files(xform_xml, definition, itemsets_csv is not None)
    settings = definition.settings
    return ConvertedForm(
        form_id=settings.form_id,
        version=settings.version,
        title=settings.title,
        xform_xml=xform_xml,
        definition=definition,
        warnings=[problem for problem in problems if problem.level == "warning"],
        md5=hashlib.md5(xform_xml, usedforsecurity=False).hexdigest(),
        itemsets_csv=itemsets_csv,
    )


# ---------------------------------------------------------------------------------------
# Guarding the door: what the file is, and whether it is safe to open


def _check_file(data: bytes, filename: str, limits: ConversionLimits) -> str:
    """Refuse hostile or unreadable files; return the pyxform file type to read."""
    extension = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if extension == ".xlsm":
        _fail(
            f"'{filename}' is a macro-enabled workbook (.xlsm). Macros are not accepted:"
            " save the form as .xlsx."
        )
    if len(data) > limits.max_file_bytes:
        _fail(
            f"The file is {len(data):,} bytes; forms may be at most"
            f" {limits.max_file_bytes:,} bytes."
        )
    if not data:
        _fail("The file is empty.")

    if data.startswith(ZIP_MAGIC):
        _check_xlsx_archive(data, limits)
        _check_xlsx_cells(data, limits)
        return ".xlsx"
    if data.startswith(OLE2_MAGIC):
        if OLE2_VBA_STREAM in data:
            _fail("The workbook contains macros (a VBA project). Save it without macros.")
        return ".xls"
    if extension == ".csv":
        _check_csv_text(data)
        return ".csv"
    _fail(f"'{filename}' is not a spreadsheet: an XLSForm must be an .xlsx, .xls or .csv file.")


def _check_xlsx_archive(data: bytes, limits: ConversionLimits) -> None:
    """Zip-level checks of an .xlsx: a workbook, no macros, no decompression bomb."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as error:
        _fail(f"The file is not a spreadsheet: it looks like a damaged zip archive ({error}).")
    with archive:
        members = archive.infolist()
        problems: list[Problem] = []
        if len(members) > limits.max_archive_members:
            problems.append(
                Problem(
                    "error",
                    f"The workbook archive has {len(members):,} parts; at most"
                    f" {limits.max_archive_members:,} are accepted.",
                )
            )
        names = {member.filename.lower() for member in members}
        if "xl/workbook.xml" not in names:
            problems.append(
                Problem(
                    "error",
                    "The file is not a spreadsheet: it is a zip archive without an Excel"
                    " workbook inside.",
                )
            )
        if any(name.rsplit("/", 1)[-1] == "vbaproject.bin" for name in names):
            problems.append(
                Problem(
                    "error",
                    "The workbook contains macros (vbaProject.bin). Save it as a plain"
                    " .xlsx without macros.",
                )
            )
        total = sum(member.file_size for member in members)
        if total > limits.max_uncompressed_bytes:
            problems.append(
                Problem(
                    "error",
                    f"The workbook would unpack to {total:,} bytes; at most"
                    f" {limits.max_uncompressed_bytes:,} are accepted"
                    " (this looks like a zip bomb).",
                )
            )
        for member in members:
            if member.file_size < RATIO_CHECK_MIN_BYTES:
                continue
            ratio = member.file_size / max(member.compress_size, 1)
            if ratio > limits.max_compression_ratio:
                problems.append(
                    Problem(
                        "error",
                        f"The workbook part '{member.filename}' is compressed {ratio:,.0f}"
                        f" to 1 (more than {limits.max_compression_ratio:,.0f} to 1 is"
                        " refused as a likely zip bomb).",
                    )
                )
        if problems:
            raise FormConversionError(problems)


def _check_xlsx_cells(data: bytes, limits: ConversionLimits) -> None:
    """Cell-level checks of the XLSForm sheets: no formulas, bounded rows and columns."""
    problems: list[Problem] = []
    try:
        # openpyxl reads the parts with defusedxml, so XML bombs inside are refused here.
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
        try:
            sheet_names = workbook.sheetnames
            for sheet_name in sheet_names:
                if sheet_name.lower() not in XLSFORM_SHEETS and len(sheet_names) > 1:
                    continue
                problems.extend(_check_sheet_cells(workbook[sheet_name], sheet_name, limits))
        finally:
            workbook.close()
    except Exception as error:  # openpyxl raises many kinds on a broken or hostile workbook
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        _fail(f"The workbook could not be opened: its contents are damaged or unsafe ({reason})")
    if problems:
        raise FormConversionError(problems)


def _check_sheet_cells(sheet: Any, sheet_name: str, limits: ConversionLimits) -> list[Problem]:
    problems: list[Problem] = []
    headers: dict[int, str] = {}
    formula_count = 0
    empty_rows = 0
    for row_number, row in enumerate(sheet.iter_rows(), start=1):
        row_has_value = False
        for column_number, cell in enumerate(row, start=1):
            if cell.value is None:
                continue
            row_has_value = True
            if row_number == 1 and isinstance(cell.value, str):
                headers[column_number] = cell.value.strip()
            if column_number > limits.max_columns:
                problems.append(
                    Problem(
                        "error",
                        f"The sheet has more than {limits.max_columns:,} columns"
                        f" (a value in column {get_column_letter(column_number)}).",
                        sheet=sheet_name,
                        row=row_number,
                        column=get_column_letter(column_number),
                    )
                )
                return problems
            if cell.data_type == "f":
                formula_count += 1
                if formula_count <= MAX_FORMULA_PROBLEMS:
                    letter = get_column_letter(column_number)
                    problems.append(
                        Problem(
                            "error",
                            f"Cell {sheet_name}!{letter}{row_number} holds a formula"
                            f" ({str(cell.value)[:60]}). Formulas are not accepted:"
                            " replace it with its value.",
                            sheet=sheet_name,
                            row=row_number,
                            column=headers.get(column_number) or letter,
                        )
                    )
        if not row_has_value:
            empty_rows += 1
            if empty_rows > EMPTY_ROWS_ENDING_A_SHEET:
                break
            continue
        empty_rows = 0
        if row_number > limits.max_rows:
            problems.append(
                Problem(
                    "error",
                    f"The sheet has more than {limits.max_rows:,} rows.",
                    sheet=sheet_name,
                    row=row_number,
                )
            )
            break
    if formula_count > MAX_FORMULA_PROBLEMS:
        problems.append(
            Problem(
                "error",
                f"…and {formula_count - MAX_FORMULA_PROBLEMS} more formula cells.",
                sheet=sheet_name,
            )
        )
    return problems


def _check_csv_text(data: bytes) -> None:
    if b"\x00" in data:
        _fail("The file is not a spreadsheet: a CSV form must be text, not binary data.")
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        _fail(f"A CSV form must be UTF-8 text; byte {error.start} is not.")


def _read_workbook(data: bytes, file_type: str) -> DefinitionData:
    try:
        return get_xlsform(data, file_type=file_type)
    except PyXFormError as error:
        raise FormConversionError(
            [Problem("error", f"The {file_type} file could not be read as an XLSForm: {error}")]
        ) from error
    except Exception as error:
        raise FormConversionError(
            [Problem("error", f"The {file_type} file could not be read: {error}")]
        ) from error


def _check_sheet_sizes(workbook: DefinitionData, limits: ConversionLimits) -> None:
    """Row and column bounds, for every file type (after pyxform's reading)."""
    problems: list[Problem] = []
    for sheet_name in XLSFORM_SHEETS:
        rows: Sequence[Mapping[str, Any]] | None = getattr(workbook, sheet_name, None)
        headers: Sequence[Mapping[str, Any]] | None = getattr(
            workbook, f"{sheet_name}_header", None
        )
        if rows and len(rows) + 1 > limits.max_rows:
            problems.append(
                Problem(
                    "error",
                    f"The sheet has more than {limits.max_rows:,} rows.",
                    sheet=sheet_name,
                    row=limits.max_rows + 1,
                )
            )
        if headers and len(headers[0]) > limits.max_columns:
            problems.append(
                Problem(
                    "error",
                    f"The sheet has more than {limits.max_columns:,} columns.",
                    sheet=sheet_name,
                )
            )
    if problems:
        raise FormConversionError(problems)


def _fail(message: str) -> NoReturn:
    raise FormConversionError([Problem("error", message)])


def _form_id_from_filename(filename: str) -> str | None:
    """pyxform's fallback form ID: the file name without extension, if it is a valid name."""
    stem = PurePosixPath(filename.replace("\\", "/")).stem
    return stem if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", stem) else None


# ---------------------------------------------------------------------------------------
# Managed encryption


def _apply_server_settings(
    survey_json: dict[str, Any],
    public_key: str | None,
    submission_url: str | None,
    problems: list[Problem],
) -> str:
    """Insert the server's key and submission URL; return the encryption mode."""
    own_key = (survey_json.get("public_key") or "").strip() or None
    if submission_url is not None:
        own_url = survey_json.get("submission_url")
        if own_url and own_url != submission_url:
            problems.append(
                Problem(
                    "warning",
                    f"The form's submission_url ({own_url}) was replaced by this server's.",
                    sheet="settings",
                    column="submission_url",
                )
            )
        survey_json["submission_url"] = submission_url
    if own_key:
        if public_key is not None and own_key != public_key.strip():
            problems.append(
                Problem(
                    "warning",
                    "The form brings its own public_key, so it keeps it: submissions will be"
                    " encrypted with that key and this server cannot read them"
                    " (self-managed encryption).",
                    sheet="settings",
                    column="public_key",
                )
            )
            return "self-managed"
        return "managed" if public_key is not None else "self-managed"
    if public_key:
        survey_json["public_key"] = "".join(public_key.split())
        return "managed"
    return "none"


# ---------------------------------------------------------------------------------------
# pyxform's messages → problems

_ROW_PREFIX = re.compile(r"^\s*\[row\s*:\s*(\d+)\]\s*")
_SHEET_AND_COLUMN = re.compile(r"On the '([^']+)' sheet, the '([^']+)' value")
_SHEET_ONLY = re.compile(r"(?:On the '([^']+)' sheet|for sheet: '([^']+)')")
_UNKNOWN_TYPE = re.compile(r"Unknown question type '([^']*)'")
_LIST_NOT_IN_CHOICES = re.compile(r"List name not in (?:external )?choices sheet", re.I)
_VALIDATE_NAME_TOKEN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.-]*)\}")


def _problem_from_pyxform(error: PyXFormError, survey_rows: Sequence[Mapping[str, Any]]) -> Problem:
    problem = _problem_from_message(str(error), "error", survey_rows)
    context = error.context or {}
    if problem.row is None and isinstance(context.get("row"), int):
        problem = Problem(
            "error",
            problem.message,
            sheet=context.get("sheet") or problem.sheet or "survey",
            row=context["row"],
            column=context.get("column") or problem.column,
        )
    return problem


def _problem_from_message(
    text: str, level: Level, survey_rows: Sequence[Mapping[str, Any]]
) -> Problem:
    """Read the sheet, row and column out of one of pyxform's messages."""
    message = text.strip()
    row: int | None = None
    sheet: str | None = None
    column: str | None = None

    prefix = _ROW_PREFIX.match(message)
    if prefix:
        row = int(prefix.group(1))
        message = message[prefix.end() :]
    sheet_and_column = _SHEET_AND_COLUMN.search(message)
    if sheet_and_column:
        sheet, column = sheet_and_column.group(1), sheet_and_column.group(2)
    else:
        sheet_only = _SHEET_ONLY.search(message)
        if sheet_only:
            sheet = sheet_only.group(1) or sheet_only.group(2)
    if row is not None and sheet is None:
        sheet = "survey"  # pyxform's unprefixed row messages come from the survey sheet
    if row is not None and column is None and _LIST_NOT_IN_CHOICES.search(message):
        column = "type"

    unknown_type = _UNKNOWN_TYPE.search(message)
    if unknown_type and row is None:
        row = _survey_row_where(survey_rows, "type", unknown_type.group(1))
        if row is not None:
            sheet, column = "survey", "type"
            message = (
                f"Unknown question type '{unknown_type.group(1)}'. Check its spelling"
                " against https://xlsform.org/en/ref-table/."
            )
    return Problem(level, message, sheet=sheet, row=row, column=column)


def _survey_row_where(
    survey_rows: Sequence[Mapping[str, Any]], column: str, value: str
) -> int | None:
    """The spreadsheet row number of the first survey row with `column` == `value`."""
    for index, row in enumerate(survey_rows):
        for header, cell in row.items():
            if header.strip().lower() == column and str(cell).strip() == value.strip():
                return index + 2  # row 1 is the header
    return None


def _survey_row_named(survey_rows: Sequence[Mapping[str, Any]], name: str) -> int | None:
    rows = [
        index + 2
        for index, row in enumerate(survey_rows)
        if str(row.get("name", "")).strip() == name
    ]
    return rows[0] if len(rows) == 1 else None


# ---------------------------------------------------------------------------------------
# ODK Validate (the JavaRosa parser Collect uses), when Java and the bundled jar exist


def odk_validate_available() -> bool:
    """Whether ODK Validate can run here: Java on PATH and pyxform's bundled jar."""
    return shutil.which("java") is not None and odk_validate.install_exists()


def _run_odk_validate(xform_xml: bytes, survey_rows: Sequence[Mapping[str, Any]]) -> list[Problem]:
    if not odk_validate_available():
        return [
            Problem(
                "warning",
                "ODK Validate was not run (it needs Java and pyxform's bundled"
                " ODK_Validate.jar); the form was checked by pyxform only.",
            )
        ]
    with tempfile.TemporaryDirectory(prefix="diiwaan-validate-") as directory:
        xform_path = Path(directory) / "form.xml"
        xform_path.write_bytes(xform_xml)
        try:
            validate_warnings = odk_validate.check_xform(str(xform_path))
        except odk_validate.ODKValidateError as error:
            return [_odk_validate_problem(str(error), "error", survey_rows)]
        except OSError as error:
            return [Problem("warning", f"ODK Validate could not be run: {error}")]
    return [
        _odk_validate_problem(text, "warning", survey_rows)
        for text in validate_warnings
        if text.strip()
    ]


_JAVA_NOISE = re.compile(r"\s*Bad node: \S+|\s*org\.javarosa\.[\w.$]+(Exception|Error):?")
_VALIDATE_NOISE = (
    "ODK Validate Errors:",
    "ODK Validate Warnings:",
    ">> ",
    "The following files failed validation",
    "Result: ",
    "Caused by:",
    "...",
    "${form}",
)


def _odk_validate_problem(
    text: str, level: Level, survey_rows: Sequence[Mapping[str, Any]]
) -> Problem:
    lines: list[str] = []
    for raw_line in text.splitlines():
        line = _JAVA_NOISE.sub("", raw_line).strip().lstrip(": ").strip()
        if not line or line.startswith(_VALIDATE_NOISE) or line in lines:
            continue
        lines.append(line)
    message = "ODK Validate: " + (" ".join(lines) if lines else "the XForm is invalid.")
    for name in _VALIDATE_NAME_TOKEN.findall(message):
        row = _survey_row_named(survey_rows, name)
        if row is not None:
            return Problem(level, message, sheet="survey", row=row)
    return Problem(level, message)


# ---------------------------------------------------------------------------------------
# pyxform's JSON → FormDefinition

_FILE_EXTENSIONS = (".csv", ".xml", ".geojson")
_SELECT_TYPES = {
    "select one": "select_one",
    "select all that apply": "select_multiple",
}
# pyxform type names (after its aliasing) → XLSForm type names.
_TYPE_NAMES = {
    "select one external": "select_one_external",
    "rank": "rank",
    "photo": "image",
    "image": "image",
    "audio": "audio",
    "video": "video",
    "file": "file",
    "integer": "integer",
    "int": "integer",
    "decimal": "decimal",
    "text": "text",
    "string": "text",
    "note": "note",
    "calculate": "calculate",
    "hidden": "hidden",
    "acknowledge": "acknowledge",
    "trigger": "acknowledge",
    "range": "range",
    "geopoint": "geopoint",
    "gps": "geopoint",
    "location": "geopoint",
    "geotrace": "geotrace",
    "geoshape": "geoshape",
    "barcode": "barcode",
    "date": "date",
    "time": "time",
    "dateTime": "dateTime",
    "datetime": "dateTime",
    "start": "start",
    "end": "end",
    "today": "today",
    "deviceid": "deviceid",
    "subscriberid": "subscriberid",
    "simserial": "simserial",
    "phonenumber": "phonenumber",
    "username": "username",
    "email": "email",
    "audit": "audit",
    "osm": "osm",
    "start-geopoint": "start-geopoint",
    "background-geopoint": "background-geopoint",
    "background-audio": "background-audio",
}
# Declarations of external data, not elements of the submission.
_NOT_IN_INSTANCE = {"xml-external", "csv-external"}
_YES = {"yes", "true", "true()", "1"}
_NO = {"no", "false", "false()", "0", ""}


def _type_name(pyxform_type: str, itemset: str | None) -> str:
    select = _SELECT_TYPES.get(pyxform_type)
    if select is not None:
        from_file = bool(itemset) and str(itemset).lower().endswith(_FILE_EXTENSIONS)
        return f"{select}_from_file" if from_file else select
    return _TYPE_NAMES.get(pyxform_type, pyxform_type.replace(" ", "_"))


def _translations_of(value: object) -> Translations:
    """pyxform keeps untranslated text as a string, translated text as {language: text}."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return {str(language): str(text) for language, text in value.items()}
    return {DEFAULT_LANGUAGE: str(value)}


def _media_of(value: object) -> dict[str, Translations]:
    if not isinstance(value, Mapping):
        return {}
    return {str(media_type): _translations_of(files) for media_type, files in value.items()}


def _flag(value: object) -> bool | None:
    """True/False for yes/no style values, None for an expression."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    return None


def _parameters_of(value: object) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(key): str(item) for key, item in value.items()}
    if isinstance(value, str):
        pairs = (part.split("=", 1) for part in value.split() if "=" in part)
        return {key.strip(): item.strip() for key, item in pairs}
    return {}


def _child_path(parent_path: str, name: str) -> str:
    return f"{parent_path.rstrip('/')}/{name}"


def _is_meta_group(node_json: Mapping[str, Any]) -> bool:
    return node_json.get("name") == "meta" and node_json.get("type") == "group"


def build_definition(survey_json: Mapping[str, Any], *, encryption: str = "none") -> FormDefinition:
    """Diiwaan's form model from pyxform's JSON (the output of `workbook_to_json`)."""
    default_language = survey_json.get("default_language")
    entities_version = survey_json.get("entity_version")
    settings = Settings(
        form_id=str(survey_json.get("id_string") or survey_json.get("name") or "data"),
        version=str(survey_json["version"]) if survey_json.get("version") else None,
        title=survey_json.get("title"),
        default_language=(
            None if default_language in (None, DEFAULT_LANGUAGE) else str(default_language)
        ),
        public_key=survey_json.get("public_key") or None,
        submission_url=survey_json.get("submission_url") or None,
        entities_version=(
            str(getattr(entities_version, "value", entities_version)) if entities_version else None
        ),
        instance_name=survey_json.get("instance_name"),
        root_name=str(survey_json.get("name") or "data"),
        encryption=encryption,
    )
    declarations: list[EntityDeclaration] = []
    children = _build_nodes(
        survey_json.get("children", []),
        parent_path=ROOT_PATH,
        repeat_path=None,
        entity_list=None,
        declarations=declarations,
    )
    definition = FormDefinition(
        settings=settings,
        children=children,
        choice_lists={
            str(name): ChoiceList(str(name), [_choice_of(choice) for choice in choices])
            for name, choices in (survey_json.get("choices") or {}).items()
        },
        entity_declarations=declarations,
    )
    for question in definition.iter_questions():
        if question.save_to and question.entity_list:
            declaration = definition.entity_declaration(question.entity_list)
            if declaration is not None:
                declaration.properties[question.save_to] = question.path
    definition.language_order = definition.languages
    return definition


def _build_nodes(
    children_json: Iterable[Mapping[str, Any]],
    *,
    parent_path: str,
    repeat_path: str | None,
    entity_list: str | None,
    declarations: list[EntityDeclaration],
) -> list[Node]:
    children_json = list(children_json)
    # The container's own entity (declared in its meta, which pyxform puts last) receives
    # the save_to answers of its questions; otherwise the nearest ancestor's does.
    for child in children_json:
        if _is_meta_group(child):
            for meta_child in child.get("children", []):
                if meta_child.get("type") == "entity":
                    declaration = _entity_declaration_of(meta_child, parent_path, repeat_path)
                    declarations.append(declaration)
                    entity_list = declaration.list_name

    nodes: list[Node] = []
    for child in children_json:
        if _is_meta_group(child):
            continue
        node_type = str(child.get("type", ""))
        name = str(child.get("name", ""))
        path = _child_path(parent_path, name)
        control = child.get("control") or {}
        bind = child.get("bind") or {}
        if node_type in ("group", "repeat", "loop"):
            is_repeat = node_type == "repeat"
            grandchildren = _build_nodes(
                child.get("children", []),
                parent_path=path,
                repeat_path=path if is_repeat else repeat_path,
                entity_list=entity_list,
                declarations=declarations,
            )
            labels = _translations_of(child.get("label"))
            if is_repeat:
                nodes.append(
                    Repeat(
                        name=name,
                        path=path,
                        labels=labels,
                        relevant=bind.get("relevant"),
                        appearance=control.get("appearance"),
                        repeat_count=control.get("jr:count"),
                        children=grandchildren,
                    )
                )
            else:
                nodes.append(
                    Group(
                        name=name,
                        path=path,
                        labels=labels,
                        relevant=bind.get("relevant"),
                        appearance=control.get("appearance"),
                        children=grandchildren,
                    )
                )
            continue
        if node_type in _NOT_IN_INSTANCE:
            continue
        nodes.append(_question_of(child, path, entity_list))
    return nodes


def _question_of(question_json: Mapping[str, Any], path: str, entity_list: str | None) -> Question:
    bind = question_json.get("bind") or {}
    control = question_json.get("control") or {}
    itemset = question_json.get("itemset")
    type_name = _type_name(str(question_json.get("type", "")), itemset)
    required = _flag(bind.get("required"))
    read_only = _flag(bind.get("readonly"))
    save_to = bind.get("entities:saveto")
    from_file = bool(itemset) and str(itemset).lower().endswith(_FILE_EXTENSIONS)
    list_name = question_json.get("list_name")
    return Question(
        name=str(question_json.get("name", "")),
        path=path,
        type=type_name,
        labels=_translations_of(question_json.get("label")),
        hints=_translations_of(question_json.get("hint")),
        required=required is True,
        required_if=str(bind["required"]) if required is None else None,
        required_message=_translations_of(bind.get("jr:requiredMsg")),
        relevant=bind.get("relevant"),
        constraint=bind.get("constraint"),
        constraint_message=_translations_of(bind.get("jr:constraintMsg")),
        calculate=bind.get("calculate"),
        default=question_json.get("default"),
        read_only=read_only is True or type_name == "note",
        appearance=control.get("appearance"),
        choice_list=str(list_name) if list_name and not from_file else None,
        choice_filter=question_json.get("choice_filter"),
        itemset_file=str(itemset) if from_file else None,
        parameters=_parameters_of(question_json.get("parameters")),
        media=_media_of(question_json.get("media")),
        save_to=str(save_to) if save_to else None,
        entity_list=entity_list if save_to else None,
    )


def _choice_of(choice_json: Mapping[str, Any]) -> Choice:
    reserved = {"name", "label", "media"}
    return Choice(
        name=str(choice_json.get("name", "")),
        labels=_translations_of(choice_json.get("label")),
        media=_media_of(choice_json.get("media")),
        extra={
            str(key): str(value)
            for key, value in choice_json.items()
            if key not in reserved and isinstance(value, str | int | float)
        },
    )


def _entity_declaration_of(
    entity_json: Mapping[str, Any], container_path: str, repeat_path: str | None
) -> EntityDeclaration:
    parts = {str(part.get("name")): part for part in entity_json.get("children", [])}

    def calculation(name: str) -> str | None:
        bind = (parts.get(name) or {}).get("bind") or {}
        value = bind.get("calculate")
        return str(value) if value else None

    return EntityDeclaration(
        list_name=str((parts.get("dataset") or {}).get("value", "")),
        label_expression=calculation("label"),
        entity_id_expression=calculation("id"),
        create_if=calculation("create"),
        update_if=calculation("update"),
        container_path=container_path,
        repeat_path=repeat_path,
    )


# ---------------------------------------------------------------------------------------
# Media the device must download with the form

_MEDIA_REFERENCE = re.compile(r"^jr://(?:images|audio|video|file|file-csv)/(.+)$")


def _media_files(xform_xml: bytes, definition: FormDefinition, has_itemsets: bool) -> list[str]:
    """Files the XForm refers to (jr:// URIs), plus entity lists read for updates."""
    found: dict[str, None] = {}
    root = SafeElementTree.fromstring(xform_xml, forbid_dtd=True)
    for element in root.iter():
        candidates = [element.get("src"), element.text]
        for candidate in candidates:
            if not candidate:
                continue
            match = _MEDIA_REFERENCE.match(candidate.strip())
            if match:
                found[match.group(1)] = None
    for declaration in definition.entity_declarations:
        if declaration.updates:
            found.setdefault(f"{declaration.list_name}.csv", None)
    if has_itemsets:
        found.setdefault("itemsets.csv", None)
    return list(found)
