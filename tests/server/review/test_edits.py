"""Supervisor edits: each one a new version of the data with its editor, the state
"edited", and the registry changes still waiting following the corrected answers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from server.errors import Conflict, ValidationFailed
from server.registry import service as registry
from server.registry.models import Entity
from server.review import service
from server.review.models import SubmissionEdit


def test_an_edit_keeps_the_original_as_version_1_and_records_the_editor(
    submit, session, supervisor, enumerator
):
    submission = submit(phone="0615123456", hh_size=3)
    original = submission.data
    edit = service.edit_submission(
        session,
        supervisor,
        submission,
        {"head/phone": "0617000000", "hh_size": "4"},
        expected_version=0,
    )
    assert edit is not None and edit.version == 2
    assert edit.changed_fields == {"head/phone": ["0615123456", "0617000000"], "hh_size": [3, 4]}
    assert (edit.editor_id, edit.editor_name) == (supervisor.id, supervisor.username)
    first, second = service.edits_of(session, submission)
    assert (first.version, first.editor_name, first.changed_fields) == (1, enumerator.username, {})
    assert first.data == original
    assert second is edit
    assert submission.data["head"]["phone"] == "0617000000"
    assert submission.data["hh_size"] == 4  # typed by the form: an integer
    assert submission.review_state == "edited"
    assert service.review_version(session, submission) == 1


def test_each_further_edit_adds_a_version(submit, session, supervisor, admin):
    submission = submit()
    service.edit_submission(
        session, supervisor, submission, {"head/phone": "0617000000"}, expected_version=0
    )
    service.edit_submission(
        session, admin, submission, {"head/phone": "0617111111"}, expected_version=1
    )
    versions = service.edits_of(session, submission)
    assert [(v.version, v.editor_name) for v in versions] == [
        (1, "asha"),
        (2, supervisor.username),
        (3, admin.username),
    ]
    assert versions[1].data["head"]["phone"] == "0617000000"
    assert versions[2].changed_fields == {"head/phone": ["0617000000", "0617111111"]}


def test_editing_answers_inside_a_repeat_and_select_multiple(submit, session, supervisor):
    submission = submit()
    service.edit_submission(
        session,
        supervisor,
        submission,
        {
            "member[3]/difficulties": ["seeing", "walking"],
            "member[2]/date_of_birth": "1985-01-31",
            "member[1]/sex": "female",  # unchanged: not recorded
        },
        expected_version=0,
    )
    members = submission.data["member"]
    assert members[2]["difficulties"] == ["seeing", "walking"]
    assert members[1]["date_of_birth"] == "1985-01-31"
    [edit] = [e for e in service.edits_of(session, submission) if e.version == 2]
    assert set(edit.changed_fields) == {"member[3]/difficulties", "member[2]/date_of_birth"}


def test_corrected_answers_reach_the_registry_on_approval(submit, session, supervisor):
    submission = submit(national_id="102938475")
    service.edit_submission(
        session,
        supervisor,
        submission,
        {
            "head/national_id": "555666777",
            "head/head_name": "Faadumo Cali Xasan Maxamed",
            "member[2]/full_name": "Maxamed Yusuf Cabdi",
        },
        expected_version=0,
    )
    waiting = {c.label: c for c in registry.pending_changes(session, submission)}
    assert "Maxamed Yusuf Cabdi" in waiting  # the member's label follows ${full_name}
    service.set_review_state(session, supervisor, submission, "approved", expected_version=1)
    household = session.scalars(
        select(Entity).where(
            Entity.list_name == "households", Entity.created_by_submission_id == submission.id
        )
    ).one()
    assert household.properties["national_id"] == "555666777"
    assert household.properties["head_name"] == "Faadumo Cali Xasan Maxamed"
    names = {member.properties["full_name"] for member in registry.members_of(session, household)}
    assert "Maxamed Yusuf Cabdi" in names and "Maxamed Yuusuf Cabdi" not in names


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        ("hh_size", "many", "not an integer"),
        ("member[1]/sex", "unknown", "not one of the choices"),
        ("member[1]/date_of_birth", "31/01/1985", "not a date"),
        ("member[9]/full_name", "Nobody", "no such answer"),
        ("start", "2026-01-01T00:00:00", "cannot be edited"),
        ("location/dwelling_photo", "other.jpg", "cannot be edited"),
        ("no_such_question", "x", "no such question"),
    ],
)
def test_a_bad_value_is_refused_naming_the_answer_and_nothing_is_saved(
    submit, session, supervisor, path, value, problem
):
    submission = submit()
    before = submission.data
    with pytest.raises(ValidationFailed) as refused:
        service.edit_submission(
            session,
            supervisor,
            submission,
            {path: value, "head/phone": "0617000000"},
            expected_version=0,
        )
    assert list(refused.value.details) == [path]
    assert problem in refused.value.details[path][0]
    assert submission.data == before
    assert submission.review_state == "received"
    assert session.scalar(select(SubmissionEdit.id)) is None


def test_an_edit_that_changes_nothing_makes_no_version(submit, session, supervisor):
    submission = submit(phone="0615123456")
    assert (
        service.edit_submission(
            session, supervisor, submission, {"head/phone": "0615123456"}, expected_version=0
        )
        is None
    )
    assert submission.review_state == "received"
    assert service.edits_of(session, submission) == []


def test_an_edit_on_a_stale_version_or_after_a_decision_is_a_conflict(submit, session, supervisor):
    submission = submit()
    service.set_review_state(session, supervisor, submission, "has_issues", expected_version=0)
    with pytest.raises(Conflict):
        service.edit_submission(
            session, supervisor, submission, {"head/phone": "0617000000"}, expected_version=0
        )
    service.set_review_state(session, supervisor, submission, "approved", expected_version=1)
    with pytest.raises(Conflict, match="already approved"):
        service.edit_submission(
            session, supervisor, submission, {"head/phone": "0617000000"}, expected_version=2
        )


def test_the_edit_page_saves_only_what_was_changed(submit, session, supervisor, browser):
    submission = submit(phone="0615123456")
    browser.login(supervisor.username)
    page = browser.get(f"/review/submissions/{submission.id}/edit").get_data(as_text=True)
    assert 'name="answer:head/phone" value="0615123456"' in page
    assert 'name="answer:member[3]/difficulties" value="walking" checked' in page
    response = browser.post(
        f"/review/submissions/{submission.id}/edit",
        {
            "expected_version": "0",
            "answer:head/phone": "0617000000",
            "answer:hh_size": "3",
            "answer:member[3]/difficulties": ["walking", "self_care"],
        },
    )
    assert response.status_code == 302
    session.expire_all()
    [_, edit] = service.edits_of(session, submission)
    assert edit.changed_fields == {"head/phone": ["0615123456", "0617000000"]}


def test_the_api_edits_and_lists_versions(submit, supervisor, client, bearer):
    submission = submit()
    headers = bearer(supervisor)
    url = f"/api/v1/review/submissions/{submission.id}/edits"
    created = client.post(
        url,
        json={"expected_version": 0, "changes": {"member[1]/full_name": "Faadumo Cali"}},
        headers=headers,
    )
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["version"] == 2
    stale = client.post(
        url, json={"expected_version": 0, "changes": {"hh_size": 5}}, headers=headers
    )
    assert stale.status_code == 409
    bad = client.post(
        url, json={"expected_version": 1, "changes": {"hh_size": "x"}}, headers=headers
    )
    assert bad.status_code == 400
    assert "hh_size" in bad.get_json()["error"]["details"]
    versions = client.get(url, headers=headers).get_json()
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["data"]["member"][0]["full_name"] == "Faadumo Cali"
