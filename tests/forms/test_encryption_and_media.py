"""Managed encryption settings in the XForm, and the files a device must download."""

from xml.etree.ElementTree import Element

import pytest
from defusedxml import ElementTree

from forms.definition import FormDefinition
from forms.xlsform import convert
from tests.support.xlsforms import (
    SELF_MANAGED_PUBLIC_KEY,
    minimal_form_xlsx,
    xlsx_from_sheets,
)

XFORMS = "{http://www.w3.org/2002/xforms}"
SERVER_KEY = SELF_MANAGED_PUBLIC_KEY[::-1]  # any distinct base64 text stands in for it
SUBMISSION_URL = "https://diiwaan.example.so/submission"


def submission_element(xform_xml: bytes) -> Element | None:
    return ElementTree.fromstring(xform_xml).find(f".//{XFORMS}model/{XFORMS}submission")


def test_managed_encryption_puts_the_server_key_and_action_in_the_xform() -> None:
    converted = convert(
        minimal_form_xlsx("registration", "7"),
        "registration.xlsx",
        public_key=SERVER_KEY,
        submission_url=SUBMISSION_URL,
        validate=False,
    )
    submission = submission_element(converted.xform_xml)
    assert submission is not None
    assert submission.get("base64RsaPublicKey") == SERVER_KEY
    assert submission.get("action") == SUBMISSION_URL
    assert converted.encryption == "managed"
    assert converted.definition.settings.public_key == SERVER_KEY


def test_a_pem_style_key_with_line_breaks_is_inserted_as_one_line() -> None:
    wrapped = "\n".join(SERVER_KEY[i : i + 64] for i in range(0, len(SERVER_KEY), 64))
    converted = convert(minimal_form_xlsx(), "minimal.xlsx", public_key=wrapped, validate=False)
    submission = submission_element(converted.xform_xml)
    assert submission is not None and submission.get("base64RsaPublicKey") == SERVER_KEY


def test_a_form_with_its_own_key_keeps_it_and_is_reported_self_managed() -> None:
    converted = convert(
        minimal_form_xlsx(public_key=SELF_MANAGED_PUBLIC_KEY),
        "own_key.xlsx",
        public_key=SERVER_KEY,
        submission_url=SUBMISSION_URL,
        validate=False,
    )
    submission = submission_element(converted.xform_xml)
    assert submission is not None
    assert submission.get("base64RsaPublicKey") == SELF_MANAGED_PUBLIC_KEY
    assert converted.definition.settings.public_key == SELF_MANAGED_PUBLIC_KEY
    assert converted.encryption == "self-managed"
    assert any(warning.column == "public_key" for warning in converted.warnings)


def test_without_a_key_the_form_is_not_encrypted() -> None:
    converted = convert(minimal_form_xlsx(), "minimal.xlsx", validate=False)
    assert submission_element(converted.xform_xml) is None
    assert converted.encryption == "none"
    assert converted.definition.settings.public_key is None


@pytest.fixture(scope="module")
def media_form_definition() -> FormDefinition:
    xlsx = xlsx_from_sheets(
        {
            "survey": [
                ["type", "name", "label", "image", "calculation"],
                ["select_one_from_file households.csv", "household", "Household", None, None],
                ["select_one water", "water", "Water source", "water.png", None],
                ["calculate", "price", None, None, "pulldata('prices', 'price', 'item', 'rice')"],
                ["integer", "hh_size", "Household size", None, None],
            ],
            "choices": [
                ["list_name", "name", "label", "image"],
                ["water", "well", "Well", "well.jpg"],
                ["water", "tap", "Tap", "tap.jpg"],
            ],
            "entities": [
                ["list_name", "label", "entity_id", "update_if"],
                ["households", None, "${household}", "true()"],
            ],
            "settings": [["form_id", "version"], ["household_update", "2"]],
        }
    )
    return convert(xlsx, "household_update.xlsx", validate=False).definition


def test_media_files_list_images_csv_data_and_entity_lists(
    media_form_definition: FormDefinition,
) -> None:
    media_files = media_form_definition.media_files
    assert set(media_files) == {"households.csv", "water.png", "well.jpg", "tap.jpg", "prices.csv"}


def test_an_update_entity_declaration_is_recorded_as_such(
    media_form_definition: FormDefinition,
) -> None:
    declaration = media_form_definition.entity_declaration("households")
    assert declaration is not None
    assert declaration.entity_id_expression == "${household}"
    assert declaration.update_if == "true()"
    assert declaration.updates and not declaration.creates
