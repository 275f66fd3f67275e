"""Mistakes in a form's content are reported with the sheet, row and column to fix."""

import pytest

from forms import xlsform
from forms.xlsform import FormConversionError, Problem, convert, odk_validate_available
from tests.support.xlsforms import xlsx_from_sheets

SETTINGS = [["form_id", "version"], ["checks", "1"]]


def conversion_errors(
    sheets: dict[str, list[list[str | None]]], *, validate: bool = False
) -> list[Problem]:
    with pytest.raises(FormConversionError) as caught:
        convert(
            xlsx_from_sheets({**sheets, "settings": SETTINGS}), "checks.xlsx", validate=validate
        )
    return caught.value.errors


def test_unknown_question_type_names_its_row_and_the_type_column() -> None:
    errors = conversion_errors(
        {
            "survey": [
                ["type", "name", "label"],
                ["text", "head_name", "Head of household"],
                ["integr", "hh_size", "Household size"],
            ]
        }
    )
    assert (errors[0].sheet, errors[0].row, errors[0].column) == ("survey", 3, "type")
    assert "integr" in errors[0].message


def test_duplicate_question_name_in_the_same_group_names_the_second_row() -> None:
    errors = conversion_errors(
        {
            "survey": [
                ["type", "name", "label"],
                ["begin_group", "head", "Head"],
                ["text", "first_name", "First name"],
                ["text", "first_name", "Father's name"],
                ["end_group", "head", None],
            ]
        }
    )
    assert (errors[0].sheet, errors[0].row, errors[0].column) == ("survey", 4, "name")
    assert "'first_name'" in errors[0].message
    assert not errors[0].message.startswith("[row")


def test_the_same_name_in_different_groups_is_allowed() -> None:
    xlsx = xlsx_from_sheets(
        {
            "survey": [
                ["type", "name", "label"],
                ["begin_group", "head", "Head"],
                ["text", "phone", "Phone"],
                ["end_group", "head", None],
                ["begin_group", "spouse", "Spouse"],
                ["text", "phone", "Phone"],
                ["end_group", "spouse", None],
            ],
            "settings": SETTINGS,
        }
    )
    definition = convert(xlsx, "checks.xlsx", validate=False).definition
    assert definition.question_at("/head/phone") is not None
    assert definition.question_at("/spouse/phone") is not None


def test_select_from_a_missing_choice_list_names_the_row_and_list() -> None:
    errors = conversion_errors(
        {
            "survey": [
                ["type", "name", "label"],
                ["select_one yes_no", "consent", "Consent"],
                ["select_one sexx", "sex", "Sex"],
            ],
            "choices": [
                ["list_name", "name", "label"],
                ["yes_no", "yes", "Yes"],
                ["yes_no", "no", "No"],
            ],
        }
    )
    assert (errors[0].sheet, errors[0].row, errors[0].column) == ("survey", 3, "type")
    assert "sexx" in errors[0].message


def test_reference_to_an_unknown_question_names_the_column() -> None:
    errors = conversion_errors(
        {
            "survey": [
                ["type", "name", "label", "relevant"],
                ["integer", "hh_size", "Household size", None],
                ["text", "note_big", "Why so many?", "${hh_sise} > 20"],
            ]
        }
    )
    assert (errors[0].sheet, errors[0].row, errors[0].column) == ("survey", 3, "relevant")
    assert "hh_sise" in errors[0].message


def test_entities_sheet_mistakes_name_the_entities_sheet() -> None:
    errors = conversion_errors(
        {
            "survey": [["type", "name", "label"], ["text", "head_name", "Head"]],
            "entities": [["list_name", "label"], ["households", None]],
        }
    )
    assert (errors[0].sheet, errors[0].row) == ("entities", 2)
    assert "label" in errors[0].message


def test_save_to_an_undeclared_entity_list_names_the_survey_row() -> None:
    errors = conversion_errors(
        {
            "survey": [
                ["type", "name", "label", "save_to"],
                ["text", "head_name", "Head", "households#head_name"],
                ["text", "full_name", "Member", "memberz#full_name"],
            ],
            "entities": [
                ["list_name", "label"],
                ["households", "${head_name}"],
                ["members", "${full_name}"],
            ],
        }
    )
    assert (errors[0].sheet, errors[0].row, errors[0].column) == ("survey", 3, "save_to")
    assert "memberz" in errors[0].message


def test_a_workbook_without_a_survey_sheet_says_so() -> None:
    with pytest.raises(FormConversionError) as caught:
        convert(
            xlsx_from_sheets({"servey": [["type", "name"]], "choices": [["list_name"]]}),
            "x.xlsx",
            validate=False,
        )
    assert "survey" in caught.value.errors[0].message


def test_problems_render_as_sheet_row_column_and_message() -> None:
    problem = Problem("error", "Unknown question type 'integr'.", "survey", 3, "type")
    assert str(problem) == "sheet 'survey', row 3, column 'type': Unknown question type 'integr'."
    assert problem.to_dict()["row"] == 3


@pytest.mark.skipif(not odk_validate_available(), reason="ODK Validate needs Java")
def test_odk_validate_finds_broken_expressions_and_names_the_row() -> None:
    errors = conversion_errors(
        {
            "survey": [
                ["type", "name", "label", "constraint"],
                ["integer", "hh_size", "Household size", None],
                ["integer", "children", "Children", "((. < ${hh_size}"],
            ]
        },
        validate=True,
    )
    assert errors[0].message.startswith("ODK Validate:")
    assert "parentheses" in errors[0].message
    assert (errors[0].sheet, errors[0].row) == ("survey", 3)
    assert "org.javarosa" not in errors[0].message


def test_without_java_odk_validate_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(xlsform.shutil, "which", lambda command: None)
    xlsx = xlsx_from_sheets(
        {"survey": [["type", "name", "label"], ["text", "name", "Name"]], "settings": SETTINGS}
    )
    converted = convert(xlsx, "checks.xlsx")
    assert any("ODK Validate was not run" in warning.message for warning in converted.warnings)


def test_pyxform_warnings_come_back_as_warnings_with_rows() -> None:
    xlsx = xlsx_from_sheets(
        {
            "survey": [
                ["type", "name", "label"],
                ["image", "photo", "Photo of the dwelling"],
            ],
            "settings": SETTINGS,
        }
    )
    converted = convert(xlsx, "checks.xlsx", validate=False)
    max_pixels = [w for w in converted.warnings if "max-pixels" in w.message]
    assert max_pixels and (max_pixels[0].sheet, max_pixels[0].row) == ("survey", 2)


def test_a_form_without_version_converts_with_a_warning() -> None:
    xlsx = xlsx_from_sheets({"survey": [["type", "name", "label"], ["text", "name", "Name"]]})
    converted = convert(xlsx, "no_settings.xlsx", validate=False)
    assert converted.version is None
    assert converted.form_id == "no_settings"  # pyxform's fallback: the file name
    assert any(w.column == "version" for w in converted.warnings)


def test_csv_xlsforms_are_accepted() -> None:
    csv_form = (
        b"survey,type,name,label\n"
        b",text,head_name,Head of household\n"
        b",integer,hh_size,Household size\n"
        b"settings,form_id,version\n"
        b",csv_form,3\n"
    )
    converted = convert(csv_form, "csv_form.csv", validate=False)
    assert (converted.form_id, converted.version) == ("csv_form", "3")
    question = converted.definition.question_at("/hh_size")
    assert question is not None and question.type == "integer"
