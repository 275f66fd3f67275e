"""OpenRosa form distribution as ODK Collect sees it: formList, form XML, manifest and
media, their headers and hashes, authentication, district scoping, the /key/<token>/
prefix, and files the registry makes per device."""

from __future__ import annotations

import datetime as dt
from email.utils import parsedate_to_datetime

import pytest

from server.accounts import service as accounts
from server.catalog import service
from tests.factories import AdminFactory, DistrictFactory, SupervisorFactory, UserFactory
from tests.server.catalog.helpers import (
    HOUSEHOLD_FORM_ID,
    HOUSEHOLD_FORM_VERSION,
    HOUSEHOLD_XLSX,
    MINIMAL_V2_XLSX,
    MINIMAL_XLSX,
    OPENROSA_RESPONSE,
    OTHER_XLSX,
    VILLAGES_CSV,
    XFORMS,
    XFORMS_LIST,
    XFORMS_MANIFEST,
    basic_auth,
    local_path,
    md5,
    ns,
    parse_xml,
)
from tests.support.xlsforms import xlsx_from_sheets

# A follow-up form with no file of its own: it only declares the households entity list,
# which the registry serves per device.
HOUSEHOLD_VISIT_XLSX = xlsx_from_sheets(
    {
        "survey": [
            ["type", "name", "label", "save_to"],
            ["text", "head_name", "Head of household", "head_name"],
        ],
        "entities": [["list_name", "label"], ["households", "${head_name}"]],
        "settings": [["form_id", "version", "form_title"], ["household_visit", "1", "Visit"]],
    }
)


