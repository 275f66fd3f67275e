"""Realistic XLSForms and submissions for tests and demos, built in memory.

`household_registration_xlsx` is the Somali-style household registration that the
registry is declared with (entity lists `households` and `members`), and
`household_instance_xml` is what ODK Collect submits for it. `xlsx_from_sheets` and
`minimal_form_xlsx` build odd or tiny forms for tests that need them.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from openpyxl import Workbook

CellValue = str | int | float | bool | None

HOUSEHOLD_FORM_ID = "household_registration"
HOUSEHOLD_FORM_VERSION = "2026112601"
VILLAGES_CSV_NAME = "villages.csv"

EN = "English (en)"
SO = "Somali (so)"

# (region, district, English label, Somali label)
DISTRICTS: list[tuple[str, str, str, str]] = [
    ("banadir", "hodan", "Hodan", "Hodan"),
    ("banadir", "wadajir", "Wadajir", "Wadajir"),
    ("banadir", "karaan", "Karaan", "Kaaraan"),
    ("bay", "baidoa", "Baidoa", "Baydhabo"),
    ("bay", "burhakaba", "Burhakaba", "Buurhakaba"),
    ("gedo", "luuq", "Luuq", "Luuq"),
    ("gedo", "dollow", "Dollow", "Doolow"),
]

REGIONS: list[tuple[str, str, str]] = [
    ("banadir", "Banadir", "Banaadir"),
    ("bay", "Bay", "Baay"),
    ("gedo", "Gedo", "Gedo"),
]

# (village name, label, district) — the rows of villages.csv
VILLAGES: list[tuple[str, str, str]] = [
    ("taleex", "Taleex", "hodan"),
    ("tarabuunka", "Tarabuunka", "hodan"),
    ("halane", "Halane", "wadajir"),
    ("madina", "Madina", "wadajir"),
    ("suuq_holaha", "Suuq Holaha", "karaan"),
    ("isha", "Isha", "baidoa"),
    ("berdaale", "Berdaale", "baidoa"),
    ("daynuunay", "Daynuunay", "burhakaba"),
    ("kabasa", "Kabasa", "dollow"),
    ("qansax_dheere", "Qansax Dheere", "dollow"),
    ("bulo_hawo", "Bulo Hawo", "luuq"),
]

RELATIONSHIPS: list[tuple[str, str, str]] = [
    ("head", "Head of household", "Madaxa qoyska"),
    ("spouse", "Spouse", "Xaas"),
    ("child", "Son or daughter", "Wiil ama gabar"),
    ("parent", "Father or mother", "Aabe ama hooyo"),
    ("sibling", "Brother or sister", "Walaal"),
    ("grandchild", "Grandchild", "Awow/ayeeyo ka dhashay"),
    ("other_relative", "Other relative", "Qaraabo kale"),
    ("not_related", "Not related", "Aan qaraabo ahayn"),
]

DIFFICULTIES: list[tuple[str, str, str]] = [
    ("seeing", "Seeing", "Aragga"),
    ("hearing", "Hearing", "Maqalka"),
    ("walking", "Walking or climbing steps", "Socodka"),
    ("remembering", "Remembering or concentrating", "Xusuusta"),
    ("self_care", "Self-care", "Is daryeelka"),
    ("communicating", "Communicating", "Isgaarsiinta"),
]

# A throwaway RSA-2048 public key (base64 DER SubjectPublicKeyInfo) for forms that bring
# their own key; its private half was discarded.
SELF_MANAGED_PUBLIC_KEY = (
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAoIO7C6B/ogxI0f02D8dx7aEmXDzWlNoi/gCW"
    "BB2g8Wb/zkO+qSeDZt1hgA8M5mCOgyajO3JxxqQij+TvcFsMfpn7rsQhsCFEIRURl81e2/sfBBFnxJJp"
    "iOpHHopvkDG1LZ6jDwiHSj9mCtrgjHqeLLjQJPEzi/L1v+DQAJPm3kIadZ1qKfWDJD+Wq1XFVr7YeIAQ"
    "Br4ELQJowzFLG1DVvUjMXdwb64lcWqQGmdM4+dw8Y2iuxXH+h6ZuhAgYhzt0MPzj9VCE+cWyHh9XGK10"
    "rme53SMBLcK6CkiMe47I095eEqYotNl/Vp91pabE0PTYu68lp29kPVLZoD0zbdaRZwIDAQAB"
)

SURVEY_COLUMNS: list[str] = [
    "type",
    "name",
    f"label::{EN}",
    f"label::{SO}",
    f"hint::{EN}",
    f"hint::{SO}",
    "required",
    "relevant",
    "constraint",
    f"constraint_message::{EN}",
    f"constraint_message::{SO}",
    "choice_filter",
    "appearance",
    "calculation",
    "parameters",
    "save_to",
]


def _survey_row(**columns: CellValue) -> list[CellValue]:
    """One survey row, given by column name (`label_en`, `hint_so`, … for translations)."""
    aliases = {
        "label_en": f"label::{EN}",
        "label_so": f"label::{SO}",
        "hint_en": f"hint::{EN}",
        "hint_so": f"hint::{SO}",
        "constraint_message_en": f"constraint_message::{EN}",
        "constraint_message_so": f"constraint_message::{SO}",
    }
    by_header = {aliases.get(key, key): value for key, value in columns.items()}
    unknown = set(by_header) - set(SURVEY_COLUMNS)
    if unknown:
        raise ValueError(f"unknown survey columns: {sorted(unknown)}")
    return [by_header.get(header) for header in SURVEY_COLUMNS]


def household_survey_rows() -> list[list[CellValue]]:
    """The survey sheet of the household registration form, header first."""
    row = _survey_row
    return [
        list[CellValue](SURVEY_COLUMNS),
        row(type="start", name="start"),
        row(type="end", name="end"),
        row(
            type="begin_group",
            name="location",
            label_en="Location",
            label_so="Goobta",
        ),
        row(
            type="select_one region",
            name="region",
            label_en="Region",
            label_so="Gobolka",
            required="yes",
        ),
        row(
            type="select_one district",
            name="district",
            label_en="District",
            label_so="Degmada",
            required="yes",
            choice_filter="region=${region}",
            save_to="households#district",
        ),
        row(
            type=f"select_one_from_file {VILLAGES_CSV_NAME}",
            name="village",
            label_en="Village",
            label_so="Tuulada",
            required="yes",
            choice_filter="district=${district}",
            save_to="households#village",
        ),
        row(
            type="geopoint",
            name="gps",
            label_en="GPS location of the dwelling",
            label_so="Goobta GPS ee guriga",
            hint_en="Stand at the door of the dwelling",
            hint_so="Istaag albaabka guriga",
        ),
        row(
            type="image",
            name="dwelling_photo",
            label_en="Photo of the dwelling",
            label_so="Sawirka guriga",
            parameters="max-pixels=1024",
        ),
        row(type="end_group", name="location"),
        row(
            type="begin_group",
            name="head",
            label_en="Head of household",
            label_so="Madaxa qoyska",
        ),
        row(
            type="text",
            name="head_first_name",
            label_en="First name",
            label_so="Magaca koowaad",
            required="yes",
        ),
        row(
            type="text",
            name="head_father_name",
            label_en="Father's name",
            label_so="Magaca aabaha",
            required="yes",
        ),
        row(
            type="text",
            name="head_grandfather_name",
            label_en="Grandfather's name",
            label_so="Magaca awowga",
        ),
        row(
            type="calculate",
            name="head_name",
            calculation=(
                "normalize-space(concat(${head_first_name}, ' ', ${head_father_name},"
                " ' ', ${head_grandfather_name}))"
            ),
            save_to="households#head_name",
        ),
        row(
            type="text",
            name="national_id",
            label_en="National ID number",
            label_so="Lambarka aqoonsiga qaranka",
            constraint="regex(., '^[0-9]{8,12}$')",
            constraint_message_en="8 to 12 digits",
            constraint_message_so="8 ilaa 12 god",
            save_to="households#national_id",
        ),
        row(
            type="text",
            name="phone",
            label_en="Phone number",
            label_so="Lambarka taleefanka",
            appearance="numbers",
            constraint="regex(., '^0?6[0-9]{8}$')",
            constraint_message_en="A Somali mobile number, e.g. 0615123456",
            constraint_message_so="Lambar mobile Soomaali ah, tusaale 0615123456",
            save_to="households#phone",
        ),
        row(type="end_group", name="head"),
        row(
            type="integer",
            name="hh_size",
            label_en="How many people live in this household?",
            label_so="Immisa qof ayaa ku nool qoyskan?",
            required="yes",
            constraint=". >= 1 and . <= 50",
            constraint_message_en="Between 1 and 50",
            constraint_message_so="Inta u dhaxaysa 1 iyo 50",
            save_to="households#hh_size",
        ),
        row(
            type="decimal",
            name="monthly_income_usd",
            label_en="Household income last month (USD)",
            label_so="Dakhliga qoyska bishii hore (USD)",
            constraint=". >= 0",
        ),
        row(
            type="begin_repeat",
            name="member",
            label_en="Household member",
            label_so="Xubin qoyska ah",
        ),
        row(
            type="text",
            name="full_name",
            label_en="Full name",
            label_so="Magaca oo buuxa",
            required="yes",
            save_to="members#full_name",
        ),
        row(
            type="select_one sex",
            name="sex",
            label_en="Sex",
            label_so="Jinsiga",
            required="yes",
            save_to="members#sex",
        ),
        row(
            type="date",
            name="date_of_birth",
            label_en="Date of birth",
            label_so="Taariikhda dhalashada",
            constraint=". <= today()",
            save_to="members#date_of_birth",
        ),
        row(
            type="select_one relationship",
            name="relationship",
            label_en="Relationship to the head of household",
            label_so="Xiriirka madaxa qoyska",
            required="yes",
            save_to="members#relationship",
        ),
        row(
            type="select_one yes_no",
            name="disability",
            label_en="Does this person have a disability?",
            label_so="Qofkani ma leeyahay naafonimo?",
            save_to="members#disability",
        ),
        row(
            type="select_multiple difficulty",
            name="difficulties",
            label_en="Which difficulties?",
            label_so="Dhibaatooyinkee?",
            relevant="${disability} = 'yes'",
        ),
        row(type="end_repeat", name="member"),
    ]


def household_choices_rows() -> list[list[CellValue]]:
    """The choices sheet of the household registration form, header first."""
    rows: list[list[CellValue]] = [["list_name", "name", f"label::{EN}", f"label::{SO}", "region"]]
    rows += [["region", name, en, so, None] for name, en, so in REGIONS]
    rows += [["district", name, en, so, region] for region, name, en, so in DISTRICTS]
    rows += [["sex", "female", "Female", "Dheddig", None], ["sex", "male", "Male", "Lab", None]]
    rows += [["relationship", name, en, so, None] for name, en, so in RELATIONSHIPS]
    rows += [["yes_no", "yes", "Yes", "Haa", None], ["yes_no", "no", "No", "Maya", None]]
    rows += [["difficulty", name, en, so, None] for name, en, so in DIFFICULTIES]
    return rows


def household_entities_rows() -> list[list[CellValue]]:
    """The entities sheet: one household per submission, one member per repeat instance."""
    return [
        ["list_name", "label", "entity_id", "create_if", "update_if", "repeat"],
        ["households", "${head_name}", None, None, None, None],
        ["members", "${full_name}", None, None, None, "member"],
    ]


def household_registration_xlsx(
    version: str = HOUSEHOLD_FORM_VERSION,
    form_id: str = HOUSEHOLD_FORM_ID,
    public_key: str | None = None,
    *,
    title: str = "Household registration",
    submission_url: str | None = None,
    with_entities: bool = True,
) -> bytes:
    """The household registration XLSForm as .xlsx bytes.

    English and Somali labels; region → district cascade (choice_filter on the choices
    sheet), village from the `villages.csv` attachment; head of household, national ID,
    phone, GPS, photo of the dwelling, household size; a `member` repeat; entity lists
    `households` and `members` (one member entity per repeat instance).
    """
    settings_header: list[CellValue] = ["form_title", "form_id", "version", "default_language"]
    settings_row: list[CellValue] = [title, form_id, version, EN]
    settings_header.append("instance_name")
    settings_row.append("concat('HH ', ${head_name})")
    if public_key is not None:
        settings_header.append("public_key")
        settings_row.append(public_key)
    if submission_url is not None:
        settings_header.append("submission_url")
        settings_row.append(submission_url)

    survey = household_survey_rows()
    if not with_entities:
        save_to_column = SURVEY_COLUMNS.index("save_to")
        survey = [
            [None if i == save_to_column and n > 0 else value for i, value in enumerate(row)]
            for n, row in enumerate(survey)
        ]
    sheets: dict[str, list[list[CellValue]]] = {
        "survey": survey,
        "choices": household_choices_rows(),
        "settings": [settings_header, settings_row],
    }
    if with_entities:
        sheets["entities"] = household_entities_rows()
    return xlsx_from_sheets(sheets)


def villages_csv() -> bytes:
    """The `villages.csv` attachment read by the household form's village question."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "label", "district"])
    writer.writerows(VILLAGES)
    return buffer.getvalue().encode("utf-8")


