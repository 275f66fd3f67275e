"""In a real browser: supervisors review submissions, approve them into the registry,
decide suspected duplicates, and stay inside their districts; hostile form labels stay
text. Screenshots of the main pages go to tests/artifacts/ (and to docs/images/ for the guide
with DIIWAAN_UPDATE_GUIDE_IMAGES=1).

The field data is made the way it arrives in production: an administrator uploads the
XLSForm in the browser, tablets post (encrypted) OpenRosa submissions over HTTP, the
worker processes them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import shutil
import struct
import subprocess
import urllib.error
import urllib.request
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from server.models import import_all_models
from server.registry.models import Entity, EntityConflict
from tests.e2e.conftest import ADMIN_PASSWORD, BIN, ROOT, LiveServer
from tests.support.submissions import PHOTO_NAME, encode_multipart, encrypted_household
from tests.support.xlsforms import (
    EN,
    HOUSEHOLD_FORM_ID,
    HOUSEHOLD_FORM_VERSION,
    MemberAnswers,
    household_choices_rows,
    household_entities_rows,
    household_instance_xml,
    household_survey_rows,
    villages_csv,
    xlsx_from_sheets,
)

pytestmark = pytest.mark.browser
import_all_models()  # the registry's rows refer to submissions and users

GUIDE_IMAGES = ROOT / "docs" / "images"
PASSWORD = "a good long password"
# The form's district choices carry the codes of docs/examples/somalia_locations.csv, so
# processing places each submission in its district.
DISTRICT_CODES = {"hodan": "SO-BN-HOD", "wadajir": "SO-BN-WAD"}
HOSTILE = "<script>alert('label')</script>"


# ------------------------------------------------------------------ field data


def run_cli(server: LiveServer, *args: str, **env: str) -> str:
    result = subprocess.run(
        [str(BIN / "diiwaan"), *args],
        cwd=ROOT,
        env={**server.environment, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def http(
    server: LiveServer,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        server.url + path, data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def basic(username: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}", "X-OpenRosa-Version": "1.0"}


def house_png(width: int = 240, height: int = 160) -> bytes:
    """A small picture of a dwelling (sky, ground, walls, roof, door), as PNG."""

    def colour(x: int, y: int) -> tuple[int, int, int]:
        if 60 <= x <= 180 and 70 <= y <= 130:
            if 108 <= x <= 132 and y >= 95:
                return (92, 64, 51)
            return (226, 204, 160)
        if 50 <= x <= 190 and 35 <= y < 70 and abs(x - 120) <= (y - 35) * 2:
            return (150, 60, 40)
        return (135, 190, 230) if y < 115 else (200, 170, 110)

    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in colour(x, y)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def household_form(path: Path) -> Path:
    choices = [
        [DISTRICT_CODES.get(str(row[1]), row[1]) if row[0] == "district" else row[1]]
        for row in household_choices_rows()
    ]
    rows = [
        [row[0], name[0], *row[2:]]
        for row, name in zip(household_choices_rows(), choices, strict=True)
    ]
    path.write_bytes(
        xlsx_from_sheets(
            {
                "survey": household_survey_rows(),
                "choices": rows,
                "settings": [
                    ["form_title", "form_id", "version", "default_language", "instance_name"],
                    [
                        "Household registration",
                        HOUSEHOLD_FORM_ID,
                        HOUSEHOLD_FORM_VERSION,
                        EN,
                        "concat('HH ', ${head_name})",
                    ],
                ],
                "entities": household_entities_rows(),
            }
        )
    )
    return path


def hostile_form(path: Path) -> Path:
    path.write_bytes(
        xlsx_from_sheets(
            {
                "survey": [
                    ["type", "name", "label"],
                    ["text", "remark", f"{HOSTILE} Remark"],
                    ["select_one yn", "ok", "<img src=x onerror=alert('choice')>Is it fine?"],
                ],
                "choices": [["list_name", "name", "label"], ["yn", "yes", "<b>Yes</b>"]],
                "settings": [["form_id", "version", "form_title"], ["hostile", "1", "Hostile"]],
            }
        )
    )
    return path


@dataclass
class FieldData:
    server: LiveServer
    admin_token: str
    public_key: str
    instances: dict[str, str] = field(default_factory=dict)  # name → instance ID

    def submission_id(self, name: str) -> str:
        instance_id = self.instances[name]
        status, body = http(
            self.server,
            "GET",
            "/api/v1/review/submissions?state=all&per_page=200",
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        assert status == 200, body
        for row in json.loads(body)["submissions"]:
            if row["instance_id"] == instance_id:
                return str(row["id"])
        raise AssertionError(f"no submission {name} ({instance_id})")


def post_household(data: FieldData, name: str, by: str, *, encrypted: bool = False, **answers):
    instance_id = f"uuid:{uuid.uuid4()}"
    answers.setdefault("district", DISTRICT_CODES["hodan"])
    if encrypted:
        sealed = encrypted_household(
            data.public_key, instance_id=instance_id, photo=house_png(), **answers
        )
        body, content_type = encode_multipart(sealed.manifest, sealed.attachments)
    else:
        body, content_type = encode_multipart(
            household_instance_xml(instance_id=instance_id, dwelling_photo=None, **answers)
        )
    status, reply = http(
        data.server,
        "POST",
        "/submission",
        body=body,
        headers={**basic(by), "Content-Type": content_type},
    )
    assert status == 201, reply
    data.instances[name] = instance_id
    return instance_id


def sign_in(page, username: str, password: str = PASSWORD) -> None:
    page.context.clear_cookies()
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


@pytest.fixture(scope="module")
def field_data(live_server: LiveServer, chromium, tmp_path_factory) -> FieldData:
    """Districts, people, the household form (uploaded by the administrator in the
    browser, with its villages.csv), and households sent from tablets."""
    folder = tmp_path_factory.mktemp("review-e2e")
    run_cli(
        live_server,
        "districts",
        "import",
        str(ROOT / "docs" / "examples" / "somalia_locations.csv"),
    )
    people = [
        ("sup.hodan", "supervisor", "Xaliimo Cabdi", "SO-BN-HOD"),
        ("sup.wadajir", "supervisor", "Cabdullahi Nuur", "SO-BN-WAD"),
        ("enum.hodan", "enumerator", "Asha Warsame", "SO-BN-HOD"),
        ("enum.hodan2", "enumerator", "Yaasiin Cali", "SO-BN-HOD"),
        ("enum.wadajir", "enumerator", "Omar Nuur", "SO-BN-WAD"),
    ]
    for username, role, name, district in people:
        run_cli(
            live_server,
            "users",
            "create",
            username,
            "--role",
            role,
            "--name",
            name,
            "--district",
            district,
            DIIWAAN_NEW_PASSWORD=PASSWORD,
        )
    token = re.search(
        r": (\S+)$", run_cli(live_server, "tokens", "create", "admin", "--kind", "api").strip()
    )
    assert token

    villages = folder / "villages.csv"
    villages.write_bytes(villages_csv())
    context = chromium.new_context(base_url=live_server.url)
    page = context.new_page()
    sign_in(page, "admin", ADMIN_PASSWORD)
    for form, media in (
        (household_form(folder / "household.xlsx"), [villages]),
        (hostile_form(folder / "hostile.xlsx"), []),
    ):
        page.goto("/forms/upload")
        page.get_by_label("XLSForm (.xlsx)").set_input_files(str(form))
        if media:
            page.get_by_label(re.compile("Files the form refers to")).set_input_files(
                [str(m) for m in media]
            )
        page.get_by_label("Banadir / Hodan").check()
        page.get_by_label("Banadir / Wadajir").check()
        page.get_by_role("button", name="Upload").click()
        expect(page.get_by_role("status")).to_contain_text("published")
    context.close()

    status, form_list = http(live_server, "GET", "/formList", headers=basic("enum.hodan"))
    assert status == 200, form_list
    download = re.search(
        rb"<downloadUrl>([^<]*" + HOUSEHOLD_FORM_ID.encode() + rb"[^<]*)</downloadUrl>", form_list
    )
    assert download
    path = download.group(1).decode().replace("&amp;", "&").removeprefix(live_server.url)
    status, xform = http(live_server, "GET", path, headers=basic("enum.hodan"))
    key = re.search(rb'base64RsaPublicKey="([^"]+)"', xform)
    assert status == 200 and key, xform[:500]
    data = FieldData(live_server, token.group(1), key.group(1).decode())

    post_household(data, "faadumo", "enum.hodan", encrypted=True)
    post_household(
        data,
        "maryan",
        "enum.hodan",
        head_first_name="Maryan",
        head_father_name="Yuusuf",
        head_grandfather_name="Cali",
        national_id="203948576",
        phone="0615987654",
        gps=(2.0512, 45.3105, 9.0, 3.0),
        members=[
            MemberAnswers("Maryan Yuusuf Cali", "female", "1979-06-14", "head"),
            MemberAnswers("Nimco Xasan Maxamed", "female", "2009-02-01", "child"),
        ],
    )
    # A pair for the duplicates test, from its own enumerator: same head and phone, but
    # another village, national ID and members — likely the same household, not certain
    # (a weight in the middle of the review band, away from both thresholds).
    pair_head = {
        "head_first_name": "Sahra",
        "head_father_name": "Maxamed",
        "head_grandfather_name": "Cumar",
        "phone": "0615444555",
    }
    post_household(
        data,
        "sahra-first",
        "enum.hodan2",
        national_id="304958671",
        village="tarabuunka",
        members=[
            MemberAnswers("Sahra Maxamed Cumar", "female", "1990-08-08", "head"),
            MemberAnswers("Ilhaan Cali Axmed", "female", "2015-01-20", "child"),
        ],
        **pair_head,
    )
    post_household(
        data,
        "sahra-again",
        "enum.hodan2",
        national_id="405968172",
        village="taleex",
        members=[MemberAnswers("Cabdi Nuur Faarax", "male", "1960-03-03", "parent")],
        **pair_head,
    )
    post_household(
        data,
        "wadajir",
        "enum.wadajir",
        district=DISTRICT_CODES["wadajir"],
        village="halane",
        head_first_name="Xasan",
        head_father_name="Cumar",
        head_grandfather_name="Faarax",
        national_id="506978273",
        phone="0616111222",
    )
    # Earlier weeks' work, so the dashboard has a history to show.
    history = []
    for n in range(18):
        by = ("enum.hodan", "enum.hodan2", "enum.wadajir")[n % 3]
        first = ("Cawo", "Deeqa", "Fowsiya", "Hibo", "Jamaad", "Khadro")[n % 6]
        father = ("Aadan", "Bile", "Cilmi")[n // 6]
        history.append(
            post_household(
                data,
                f"history-{n}",
                by,
                district=DISTRICT_CODES["wadajir" if by == "enum.wadajir" else "hodan"],
                village="halane" if by == "enum.wadajir" else "taleex",
                head_first_name=first,
                head_father_name=father,
                head_grandfather_name="Warsame",
                national_id=f"6{n:08d}",
                phone=f"06155{n:05d}",
                members=[
                    MemberAnswers(
                        f"{first} {father} Warsame", "female", f"19{60 + n}-0{1 + n % 9}-1{n % 9}"
                    )
                ],
            )
        )
    status, body = http(
        data.server, "GET", "/formList", headers=basic("enum.hodan2")
    )  # the hostile form is assigned too
    assert b"hostile" in body
    hostile_id = f"uuid:{uuid.uuid4()}"
    payload, content_type = encode_multipart(
        (
            '<data id="hostile" version="1"><remark>&lt;img src=x onerror=alert(1)&gt;</remark>'
            f"<ok>yes</ok><meta><instanceID>{hostile_id}</instanceID></meta></data>"
        ).encode()
    )
    status, reply = http(
        data.server,
        "POST",
        "/submission",
        body=payload,
        headers={**basic("enum.hodan"), "Content-Type": content_type},
    )
    assert status == 201, reply
    data.instances["hostile"] = hostile_id

    run_cli(live_server, "worker", "--drain")
    engine = create_engine(live_server.environment["DIIWAAN_DATABASE_URL"])
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as connection:
        for n, instance_id in enumerate(history):
            connection.execute(
                text("UPDATE submission SET received_at = :at WHERE instance_id = :id"),
                {"at": now - dt.timedelta(days=1 + (n * 5) % 17, hours=n), "id": instance_id},
            )
    engine.dispose()
    for n, name in enumerate(("history-0", "history-3", "history-4", "history-7")):
        decision = ("rejected", "rejected", "has_issues", "approved")[n]
        status, body = http(
            data.server,
            "POST",
            f"/api/v1/review/submissions/{data.submission_id(name)}/decision",
            body=(
                f'{{"state": "{decision}", "expected_version": 0, '
                f'"comment": "Checked by phone with the household"}}'
            ).encode(),
            headers={
                "Authorization": f"Bearer {data.admin_token}",
                "Content-Type": "application/json",
            },
        )
        assert status == 200, body
    return data


@pytest.fixture
def guide_screenshot(screenshot):
    """`guide_screenshot("name")`: the screenshot in tests/artifacts/; with
    DIIWAAN_UPDATE_GUIDE_IMAGES=1 also copied to docs/images/ for the supervisor guide
    (so an ordinary test run leaves the committed pictures alone)."""
    update_guide = os.environ.get("DIIWAAN_UPDATE_GUIDE_IMAGES") == "1"

    def save(name: str, *, full_page: bool = True) -> Path:
        path = screenshot(name, full_page=full_page)
        if update_guide:
            GUIDE_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, GUIDE_IMAGES / f"{name}.png")
        return path

    return save


def no_dialogs(page) -> list[str]:
    seen: list[str] = []

    def record(dialog) -> None:
        seen.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    return seen


# ------------------------------------------------------------------------ tests


def test_supervisor_reviews_edits_and_approves_a_household_then_finds_it_in_the_registry(
    field_data, page, guide_screenshot
):
    dialogs = no_dialogs(page)
    sign_in(page, "sup.hodan")
    nav = page.get_by_role("navigation", name="main")
    nav.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    expect(page.get_by_text("waiting for review")).to_be_visible()
    guide_screenshot("review-dashboard")

    nav.get_by_role("link", name="Submissions").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Submissions")
    page.get_by_label("Enumerator").select_option(label="Asha Warsame")
    page.get_by_role("button", name="Filter").click()
    row = page.get_by_role("row").filter(has_text="HH Faadumo Cali Xasan")
    expect(row).to_contain_text("Received")
    guide_screenshot("review-queue")

    row.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("HH Faadumo Cali Xasan")
    answers = page.locator(".form-answers")
    expect(answers).to_contain_text("How many people live in this household?")
    expect(answers).to_contain_text("Taleex")  # village label from the attached CSV
    expect(answers.get_by_role("row").filter(has_text="Cabdiraxmaan")).to_contain_text(
        "Walking or climbing steps, Self-care"
    )
    photo = answers.get_by_role("img", name="Photo of the dwelling")
    expect(photo).to_be_visible()
    # Decrypted and served: its width once loaded (visible comes first; a broken image
    # settles at 0).
    width = photo.evaluate(
        "image => image.complete ? image.naturalWidth : new Promise(done => {"
        " image.onload = image.onerror = () => done(image.naturalWidth); })"
    )
    assert width == 240
    expect(answers.locator("svg circle.point")).to_have_count(1)
    expect(page.get_by_text("New household: Faadumo Cali Xasan")).to_be_visible()
    guide_screenshot("review-submission")

    page.get_by_role("combobox", name="Form language").select_option("Somali (so)")
    page.get_by_role("button", name="Show").click()
    expect(answers).to_contain_text("Immisa qof ayaa ku nool qoyskan?")
    page.get_by_role("combobox", name="Form language").select_option("English (en)")
    page.get_by_role("button", name="Show").click()

    page.get_by_role("link", name="Edit answers").click()
    page.get_by_label("Phone number").fill("0617123456")
    guide_screenshot("review-edit")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_role("status")).to_have_text("Saved as version 2 (1 answer changed).")
    expect(page.locator(".answer.changed")).to_contain_text("0617123456")

    page.get_by_label("Add a comment").fill("Phone corrected after calling the household.")
    page.get_by_role("button", name="Comment", exact=True).click()
    expect(page.locator("#activity")).to_contain_text("Phone corrected after calling")

    page.get_by_label(re.compile("Comment \\(optional")).fill("All checked, thank you Asha.")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_have_text("Approved. 4 registry changes applied.")
    expect(page.locator(".page-head .state")).to_have_text("Approved")
    guide_screenshot("review-approved")

    nav.get_by_role("link", name="Registry").click()
    page.get_by_label("Name, ID or phone").fill("0617123456")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("status")).to_have_text("1 record matching “0617123456”")
    guide_screenshot("registry-search")
    page.get_by_role("link", name="Faadumo Cali Xasan").click()
    expect(page.get_by_role("heading", name="Members (3)")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="Cabdiraxmaan Maxamed Yuusuf")).to_be_visible()
    expect(page.locator("table.history")).to_contain_text("submission")
    guide_screenshot("registry-household")
    assert dialogs == []


def test_supervisor_bulk_approves_decides_a_suspected_duplicate_and_undoes_it(
    field_data, page, guide_screenshot
):
    sign_in(page, "sup.hodan")
    page.goto("/review/submissions")
    page.get_by_label("Enumerator").select_option(label="Yaasiin Cali")
    page.get_by_label("State").select_option(label="Waiting for review")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("link", name="Approve all that match…").click()
    expect(page.get_by_role("status")).to_have_text("Approve 7 submissions?")
    guide_screenshot("review-bulk-approve")
    page.get_by_role("button", name="Approve 7 submissions").click()
    expect(page.get_by_role("status").first).to_have_text("Approved 7 submissions.")

    page.get_by_role("navigation", name="main").get_by_role("link", name="Duplicates").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Suspected duplicates")
    page.get_by_role("row").filter(has_text="Sahra Maxamed Cumar").get_by_role("link").first.click()
    compare = page.locator("table.compare")
    expect(compare.locator("tr.agree", has_text="phone")).to_contain_text("0615444555")
    expect(compare.locator("tr.differ", has_text="national_id")).to_contain_text("405968172")
    guide_screenshot("registry-candidate")

    page.get_by_role("button", name="Merge into the registry record").click()
    expect(page.get_by_role("status")).to_contain_text("Merged")
    expect(page.get_by_text("merged", exact=True)).to_be_visible()
    page.get_by_role("button", name="Undo this merge").click()
    expect(page.get_by_role("status")).to_have_text("Merge undone: both records are active again.")
    expect(page.get_by_text("merge undone", exact=True)).to_be_visible()
    page.get_by_role("link", name="Suspected duplicates").click()
    expect(
        page.get_by_role("row").filter(has_text="Sahra Maxamed Cumar ↔ Sahra Maxamed Cumar")
    ).to_contain_text("merge undone")
    guide_screenshot("registry-candidates")


def test_a_supervisor_cannot_open_another_districts_submission_by_url(field_data, page, screenshot):
    submission_id = field_data.submission_id("faadumo")
    sign_in(page, "sup.wadajir")
    response = page.goto(f"/review/submissions/{submission_id}")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_contain_text("403")
    expect(page.get_by_text("Faadumo")).to_have_count(0)
    screenshot("other-district-403")
    photo = page.goto(f"/review/submissions/{submission_id}/files/{PHOTO_NAME}")
    assert photo is not None and photo.status == 403
    page.goto("/review/submissions?state=all")
    expect(page.get_by_role("row").filter(has_text="HH Xasan Cumar Faarax")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="Faadumo")).to_have_count(0)


def test_a_script_tag_in_a_form_label_is_shown_as_text_and_runs_nothing(
    field_data, page, screenshot
):
    dialogs = no_dialogs(page)
    sign_in(page, "sup.hodan")
    page.goto(f"/review/submissions/{field_data.submission_id('hostile')}")
    answers = page.locator(".form-answers")
    expect(answers).to_contain_text(f"{HOSTILE} Remark")
    expect(answers).to_contain_text("<img src=x onerror=alert(1)>")
    expect(answers).to_contain_text("<b>Yes</b>")
    expect(page.locator(".form-answers script")).to_have_count(0)
    expect(page.locator(".form-answers img")).to_have_count(0)
    screenshot("hostile-labels")
    page.get_by_role("link", name="Edit answers").click()
    expect(page.get_by_label(f"{HOSTILE} Remark")).to_be_visible()
    page.wait_for_timeout(300)
    assert dialogs == []


def test_supervisor_resolves_a_conflict_field_by_field(field_data, page, guide_screenshot):
    # A conflict as the registry records it when an offline update was based on an old
    # version: the supervisor picks, per field, the registry's value or the submitted one.
    submission_id = field_data.submission_id("maryan")
    status, body = http(
        field_data.server,
        "POST",
        f"/api/v1/review/submissions/{submission_id}/decision",
        body=b'{"state": "approved", "expected_version": 0}',
        headers={
            "Authorization": f"Bearer {field_data.admin_token}",
            "Content-Type": "application/json",
        },
    )
    assert status == 200, body
    engine = create_engine(field_data.server.environment["DIIWAAN_DATABASE_URL"])
    with Session(engine) as session:
        household = session.scalars(
            select(Entity).where(
                Entity.list_name == "households", Entity.label == "Maryan Yuusuf Cali"
            )
        ).one()
        conflict = EntityConflict(
            entity_id=household.id,
            base_version=1,
            server_version=2,
            fields={
                "phone": {"base": "0615000000", "server": "0615987654", "submitted": "0618000111"},
                "village": {"base": "halane", "server": "taleex", "submitted": "tarabuunka"},
            },
        )
        session.add(conflict)
        session.commit()
        conflict_id = conflict.id
    engine.dispose()

    sign_in(page, "sup.hodan")
    page.goto("/registry/conflicts")
    page.get_by_role("link", name="Maryan Yuusuf Cali").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Maryan Yuusuf Cali")
    page.get_by_role("radio", name="0618000111").check()
    expect(page.get_by_role("radio", name="taleex").first).to_be_checked()
    guide_screenshot("registry-conflict")
    page.get_by_role("button", name="Keep the values picked").click()
    expect(page.get_by_role("status")).to_have_text(
        "Conflict resolved; the record is at version 2."
    )
    expect(page.get_by_role("row", name="phone 0618000111")).to_be_visible()
    expect(page.get_by_role("row", name="village taleex")).to_be_visible()
    expect(page.locator("table.history")).to_contain_text("phone: 0615987654 → 0618000111")
    page.goto(f"/registry/conflicts/{conflict_id}")
    expect(page.get_by_text("Resolved by sup.hodan")).to_be_visible()