def form_list(client, headers, query: str = ""):
    response = client.get(f"/formList{query}", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    root = parse_xml(response.data)
    assert root.tag == f"{{{XFORMS_LIST}}}xforms"
    return response, root.findall(ns(XFORMS_LIST, "xform"))


def text(element, *names: str, namespace: str = XFORMS_LIST) -> str:
    found = element.find(ns(namespace, *names))
    assert found is not None, f"no {'/'.join(names)}"
    return str(found.text)


def media_file_named(manifest, filename: str):
    """The manifest's <mediaFile> for `filename` (the registry may add files of its own)."""
    found = [
        media_file
        for media_file in manifest.findall(ns(XFORMS_MANIFEST, "mediaFile"))
        if text(media_file, "filename", namespace=XFORMS_MANIFEST) == filename
    ]
    assert len(found) == 1, f"{filename} is listed {len(found)} times"
    return found[0]


def assert_openrosa_headers(response) -> None:
    assert response.headers["X-OpenRosa-Version"] == "1.0"
    sent = parsedate_to_datetime(response.headers["Date"])
    assert abs(sent - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=2)


@pytest.fixture
def district():
    return DistrictFactory()


@pytest.fixture
def enumerator(district):
    return UserFactory(districts=[district])


@pytest.fixture
def household(upload, district):
    """The household form, published with villages.csv and assigned to `district`."""
    return upload(
        HOUSEHOLD_XLSX,
        attachments=[("villages.csv", VILLAGES_CSV)],
        district_ids=[district.id],
    ).version


# --------------------------------------------------------------------- formList, hashes


def test_form_list_hash_and_manifest_hashes_match_the_bytes_a_device_downloads(
    client, household, enumerator
):
    headers = basic_auth(enumerator.username)

    response, [xform] = form_list(client, headers)

    assert response.mimetype == "text/xml"
    assert response.mimetype_params["charset"] == "utf-8"
    assert_openrosa_headers(response)
    assert text(xform, "formID") == HOUSEHOLD_FORM_ID
    assert text(xform, "name") == "Household registration"
    assert text(xform, "version") == HOUSEHOLD_FORM_VERSION
    assert xform.find(ns(XFORMS_LIST, "descriptionText")) is None

    download = client.get(local_path(text(xform, "downloadUrl")), headers=headers)
    assert download.status_code == 200
    assert_openrosa_headers(download)
    assert text(xform, "hash") == f"md5:{md5(download.data)}"
    model = parse_xml(download.data).find(f".//{{{XFORMS}}}model")
    submission = model.find(f"{{{XFORMS}}}submission")
    assert submission.get("base64RsaPublicKey") == household.key.public_key

    manifest = client.get(local_path(text(xform, "manifestUrl")), headers=headers)
    assert manifest.status_code == 200
    assert_openrosa_headers(manifest)
    root = parse_xml(manifest.data)
    assert root.tag == f"{{{XFORMS_MANIFEST}}}manifest"
    media_file = media_file_named(root, "villages.csv")
    media = client.get(
        local_path(text(media_file, "downloadUrl", namespace=XFORMS_MANIFEST)), headers=headers
    )
    assert media.status_code == 200
    assert media.data == VILLAGES_CSV
    assert text(media_file, "hash", namespace=XFORMS_MANIFEST) == f"md5:{md5(media.data)}"


def test_media_download_answers_304_when_the_device_already_has_that_md5(
    client, household, enumerator
):
    headers = basic_auth(enumerator.username)
    url = f"/forms/{HOUSEHOLD_FORM_ID}/{HOUSEHOLD_FORM_VERSION}/media/villages.csv"
    first = client.get(url, headers=headers)
    assert first.headers["ETag"] == f'"{md5(VILLAGES_CSV)}"'

    again = client.get(url, headers={**headers, "If-None-Match": first.headers["ETag"]})

    assert again.status_code == 304
    assert again.data == b""


def test_form_list_filters_by_form_id_and_describes_forms_when_verbose(client, upload):
    district = DistrictFactory()
    enumerator = UserFactory(districts=[district])
    upload(MINIMAL_XLSX, district_ids=[district.id])
    upload(OTHER_XLSX, district_ids=[district.id])
    headers = basic_auth(enumerator.username)

    _, both = form_list(client, headers)
    _, [only] = form_list(client, headers, "?formID=other_form&verbose=true")
    _, none = form_list(client, headers, "?formID=no_such_form")

    assert sorted(text(x, "formID") for x in both) == ["minimal", "other_form"]
    assert text(only, "formID") == "other_form"
    assert text(only, "descriptionText") == "Other form"
    assert none == []
    # A form without files has no manifest to fetch.
    assert only.find(ns(XFORMS_LIST, "manifestUrl")) is None


def test_form_list_offers_the_newest_version_or_every_open_one_when_asked(client, upload):
    district = DistrictFactory()
    enumerator = UserFactory(districts=[district])
    upload(MINIMAL_XLSX, district_ids=[district.id])
    upload(MINIMAL_V2_XLSX)
    headers = basic_auth(enumerator.username)

    _, [newest] = form_list(client, headers)
    _, every = form_list(client, headers, "?listAllVersions=true")

    assert text(newest, "version") == "2"
    assert [text(x, "version") for x in every] == ["1", "2"]
    older = client.get(local_path(text(every[0], "downloadUrl")), headers=headers)
    assert older.status_code == 200
    assert b'version="1"' in older.data


# ------------------------------------------------------------------ who sees which form


def test_enumerators_see_only_forms_assigned_to_their_district_and_admins_see_all(client, upload):
    north, south = DistrictFactory(), DistrictFactory()
    north_enumerator = UserFactory(districts=[north])
    south_enumerator = UserFactory(districts=[south])
    unassigned_enumerator = UserFactory()
    admin = AdminFactory()
    upload(MINIMAL_XLSX, district_ids=[north.id])
    upload(OTHER_XLSX, district_ids=[south.id])

    def form_ids(user) -> list[str]:
        _, xforms = form_list(client, basic_auth(user.username))
        return sorted(text(x, "formID") for x in xforms)

    assert form_ids(north_enumerator) == ["minimal"]
    assert form_ids(south_enumerator) == ["other_form"]
    assert form_ids(unassigned_enumerator) == []
    assert form_ids(admin) == ["minimal", "other_form"]


def test_enumerator_of_another_district_gets_403_on_direct_downloads(client, household, district):
    outsider = UserFactory(districts=[DistrictFactory()])
    headers = basic_auth(outsider.username)
    base = f"/forms/{HOUSEHOLD_FORM_ID}/{HOUSEHOLD_FORM_VERSION}"

    _, xforms = form_list(client, headers)
    assert xforms == []
    for path in ("form.xml", "manifest", "media/villages.csv"):
        response = client.get(f"{base}/{path}", headers=headers)
        assert response.status_code == 403, path
        assert_openrosa_headers(response)
        envelope = parse_xml(response.data)
        assert envelope.tag == f"{{{OPENROSA_RESPONSE}}}OpenRosaResponse"
        assert "not assigned to your districts" in response.get_data(as_text=True)


def test_drafts_and_closed_versions_are_not_downloadable_by_enumerators(client, session, upload):
    district = DistrictFactory()
    enumerator = UserFactory(districts=[district])
    closed = upload(MINIMAL_XLSX, district_ids=[district.id]).version
    upload(MINIMAL_V2_XLSX, publish=False)
    service.close_version(session, None, closed)
    session.flush()
    headers = basic_auth(enumerator.username)

    _, xforms = form_list(client, headers, "?listAllVersions=true")

    assert xforms == []
    assert client.get("/forms/minimal/1/form.xml", headers=headers).status_code == 404
    assert client.get("/forms/minimal/2/form.xml", headers=headers).status_code == 404


def test_supervisors_do_not_fill_forms_so_their_form_list_is_refused(client, district):
    supervisor = SupervisorFactory(districts=[district])

    response = client.get("/formList", headers=basic_auth(supervisor.username))

    assert response.status_code == 403
    assert_openrosa_headers(response)


# --------------------------------------------------------------------- authentication


def test_a_device_without_credentials_gets_401_with_a_basic_challenge(client):
    response = client.get("/formList", headers={"X-OpenRosa-Version": "1.0"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert_openrosa_headers(response)
    envelope = parse_xml(response.data)
    assert envelope.tag == f"{{{OPENROSA_RESPONSE}}}OpenRosaResponse"
    assert envelope.find(f"{{{OPENROSA_RESPONSE}}}message").get("nature") == "error"


def test_a_wrong_password_gets_401_with_the_challenge_so_collect_asks_again(client, enumerator):
    response = client.get("/formList", headers=basic_auth(enumerator.username, "not it at all"))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert_openrosa_headers(response)


def test_device_token_prefix_serves_the_same_routes_and_keeps_the_prefix_in_urls(
    client, session, household, enumerator
):
    _token, secret = accounts.issue_token(session, None, enumerator, kind="device")
    prefix = f"/key/{secret}"

    response = client.get(f"{prefix}/formList")
    assert response.status_code == 200
    assert_openrosa_headers(response)
    [xform] = parse_xml(response.data).findall(ns(XFORMS_LIST, "xform"))
    download_url = text(xform, "downloadUrl")
    manifest_url = text(xform, "manifestUrl")
    assert download_url.startswith(f"http://localhost{prefix}/forms/")
    assert manifest_url.startswith(f"http://localhost{prefix}/forms/")

    download = client.get(local_path(download_url))
    assert download.status_code == 200
    assert text(xform, "hash") == f"md5:{md5(download.data)}"
    manifest = client.get(local_path(manifest_url))
    assert manifest.status_code == 200
    media_file = media_file_named(parse_xml(manifest.data), "villages.csv")
    media_url = text(media_file, "downloadUrl", namespace=XFORMS_MANIFEST)
    assert media_url.startswith(f"http://localhost{prefix}/forms/")
    assert client.get(local_path(media_url)).data == VILLAGES_CSV


def test_an_unknown_or_revoked_device_token_gets_401(client, session, enumerator):
    token, secret = accounts.issue_token(session, None, enumerator, kind="device")
    accounts.revoke_token(session, None, token)

    revoked = client.get(f"/key/{secret}/formList")
    unknown = client.get(f"/key/{'x' * 43}/formList")

    assert revoked.status_code == 401
    assert "revoked" in revoked.get_data(as_text=True)
    assert unknown.status_code == 401
    assert_openrosa_headers(unknown)


# ------------------------------------------------------- files the registry makes per device


def test_registry_entity_list_is_in_the_manifest_with_its_md5_and_integrity_url(
    client, household, enumerator, households_provider
):
    headers = basic_auth(enumerator.username)
    base = f"/forms/{HOUSEHOLD_FORM_ID}/{HOUSEHOLD_FORM_VERSION}"

    manifest = client.get(f"{base}/manifest", headers=headers)

    files = {
        text(f, "filename", namespace=XFORMS_MANIFEST): f
        for f in parse_xml(manifest.data).findall(ns(XFORMS_MANIFEST, "mediaFile"))
    }
    assert sorted(files) == ["households.csv", "villages.csv"]
    entity_list = files["households.csv"]
    assert entity_list.get("type") == "entityList"
    assert files["villages.csv"].get("type") is None
    assert households_provider.seen_users[-1].id == enumerator.id

    download = client.get(
        local_path(text(entity_list, "downloadUrl", namespace=XFORMS_MANIFEST)), headers=headers
    )
    assert download.status_code == 200
    assert download.data == households_provider.content()
    assert text(entity_list, "hash", namespace=XFORMS_MANIFEST) == f"md5:{md5(download.data)}"
    assert download.headers["ETag"] == f'"{md5(download.data)}"'

    integrity_url = text(entity_list, "integrityUrl", namespace=XFORMS_MANIFEST)
    kept, gone = "8f1c6a52-0c1e-4a53-9b7e-2f4a1f3c9d10", "0b0e5d7c-2222-4c3a-8d7e-9f0a1b2c3d4e"
    integrity = client.get(f"{local_path(integrity_url)}?id={kept},{gone}", headers=headers)
    assert integrity.status_code == 200
    entities = parse_xml(integrity.data).findall("entities/entity")
    assert {e.get("id"): e.findtext("deleted") for e in entities} == {
        kept: "false",
        gone: "true",
    }


def test_registry_entity_list_answers_304_until_its_content_changes(
    client, household, enumerator, households_provider
):
    headers = basic_auth(enumerator.username)
    url = f"/forms/{HOUSEHOLD_FORM_ID}/{HOUSEHOLD_FORM_VERSION}/media/households.csv"
    first = client.get(url, headers=headers)
    etag = first.headers["ETag"]

    unchanged = client.get(url, headers={**headers, "If-None-Match": etag})
    households_provider.rows.append(("1d2c3b4a-0000-4000-8000-000000000001", "Xaawo Ali", "1"))
    changed = client.get(url, headers={**headers, "If-None-Match": etag})

    assert unchanged.status_code == 304
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert b"Xaawo Ali" in changed.data
    manifest = client.get(
        f"/forms/{HOUSEHOLD_FORM_ID}/{HOUSEHOLD_FORM_VERSION}/manifest", headers=headers
    )
    assert f"md5:{md5(changed.data)}".encode() in manifest.data


def test_a_form_whose_only_file_comes_from_the_registry_still_gets_a_manifest_url(
    client, upload, district, enumerator, households_provider
):
    upload(HOUSEHOLD_VISIT_XLSX, district_ids=[district.id])
    headers = basic_auth(enumerator.username)

    _, [xform] = form_list(client, headers)
    manifest = client.get(local_path(text(xform, "manifestUrl")), headers=headers)

    names = [
        text(f, "filename", namespace=XFORMS_MANIFEST)
        for f in parse_xml(manifest.data).findall(ns(XFORMS_MANIFEST, "mediaFile"))
    ]
    assert names == ["households.csv"]
