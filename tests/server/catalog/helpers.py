"""Forms, files and small helpers shared by the questionnaire tests.

The spreadsheets are built once, when this module is first imported: converting is slow
(ODK Validate runs in Java), building them again would also give different bytes (a
workbook records when it was saved), and tests compare bytes.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import defusedxml.ElementTree as SafeET
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.catalog.models import Form, FormAttachment, FormVersion, ServerKey
from tests.conftest import PASSWORD
from tests.support.xlsforms import (
    EN,
    HOUSEHOLD_FORM_ID,
    HOUSEHOLD_FORM_VERSION,
    household_registration_xlsx,
    minimal_form_xlsx,
    villages_csv,
    xlsx_from_sheets,
)

XFORMS = "http://www.w3.org/2002/xforms"
XFORMS_LIST = "http://openrosa.org/xforms/xformsList"
XFORMS_MANIFEST = "http://openrosa.org/xforms/xformsManifest"
OPENROSA_RESPONSE = "http://openrosa.org/http/response"

HOUSEHOLD_XLSX = household_registration_xlsx()
# Same form ID and version as HOUSEHOLD_XLSX, different content: a changed title.
HOUSEHOLD_CHANGED_XLSX = household_registration_xlsx(title="Household registration (edited)")
VILLAGES_CSV = villages_csv()

MINIMAL_XLSX = minimal_form_xlsx("minimal", "1", title="Minimal")
MINIMAL_V2_XLSX = minimal_form_xlsx("minimal", "2", title="Minimal")
# Same form ID and version as MINIMAL_XLSX, different content: a changed title.
MINIMAL_CHANGED_XLSX = minimal_form_xlsx("minimal", "1", title="Minimal (edited)")
OTHER_XLSX = minimal_form_xlsx("other_form", "1", title="Other form")

LOGO_PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x03\x00\x08\xfc\x02\xfe\xa7\x9a"
    b"\xa0\xa0\x00\x00\x00\x00IEND\xaeB`\x82"
)
SCHOOLS_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<root><item><name>s1</name><label>Hodan Primary</label></item></root>\n"
)

# A form with every kind of static attachment: an image on a note, an external XML
# instance and a CSV for select_one_from_file.
MEDIA_XLSX = xlsx_from_sheets(
    {
        "survey": [
            ["type", "name", f"label::{EN}", f"media::image::{EN}", "calculation"],
            ["note", "intro", "Welcome", "logo.png", None],
            ["xml-external", "schools", None, None, None],
            ["select_one_from_file villages.csv", "village", "Village", None, None],
            ["calculate", "school_count", None, None, "count(instance('schools')/root/item)"],
        ],
        "settings": [["form_id", "version", "form_title"], ["media_form", "1", "Media form"]],
    }
)
MEDIA_FILES = {"logo.png": LOGO_PNG, "schools.xml": SCHOOLS_XML, "villages.csv": VILLAGES_CSV}


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def basic_auth(username: str, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "X-OpenRosa-Version": "1.0"}


def catalog_counts(session: Session) -> dict[str, int]:
    """Rows of every questionnaire table, to show that a refused upload stored nothing."""
    session.expire_all()
    return {
        model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
        for model in (Form, FormVersion, FormAttachment, ServerKey)
    }


def parse_xml(data: bytes) -> Any:
    return SafeET.fromstring(data)


def ns(namespace: str, *names: str) -> str:
    """An ElementTree path of namespaced names: ns(XFORMS_LIST, "xform", "formID")."""
    return "/".join(f"{{{namespace}}}{name}" for name in names)


def local_path(url: str) -> str:
    """The path of an absolute URL the server gave a device, for the test client."""
    assert url.startswith("http://localhost/"), url
    return url.removeprefix("http://localhost")


# Re-exported so the tests take every form constant from here.
__all__ = ["HOUSEHOLD_FORM_ID", "HOUSEHOLD_FORM_VERSION"]
