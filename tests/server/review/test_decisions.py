"""Review decisions: states as ODK Central has them, approval into the registry,
rejection, finality, optimistic locking, comments, and the audit trail."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from server.accounts.models import AuditEvent
from server.errors import Conflict, Forbidden, ValidationFailed
from server.registry import service as registry
from server.registry.models import Entity
from server.review import service
from server.review.models import ReviewTransition, SubmissionComment


def audit_actions(session, submission) -> list[str]:
    session.expire_all()
    return list(
        session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.target_id == str(submission.id))
            .order_by(AuditEvent.id)
        )
    )


def change_states(session, submission) -> list[str]:
    session.expire_all()
    return [change.state for change in registry.pending_changes(session, submission)]


def test_a_processed_submission_waits_as_received_with_its_registry_changes_pending(
    submit, session
):
    submission = submit()
    assert submission.processing_state == "processed"
    assert submission.review_state == "received"
    assert service.review_version(session, submission) == 0
    assert change_states(session, submission) == ["pending"] * 4  # household + 3 members
    assert session.scalar(select(Entity.id)) is None


def test_approving_applies_the_pending_changes_and_the_household_is_in_the_registry(
    submit, session, supervisor
):
    submission = submit(head_first_name="Hodan", head_father_name="Cali")
    decision = service.set_review_state(
        session, supervisor, submission, "approved", expected_version=0
    )
    assert (decision.submission.review_state, decision.transition.seq) == ("approved", 1)
    assert decision.registry_changes == 4
    assert change_states(session, submission) == ["applied"] * 4
    rows, total = registry.search_entities(
        session, supervisor, registry.EntitySearch(query="Hodan Cali")
    )
    assert total == 1
    [household] = rows
    assert household.label == "Hodan Cali Xasan"
    assert household.properties["national_id"] == "102938475"
    assert household.created_by_submission_id == submission.id
    assert len(registry.members_of(session, household)) == 3


def test_rejecting_discards_the_changes_and_nothing_enters_the_registry(
    submit, session, supervisor
):
    submission = submit()
    decision = service.set_review_state(
        session, supervisor, submission, "rejected", expected_version=0, comment="duplicate visit"
    )
    assert decision.registry_changes == 4
    assert change_states(session, submission) == ["discarded"] * 4
    assert session.scalar(select(Entity.id)) is None
    assert decision.comment is not None and decision.comment.body == "duplicate visit"


def test_has_issues_then_approved_steps_through_the_states_in_order(submit, session, supervisor):
    submission = submit()
    service.set_review_state(
        session, supervisor, submission, "has_issues", expected_version=0, comment="check phone"
    )
    assert change_states(session, submission) == ["pending"] * 4
    service.set_review_state(session, supervisor, submission, "approved", expected_version=1)
    steps = session.scalars(
        select(ReviewTransition)
        .where(ReviewTransition.submission_id == submission.id)
        .order_by(ReviewTransition.seq)
    ).all()
    assert [(s.seq, s.from_state, s.to_state, s.actor_name) for s in steps] == [
        (1, "received", "has_issues", supervisor.username),
        (2, "has_issues", "approved", supervisor.username),
    ]


@pytest.mark.parametrize("first", ["approved", "rejected"])
@pytest.mark.parametrize("then", ["approved", "rejected", "has_issues"])
def test_a_decision_is_final(submit, session, supervisor, first, then):
    submission = submit()
    service.set_review_state(session, supervisor, submission, first, expected_version=0)
    with pytest.raises(Conflict, match=f"already {first}"):
        service.set_review_state(session, supervisor, submission, then, expected_version=1)
    assert submission.review_state == first


def test_an_unprocessed_submission_cannot_be_approved_but_can_be_rejected(
    submit, session, supervisor
):
    submission = submit(process=False)
    assert submission.processing_state == "queued"
    with pytest.raises(Conflict, match="before it is processed"):
        service.set_review_state(session, supervisor, submission, "approved", expected_version=0)
    service.set_review_state(session, supervisor, submission, "rejected", expected_version=0)
    assert submission.review_state == "rejected"


def test_received_and_edited_are_not_decisions(submit, session, supervisor):
    submission = submit()
    for state in ("received", "edited", "published"):
        with pytest.raises(ValidationFailed):
            service.set_review_state(session, supervisor, submission, state, expected_version=0)


def test_acting_on_a_stale_version_is_a_conflict_naming_who_acted(submit, session, supervisor):
    submission = submit()
    service.set_review_state(session, supervisor, submission, "has_issues", expected_version=0)
    with pytest.raises(Conflict) as stale:
        service.set_review_state(session, supervisor, submission, "approved", expected_version=0)
    assert "Has issues" in stale.value.message and supervisor.username in stale.value.message
    assert stale.value.details == {"review_state": "has_issues", "version": 1}
    assert change_states(session, submission) == ["pending"] * 4


def test_the_second_of_two_supervisors_on_the_same_version_gets_409_from_the_api(
    submit, session, supervisor, admin, client, bearer
):
    submission = submit()
    url = f"/api/v1/review/submissions/{submission.id}/decision"
    first = client.post(
        url, json={"state": "approved", "expected_version": 0}, headers=bearer(supervisor)
    )
    assert first.status_code == 200, first.get_json()
    assert first.get_json() == {
        "review_state": "approved",
        "review_version": 1,
        "registry_changes": 4,
    }
    second = client.post(
        url,
        json={"state": "rejected", "expected_version": 0, "comment": "no"},
        headers=bearer(admin),
    )
    assert second.status_code == 409
    assert second.get_json()["error"]["code"] == "conflict"
    session.expire_all()
    assert change_states(session, submission) == ["applied"] * 4


def test_the_page_answers_409_and_shows_the_reason_to_the_slower_supervisor(
    submit, session, supervisor, browser
):
    submission = submit()
    service.set_review_state(session, supervisor, submission, "has_issues", expected_version=0)
    browser.login(supervisor.username)
    response = browser.post(
        f"/review/submissions/{submission.id}/decision",
        {"state": "approved", "expected_version": "0"},
    )
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "someone else reviewed this submission" in page
    assert 'name="expected_version" value="1"' in page  # drawn again from the new version


def test_comments_form_a_thread_in_order_with_their_authors(submit, session, supervisor, admin):
    submission = submit()
    service.add_comment(session, supervisor, submission, "  Phone number looks short.  ")
    service.set_review_state(
        session, admin, submission, "has_issues", expected_version=0, comment="Call her back"
    )
    service.add_comment(session, supervisor, submission, "Called: fixed on the tablet.")
    thread = service.comments_of(session, submission)
    assert [(c.author_name, c.body) for c in thread] == [
        (supervisor.username, "Phone number looks short."),
        (admin.username, "Call her back"),
        (supervisor.username, "Called: fixed on the tablet."),
    ]
    assert [c.transition.to_state if c.transition else None for c in thread] == [
        None,
        "has_issues",
        None,
    ]
    assert submission.review_state == "has_issues"  # comments alone do not change it


@pytest.mark.parametrize("body", ["", "   ", "x" * 5001])
def test_an_empty_or_overlong_comment_is_refused(submit, session, supervisor, body):
    submission = submit()
    with pytest.raises(ValidationFailed):
        service.add_comment(session, supervisor, submission, body)
    assert session.scalar(select(SubmissionComment.id)) is None


def test_every_review_action_is_in_the_audit_log(submit, session, supervisor):
    submission = submit()
    service.add_comment(session, supervisor, submission, "looking")
    service.edit_submission(
        session, supervisor, submission, {"head/phone": "0615000000"}, expected_version=0
    )
    service.set_review_state(session, supervisor, submission, "has_issues", expected_version=1)
    service.set_review_state(session, supervisor, submission, "approved", expected_version=2)
    assert audit_actions(session, submission) == [
        "review.comment",
        "review.edit",
        "review.has_issues",
        "review.approved",
    ]
    approved = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "review.approved")
    ).one()
    assert approved.actor_name == supervisor.username
    assert approved.details == {"from_state": "has_issues", "version": 3, "registry_changes": 4}


def test_supervisors_act_only_in_their_districts(
    submit, session, supervisor, wadajir_supervisor, enumerator
):
    submission = submit()
    with pytest.raises(Forbidden):
        service.get_submission(session, wadajir_supervisor, submission.id)
    with pytest.raises(Forbidden):
        service.set_review_state(
            session, wadajir_supervisor, submission, "approved", expected_version=0
        )
    with pytest.raises(Forbidden):
        service.add_comment(session, wadajir_supervisor, submission, "not mine")
    with pytest.raises(Forbidden):
        service.set_review_state(session, enumerator, submission, "approved", expected_version=0)
    assert submission.review_state == "received"


def test_another_districts_submission_is_403_by_url_and_by_api(
    submit, wadajir_supervisor, browser, client, bearer
):
    submission = submit()
    browser.login(wadajir_supervisor.username)
    for url in (
        f"/review/submissions/{submission.id}",
        f"/review/submissions/{submission.id}/edit",
        f"/review/submissions/{submission.id}/files/dwelling-1732620000000.jpg",
    ):
        assert browser.get(url).status_code == 403, url
    assert (
        browser.post(
            f"/review/submissions/{submission.id}/decision",
            {"state": "approved", "expected_version": "0"},
        ).status_code
        == 403
    )
    headers = bearer(wadajir_supervisor)
    assert (
        client.get(f"/api/v1/review/submissions/{submission.id}", headers=headers).status_code
        == 403
    )
    response = client.post(
        f"/api/v1/review/submissions/{submission.id}/decision",
        json={"state": "approved", "expected_version": 0},
        headers=headers,
    )
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
