"""Converting the household registration XLSForm: what the XForm and the definition hold."""

import hashlib
import json

import pytest
from defusedxml import ElementTree

from forms.definition import FormDefinition, Group, Question, Repeat
from forms.xlsform import ConvertedForm, convert, odk_validate_available
from tests.support.xlsforms import (
    HOUSEHOLD_FORM_ID,
    HOUSEHOLD_FORM_VERSION,
    household_registration_xlsx,
)

EN = "English (en)"
SO = "Somali (so)"
XFORMS = "{http://www.w3.org/2002/xforms}"


@pytest.fixture(scope="module")
def household_form() -> ConvertedForm:
    return convert(household_registration_xlsx(), "household_registration.xlsx")


@pytest.fixture(scope="module")
def definition(household_form: ConvertedForm) -> FormDefinition:
    return household_form.definition


def test_settings_sheet_gives_form_id_version_title_and_languages(
    household_form: ConvertedForm,
) -> None:
    settings = household_form.definition.settings
    assert (household_form.form_id, household_form.version) == (
        HOUSEHOLD_FORM_ID,
        HOUSEHOLD_FORM_VERSION,
    )
    assert household_form.title == "Household registration"
    assert settings.default_language == EN
    assert settings.instance_name == "concat('HH ', ${head_name})"
    assert settings.root_name == "data"
    assert settings.encryption == "none"
    assert household_form.definition.languages == [EN, SO]


def test_xform_is_served_with_the_md5_of_its_bytes(household_form: ConvertedForm) -> None:
    root = ElementTree.fromstring(household_form.xform_xml)
    instance_root = root.find(f".//{XFORMS}instance/{XFORMS}data")
    assert instance_root is not None
    assert instance_root.get("id") == HOUSEHOLD_FORM_ID
    assert instance_root.get("version") == HOUSEHOLD_FORM_VERSION
    assert (
        household_form.md5
        == hashlib.md5(household_form.xform_xml, usedforsecurity=False).hexdigest()
    )


def test_household_form_converts_without_warnings(household_form: ConvertedForm) -> None:
    if not odk_validate_available():
        pytest.skip("ODK Validate needs Java")
    assert household_form.warnings == []


def test_questions_have_paths_below_the_root_in_form_order(definition: FormDefinition) -> None:
    paths = [question.path for question in definition.iter_questions()]
    assert paths[:4] == ["/start", "/end", "/location/region", "/location/district"]
    assert "/head/national_id" in paths
    assert paths.index("/hh_size") < paths.index("/member/full_name")
    assert "/meta/instanceID" not in paths


def test_question_types_use_xlsform_names(definition: FormDefinition) -> None:
    types = {question.path: question.type for question in definition.iter_questions()}
    assert types["/location/region"] == "select_one"
    assert types["/location/village"] == "select_one_from_file"
    assert types["/location/gps"] == "geopoint"
    assert types["/location/dwelling_photo"] == "image"
    assert types["/hh_size"] == "integer"
    assert types["/monthly_income_usd"] == "decimal"
    assert types["/member/date_of_birth"] == "date"
    assert types["/member/difficulties"] == "select_multiple"
    assert types["/head/head_name"] == "calculate"
    assert types["/start"] == "start"


def test_labels_hints_and_messages_are_kept_per_language(definition: FormDefinition) -> None:
    gps = definition.question_at("/location/gps")
    hh_size = definition.question_at("/hh_size")
    assert gps is not None and hh_size is not None
    assert gps.labels == {EN: "GPS location of the dwelling", SO: "Goobta GPS ee guriga"}
    assert gps.hints[SO] == "Istaag albaabka guriga"
    assert hh_size.constraint == ". >= 1 and . <= 50"
    assert hh_size.constraint_message == {EN: "Between 1 and 50", SO: "Inta u dhaxaysa 1 iyo 50"}
    assert hh_size.required is True and hh_size.required_if is None


def test_cascading_district_select_keeps_its_filter_and_choice_columns(
    definition: FormDefinition,
) -> None:
    district = definition.question_at("/location/district")
    assert district is not None
    assert district.choice_list == "district"
    assert district.choice_filter == "region=${region}"
    baidoa = definition.choice_lists["district"].choice("baidoa")
    assert baidoa is not None
    assert baidoa.labels == {EN: "Baidoa", SO: "Baydhabo"}
    assert baidoa.extra == {"region": "bay"}


def test_village_select_reads_its_choices_from_the_attached_csv(
    definition: FormDefinition,
) -> None:
    village = definition.question_at("/location/village")
    assert village is not None
    assert village.itemset_file == "villages.csv"
    assert village.choice_list is None
    assert village.choice_filter == "district=${district}"
    assert definition.media_files == ["villages.csv"]


def test_groups_and_the_member_repeat_are_container_nodes(definition: FormDefinition) -> None:
    location = definition.node_at("/location")
    member = definition.node_at("/member")
    assert isinstance(location, Group)
    assert isinstance(member, Repeat)
    assert member.labels[SO] == "Xubin qoyska ah"
    assert [child.name for child in member.children] == [
        "full_name",
        "sex",
        "date_of_birth",
        "relationship",
        "disability",
        "difficulties",
    ]
    assert all(isinstance(child, Question) for child in member.children)
    assert definition.repeat_paths() == ["/member"]


def test_household_entity_is_declared_in_the_forms_meta_with_its_properties(
    definition: FormDefinition,
) -> None:
    households = definition.entity_declaration("households")
    assert households is not None
    assert households.container_path == "/"
    assert households.repeat_path is None
    assert households.label_expression == "${head_name}"
    assert households.creates and not households.updates
    assert households.properties == {
        "district": "/location/district",
        "village": "/location/village",
        "head_name": "/head/head_name",
        "national_id": "/head/national_id",
        "phone": "/head/phone",
        "hh_size": "/hh_size",
    }


def test_member_repeat_becomes_a_repeat_node_with_entity_declaration(
    definition: FormDefinition,
) -> None:
    members = definition.entity_declaration("members")
    assert members is not None
    assert members.container_path == "/member"
    assert members.repeat_path == "/member"
    assert members.properties["full_name"] == "/member/full_name"
    assert members.properties["date_of_birth"] == "/member/date_of_birth"
    full_name = definition.question_at("/member/full_name")
    assert full_name is not None
    assert (full_name.save_to, full_name.entity_list) == ("full_name", "members")
    assert definition.entity_lists == ["households", "members"]
    assert definition.settings.entities_version == "2025.1.0"


def test_xform_puts_one_member_entity_in_each_repeat_instance(
    household_form: ConvertedForm,
) -> None:
    root = ElementTree.fromstring(household_form.xform_xml)
    member_entities = root.findall(
        f".//{XFORMS}instance/{XFORMS}data/{XFORMS}member/{XFORMS}meta/{XFORMS}entity"
    )
    assert member_entities and {e.get("dataset") for e in member_entities} == {"members"}
    household_entity = root.find(f".//{XFORMS}instance/{XFORMS}data/{XFORMS}meta/{XFORMS}entity")
    assert household_entity is not None
    assert household_entity.get("dataset") == "households"


def test_definition_survives_a_json_round_trip(definition: FormDefinition) -> None:
    stored = json.dumps(definition.to_dict())
    assert FormDefinition.from_dict(json.loads(stored)) == definition
    assert json.loads(stored)["format"] == 1


def test_definition_from_an_unknown_format_is_refused(definition: FormDefinition) -> None:
    stored = definition.to_dict()
    stored["format"] = 99
    with pytest.raises(ValueError, match="format 99"):
        FormDefinition.from_dict(stored)
