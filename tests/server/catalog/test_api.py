"""The questionnaire API: `POST /api/v1/forms` (multipart), reading forms and their
definitions within the caller's districts, assignment and registry mode."""

from __future__ import annotations

import io

from tests.factories import AdminFactory, DistrictFactory, SupervisorFactory, UserFactory
from tests.server.catalog.helpers import (
    HOUSEHOLD_FORM_ID,
    HOUSEHOLD_FORM_VERSION,
    HOUSEHOLD_XLSX,
    MINIMAL_XLSX,
    OTHER_XLSX,
    catalog_counts,
    md5,
)


def post_form(client, headers, data: bytes, filename: str = "form.xlsx", **fields):
    return client.post(
        "/api/v1/forms",
        data={"file": (io.BytesIO(data), filename), **fields},
        headers=headers,
        content_type="multipart/form-data",
    )


def test_uploading_answers_201_with_the_published_version_and_its_assignment(
    client, bearer, session
):
    north, south = DistrictFactory(), DistrictFactory()

    response = post_form(
        client,
        bearer(AdminFactory()),
        MINIMAL_XLSX,
        "minimal.xlsx",
        district_ids=[str(north.id), str(south.id)],
    )

    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["created"] is True
    assert body["form"]["form_id"] == "minimal"
    assert body["form"]["district_ids"] == sorted([north.id, south.id])
    version = body["version"]
    assert (version["version"], version["state"], version["encryption"]) == (
        "1",
        "published",
        "managed",
    )
    assert version["missing_attachments"] == []
    download = client.get("/forms/minimal/1/form.xml", headers=bearer(AdminFactory()))
    assert version["xform_md5"] == md5(download.data)


def test_uploading_as_a_draft_keeps_it_out_of_the_form_lists(client, bearer):
    response = post_form(client, bearer(AdminFactory()), MINIMAL_XLSX, draft="true")

    assert response.status_code == 201
    assert response.get_json()["version"]["state"] == "draft"
    assert response.get_json()["version"]["published_at"] is None


def test_a_form_missing_its_files_is_answered_as_a_draft_naming_them(client, bearer):
    response = post_form(client, bearer(AdminFactory()), HOUSEHOLD_XLSX)

    assert response.status_code == 201
    version = response.get_json()["version"]
    assert version["state"] == "draft"
    assert version["missing_attachments"] == ["villages.csv"]


def test_only_administrators_upload(client, bearer, session):
    before = catalog_counts(session)

    anonymous = post_form(client, {}, MINIMAL_XLSX)
    enumerator = post_form(client, bearer(UserFactory()), MINIMAL_XLSX)
    supervisor = post_form(client, bearer(SupervisorFactory()), MINIMAL_XLSX)

    assert anonymous.status_code == 401
    assert (enumerator.status_code, supervisor.status_code) == (403, 403)
    assert "forms.manage" in supervisor.get_json()["error"]["message"]
    assert catalog_counts(session) == before


def test_an_upload_without_a_file_is_a_400_naming_the_field(client, bearer):
    response = client.post(
        "/api/v1/forms",
        data={"draft": "true"},
        headers=bearer(AdminFactory()),
        content_type="multipart/form-data",
    )

    assert response.status_code == 400
    assert "file" in response.get_json()["error"]["details"]


def test_forms_are_listed_and_read_within_the_callers_districts(client, bearer, upload):
    north, south = DistrictFactory(), DistrictFactory()
    upload(MINIMAL_XLSX, district_ids=[north.id])
    upload(OTHER_XLSX, district_ids=[south.id])
    north_enumerator = bearer(UserFactory(districts=[north]))
    south_supervisor = bearer(SupervisorFactory(districts=[south]))

    def listed(headers) -> list[str]:
        response = client.get("/api/v1/forms", headers=headers)
        assert response.status_code == 200
        return sorted(form["form_id"] for form in response.get_json())

    assert listed(bearer(AdminFactory())) == ["minimal", "other_form"]
    assert listed(north_enumerator) == ["minimal"]
    assert listed(south_supervisor) == ["other_form"]
    assert client.get("/api/v1/forms/minimal", headers=north_enumerator).status_code == 200
    assert client.get("/api/v1/forms/other_form", headers=north_enumerator).status_code == 403
    definition = client.get("/api/v1/forms/minimal/versions/1/definition", headers=south_supervisor)
    assert definition.status_code == 403


def test_definition_endpoint_gives_the_form_model(client, bearer, upload):
    district = DistrictFactory()
    upload(HOUSEHOLD_XLSX, publish=False, district_ids=[district.id])
    supervisor = bearer(SupervisorFactory(districts=[district]))

    response = client.get(
        f"/api/v1/forms/{HOUSEHOLD_FORM_ID}/versions/{HOUSEHOLD_FORM_VERSION}/definition",
        headers=supervisor,
    )

    assert response.status_code == 200
    definition = response.get_json()
    assert definition["settings"]["version"] == HOUSEHOLD_FORM_VERSION
    assert [d["list_name"] for d in definition["entity_declarations"]] == [
        "households",
        "members",
    ]
    assert definition["media_files"] == ["villages.csv"]
    member = next(node for node in definition["children"] if node["name"] == "member")
    assert member["kind"] == "repeat"


def test_assignment_and_registry_mode_are_set_by_administrators_only(
    client, bearer, upload, session
):
    north, south = DistrictFactory(), DistrictFactory()
    upload(MINIMAL_XLSX, district_ids=[north.id])
    admin = bearer(AdminFactory())
    supervisor = bearer(SupervisorFactory(districts=[north]))

    assigned = client.put(
        "/api/v1/forms/minimal/districts", json={"district_ids": [south.id]}, headers=admin
    )
    refused = client.put(
        "/api/v1/forms/minimal/districts", json={"district_ids": [north.id]}, headers=supervisor
    )
    unknown = client.put(
        "/api/v1/forms/minimal/districts", json={"district_ids": [987654]}, headers=admin
    )
    mode = client.put(
        "/api/v1/forms/minimal/registry-mode", json={"registry_mode": "receipt"}, headers=admin
    )
    bad_mode = client.put(
        "/api/v1/forms/minimal/registry-mode", json={"registry_mode": "whenever"}, headers=admin
    )

    assert assigned.status_code == 200
    assert assigned.get_json()["district_ids"] == [south.id]
    assert refused.status_code == 403
    assert unknown.status_code == 400
    assert "987654" in str(unknown.get_json()["error"]["details"])
    assert mode.get_json()["registry_mode"] == "receipt"
    assert bad_mode.status_code == 400
    session.expire_all()
    form = client.get("/api/v1/forms/minimal", headers=admin).get_json()
    assert (form["district_ids"], form["registry_mode"]) == ([south.id], "receipt")
