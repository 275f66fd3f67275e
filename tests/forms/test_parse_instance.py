"""Reading a submission against its form: typed answers, attachments, entity actions."""

import json

import pytest

from forms.definition import FormDefinition
from forms.instance import InstanceError, ParsedInstance, parse_instance, typed_value
from forms.xlsform import convert
from tests.support.xlsforms import (
    MemberAnswers,
    household_instance_xml,
    household_registration_xlsx,
    xlsx_from_sheets,
)

INSTANCE_ID = "uuid:9d4f6a2b-3c1e-4f5a-8b7d-2e6c0a1f3b59"
HOUSEHOLD_ID = "5b0e7c2a-9d41-4f3e-a8c6-1e2d3f4a5b6c"
MEMBER_IDS = [
    "0f8e1d2c-3b4a-4596-8877-66554433a2b1",
    "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
]
BRANCH_ID = "7c6b5a49-3827-4165-9f8e-7d6c5b4a3928"


@pytest.fixture(scope="module")
def definition() -> FormDefinition:
    return convert(
        household_registration_xlsx(), "household_registration.xlsx", validate=False
    ).definition


@pytest.fixture(scope="module")
def update_definition() -> FormDefinition:
    xlsx = xlsx_from_sheets(
        {
            "survey": [
                ["type", "name", "label", "save_to"],
                ["select_one_from_file households.csv", "household", "Household", None],
                ["integer", "hh_size", "Household size now", "hh_size"],
                ["text", "phone", "New phone number", "phone"],
            ],
            "entities": [
                ["list_name", "label", "entity_id", "update_if"],
                ["households", None, "${household}", "true()"],
            ],
            "settings": [["form_id", "version"], ["household_update", "2"]],
        }
    )
    return convert(xlsx, "household_update.xlsx", validate=False).definition


def two_members() -> list[MemberAnswers]:
    return [
        MemberAnswers(
            "Xaliimo Maxamed Cali", "female", "1979-01-15", "head", "no", entity_id=MEMBER_IDS[0]
        ),
        MemberAnswers(
            "Cumar Xasan Nuur",
            "male",
            "2010-09-30",
            "child",
            "yes",
            ["seeing", "hearing"],
            entity_id=MEMBER_IDS[1],
        ),
    ]


@pytest.fixture(scope="module")
def registration(definition: FormDefinition) -> ParsedInstance:
    xml = household_instance_xml(
        instance_id=INSTANCE_ID,
        household_entity_id=HOUSEHOLD_ID,
        members=two_members(),
        head_grandfather_name="",
    )
    return parse_instance(xml, definition)


def test_answers_are_typed_by_their_questions(registration: ParsedInstance) -> None:
    data = registration.data
    assert data["hh_size"] == 2
    assert data["monthly_income_usd"] == 120.5
    assert data["start"] == "2026-11-26T09:14:03.120+03:00"
    assert data["location"]["district"] == "hodan"
    assert data["location"]["gps"] == {
        "latitude": 2.0469,
        "longitude": 45.3182,
        "altitude": 12.0,
        "accuracy": 4.5,
    }
    assert registration.problems == []


def test_empty_answers_become_none(registration: ParsedInstance) -> None:
    assert registration.data["head"]["head_grandfather_name"] is None


def test_repeats_become_lists_of_dicts_and_multiple_selects_lists(
    registration: ParsedInstance,
) -> None:
    members = registration.data["member"]
    assert [member["full_name"] for member in members] == [
        "Xaliimo Maxamed Cali",
        "Cumar Xasan Nuur",
    ]
    assert members[1]["date_of_birth"] == "2010-09-30"
    assert members[1]["difficulties"] == ["seeing", "hearing"]
    assert members[0]["difficulties"] is None
    assert "meta" not in members[0]  # the entity block is reported as an entity action


def test_parsed_data_is_plain_json(registration: ParsedInstance) -> None:
    assert json.loads(json.dumps(registration.data)) == registration.data


def test_attachments_are_the_file_names_of_media_answers(registration: ParsedInstance) -> None:
    assert registration.attachments == ["dwelling-1732620000000.jpg"]
    assert registration.data["location"]["dwelling_photo"] == "dwelling-1732620000000.jpg"


def test_household_entity_in_meta_carries_its_saved_properties(
    registration: ParsedInstance,
) -> None:
    household = registration.entities[0]
    assert (household.dataset, household.id) == ("households", HOUSEHOLD_ID)
    assert household.create and not household.update
    assert household.label == "Faadumo Cali"
    assert household.instance_path == "/"
    assert household.repeat_index == []
    assert household.properties == {
        "district": "hodan",
        "village": "taleex",
        "head_name": "Faadumo Cali",
        "national_id": "102938475",
        "phone": "0615123456",
        "hh_size": "2",
    }


def test_each_member_repeat_instance_creates_one_member_entity(
    registration: ParsedInstance,
) -> None:
    members = [action for action in registration.entities if action.dataset == "members"]
    assert [member.id for member in members] == MEMBER_IDS
    assert [member.instance_path for member in members] == ["/member[1]", "/member[2]"]
    assert [member.repeat_index for member in members] == [[0], [1]]
    assert members[1].label == "Cumar Xasan Nuur"
    assert members[1].properties == {
        "full_name": "Cumar Xasan Nuur",
        "sex": "male",
        "date_of_birth": "2010-09-30",
        "relationship": "child",
        "disability": "yes",
    }


def test_the_household_entity_comes_before_its_members(registration: ParsedInstance) -> None:
    assert [action.dataset for action in registration.entities] == [
        "households",
        "members",
        "members",
    ]