def xlsx_from_sheets(sheets: Mapping[str, Sequence[Sequence[CellValue]]]) -> bytes:
    """An .xlsx workbook with one sheet per entry, rows as given.

    A string starting with "=" is written as a formula cell (that is how openpyxl stores
    it), which is how tests put a formula into a form: `formula("1+1")`.
    """
    workbook = Workbook()
    default_sheet = workbook.active
    assert default_sheet is not None
    workbook.remove(default_sheet)
    for sheet_name, rows in sheets.items():
        sheet = workbook.create_sheet(title=sheet_name)
        for row in rows:
            sheet.append(list(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def formula(expression: str) -> str:
    """A cell value that `xlsx_from_sheets` writes as a spreadsheet formula."""
    return "=" + expression.removeprefix("=")


def minimal_form_xlsx(
    form_id: str = "minimal",
    version: str = "1",
    *,
    title: str | None = None,
    public_key: str | None = None,
) -> bytes:
    """A one-question form: a text question `name`."""
    settings_header: list[CellValue] = ["form_id", "version", "form_title"]
    settings_row: list[CellValue] = [form_id, version, title or form_id]
    if public_key is not None:
        settings_header.append("public_key")
        settings_row.append(public_key)
    return xlsx_from_sheets(
        {
            "survey": [["type", "name", "label"], ["text", "name", "What is your name?"]],
            "settings": [settings_header, settings_row],
        }
    )


# ---------------------------------------------------------------------------------------
# Submissions


@dataclass
class MemberAnswers:
    """One instance of the `member` repeat as an enumerator filled it."""

    full_name: str
    sex: str = "female"
    date_of_birth: str | None = "1990-05-17"
    relationship: str = "head"
    disability: str | None = "no"
    difficulties: list[str] = field(default_factory=list)
    entity_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def default_members() -> list[MemberAnswers]:
    """The members of the demo household: the head, her husband and a son with a disability."""
    return [
        MemberAnswers("Faadumo Cali Xasan", "female", "1988-03-02", "head", "no"),
        MemberAnswers("Maxamed Yuusuf Cabdi", "male", "1984-11-20", "spouse", "no"),
        MemberAnswers(
            "Cabdiraxmaan Maxamed Yuusuf",
            "male",
            "2014-07-09",
            "child",
            "yes",
            ["walking", "self_care"],
        ),
    ]


def household_instance_xml(
    *,
    instance_id: str | None = None,
    form_id: str = HOUSEHOLD_FORM_ID,
    version: str | None = HOUSEHOLD_FORM_VERSION,
    region: str = "banadir",
    district: str = "hodan",
    village: str = "taleex",
    gps: tuple[float, float, float, float] | None = (2.0469, 45.3182, 12.0, 4.5),
    dwelling_photo: str | None = "dwelling-1732620000000.jpg",
    head_first_name: str = "Faadumo",
    head_father_name: str = "Cali",
    head_grandfather_name: str = "Xasan",
    national_id: str = "102938475",
    phone: str = "0615123456",
    hh_size: int | str | None = None,
    monthly_income_usd: float | str | None = 120.5,
    members: Sequence[MemberAnswers | Mapping[str, object]] | None = None,
    household_entity_id: str | None = None,
    deprecated_id: str | None = None,
    started: str = "2026-11-26T09:14:03.120+03:00",
    ended: str = "2026-11-26T09:31:47.884+03:00",
    with_entities: bool = True,
) -> bytes:
    """The submission ODK Collect makes for `household_registration_xlsx`.

    Members may be `MemberAnswers` or dicts of its fields. `hh_size` defaults to the
    number of members. Entity blocks follow pyxform 4.5's placement: the household in the
    form's meta, each member in the meta of its repeat instance.
    """
    member_answers = [
        member if isinstance(member, MemberAnswers) else MemberAnswers(**member)  # type: ignore[arg-type]
        for member in (default_members() if members is None else members)
    ]
    instance_id = instance_id or f"uuid:{uuid.uuid4()}"
    household_entity_id = household_entity_id or str(uuid.uuid4())
    if hh_size is None:
        hh_size = len(member_answers)
    head_name = " ".join(
        part for part in (head_first_name, head_father_name, head_grandfather_name) if part
    )

    def element(name: str, value: object | None) -> str:
        if value is None:
            return f"<{name}/>"
        return f"<{name}>{escape(str(value))}</{name}>"

    gps_text = " ".join(_number_text(part) for part in gps) if gps else None
    parts: list[str] = [
        "<?xml version='1.0' encoding='UTF-8' ?>",
        '<data xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms"'
        ' xmlns:entities="http://www.opendatakit.org/xforms/entities"'
        f" id={quoteattr(form_id)}"
        + (f" version={quoteattr(version)}" if version is not None else "")
        + ">",
        element("start", started),
        element("end", ended),
        "<location>",
        element("region", region),
        element("district", district),
        element("village", village),
        element("gps", gps_text),
        element("dwelling_photo", dwelling_photo),
        "</location>",
        "<head>",
        element("head_first_name", head_first_name),
        element("head_father_name", head_father_name),
        element("head_grandfather_name", head_grandfather_name),
        element("head_name", head_name),
        element("national_id", national_id),
        element("phone", phone),
        "</head>",
        element("hh_size", hh_size),
        element(
            "monthly_income_usd",
            _number_text(monthly_income_usd)
            if isinstance(monthly_income_usd, float)
            else monthly_income_usd,
        ),
    ]
    for member in member_answers:
        parts += [
            "<member>",
            element("full_name", member.full_name),
            element("sex", member.sex),
            element("date_of_birth", member.date_of_birth),
            element("relationship", member.relationship),
            element("disability", member.disability),
            element("difficulties", " ".join(member.difficulties) or None),
        ]
        if with_entities:
            parts += [
                "<meta>",
                f'<entity create="1" dataset="members" id="{member.entity_id}">',
                element("label", member.full_name),
                "</entity>",
                "</meta>",
            ]
        parts.append("</member>")
    parts += [
        "<meta>",
        element("instanceID", instance_id),
        element("instanceName", f"HH {head_name}"),
    ]
    if deprecated_id is not None:
        parts.append(element("deprecatedID", deprecated_id))
    if with_entities:
        parts += [
            f'<entity create="1" dataset="households" id="{household_entity_id}">',
            element("label", head_name),
            "</entity>",
        ]
    parts += ["</meta>", "</data>"]
    return "".join(parts).encode("utf-8")


def _number_text(value: float) -> str:
    """A number as Collect writes it: no trailing '.0' on whole numbers."""
    return str(int(value)) if float(value).is_integer() else repr(value)