def test_a_bad_integer_is_recorded_as_a_problem_and_kept_as_text(
    definition: FormDefinition,
) -> None:
    parsed = parse_instance(household_instance_xml(hh_size="abc"), definition)
    assert parsed.data["hh_size"] == "abc"
    assert "/hh_size: 'abc' is not an integer" in parsed.problems


def test_a_bad_date_in_a_repeat_is_named_by_its_instance(definition: FormDefinition) -> None:
    members = [
        {"full_name": "Asha Cali", "date_of_birth": "1990-05-17"},
        {"full_name": "Nuur Cali", "date_of_birth": "17/05/1990"},
    ]
    parsed = parse_instance(household_instance_xml(members=members), definition)
    assert parsed.problems == ["/member[2]/date_of_birth: '17/05/1990' is not a date (YYYY-MM-DD)"]
    assert parsed.data["member"][1]["date_of_birth"] == "17/05/1990"


def test_an_impossible_gps_location_is_a_problem(definition: FormDefinition) -> None:
    xml = household_instance_xml(gps=(123.0, 45.0, 0.0, 5.0))
    parsed = parse_instance(xml, definition)
    assert any(problem.startswith("/location/gps:") for problem in parsed.problems)


def test_unknown_elements_are_kept_as_text(definition: FormDefinition) -> None:
    xml = household_instance_xml().replace(
        b"<hh_size>", b"<enumerator_note>Gate was locked</enumerator_note><hh_size>"
    )
    parsed = parse_instance(xml, definition)
    assert parsed.data["enumerator_note"] == "Gate was locked"


def test_an_entity_whose_condition_did_not_hold_asks_for_nothing(
    definition: FormDefinition,
) -> None:
    xml = household_instance_xml(household_entity_id=HOUSEHOLD_ID).replace(
        f'<entity create="1" dataset="households" id="{HOUSEHOLD_ID}">'.encode(),
        f'<entity create="0" dataset="households" id="{HOUSEHOLD_ID}">'.encode(),
    )
    parsed = parse_instance(xml, definition)
    assert "households" not in {action.dataset for action in parsed.entities}


def test_an_entity_id_that_is_not_a_uuid_is_a_problem(definition: FormDefinition) -> None:
    parsed = parse_instance(household_instance_xml(household_entity_id="household-17"), definition)
    assert "/meta/entity: entity id 'household-17' is not a v4 UUID" in parsed.problems


def test_update_reads_base_version_trunk_version_and_branch(
    update_definition: FormDefinition,
) -> None:
    xml = f"""<data id="household_update" version="2">
  <household>{HOUSEHOLD_ID}</household><hh_size>6</hh_size><phone/>
  <meta>
    <instanceID>{INSTANCE_ID}</instanceID>
    <entity dataset="households" id="{HOUSEHOLD_ID}" update="1" baseVersion="3"
            trunkVersion="2" branchId="{BRANCH_ID}"><label/></entity>
  </meta>
</data>""".encode()
    parsed = parse_instance(xml, update_definition)
    [action] = parsed.entities
    assert action.update and not action.create
    assert (action.base_version, action.trunk_version, action.branch_id) == (3, 2, BRANCH_ID)
    assert action.label is None  # a blank label on update keeps the entity's label
    assert action.properties == {"hh_size": "6", "phone": None}
    assert parsed.data["hh_size"] == 6
    assert parsed.problems == []


def test_a_submission_for_another_form_is_flagged(update_definition: FormDefinition) -> None:
    parsed = parse_instance(household_instance_xml(), update_definition)
    assert any("not 'household_update'" in problem for problem in parsed.problems)


def test_an_encrypted_submission_must_be_decrypted_first(definition: FormDefinition) -> None:
    manifest = f"""<data id="household_registration" encrypted="yes">
<base64EncryptedKey>a2V5</base64EncryptedKey><encryptedXmlFile>submission.xml.enc</encryptedXmlFile>
<meta><instanceID>{INSTANCE_ID}</instanceID></meta></data>""".encode()
    with pytest.raises(InstanceError, match="decrypt"):
        parse_instance(manifest, definition)


def test_hostile_xml_is_refused_by_parse_instance_too(definition: FormDefinition) -> None:
    xxe = b'<!DOCTYPE data [<!ENTITY x SYSTEM "file:///etc/passwd">]><data id="f">&x;</data>'
    with pytest.raises(InstanceError, match="not allowed"):
        parse_instance(xxe, definition)


@pytest.mark.parametrize(
    ("question_type", "raw", "expected"),
    [
        ("integer", "-12", -12),
        ("decimal", "3", 3.0),
        ("range", "2.5", 2.5),
        ("time", "09:14:00.000+03:00", "09:14:00.000+03:00"),
        ("select_multiple", " a  b ", ["a", "b"]),
        (
            "geotrace",
            "2.0 45.0 0 5;2.1 45.1",
            [
                {"latitude": 2.0, "longitude": 45.0, "altitude": 0.0, "accuracy": 5.0},
                {"latitude": 2.1, "longitude": 45.1, "altitude": None, "accuracy": None},
            ],
        ),
        ("text", "  spaced  ", "  spaced  "),
    ],
)
def test_values_are_typed(question_type: str, raw: str, expected: object) -> None:
    assert typed_value(question_type, raw) == (expected, None)


@pytest.mark.parametrize(
    ("question_type", "raw"),
    [("integer", "1.5"), ("decimal", "nan"), ("dateTime", "yesterday"), ("geopoint", "2.0")],
)
def test_values_that_do_not_fit_are_returned_raw_with_a_problem(
    question_type: str, raw: str
) -> None:
    value, problem = typed_value(question_type, raw)
    assert value == raw
    assert problem is not None and repr(raw) in problem
