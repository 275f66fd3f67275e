"""The review queue (filters, keyset pages, scoping), bulk approval and the dashboard."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from server.accounts.models import AuditEvent
from server.intake.models import Submission
from server.review import service
from server.review.service import QueueFilter

START = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)


def add_rows(session, version, district, submitter, count, *, start=START, **fields):
    """Submission rows as the queue sees them, one an hour from `start` (no bytes behind
    them: the queue never reads the XML)."""
    rows = []
    for n in range(count):
        row = Submission(
            form_pk=version.form_pk,
            form_version_id=version.id,
            instance_id=f"uuid:{uuid.uuid4()}",
            instance_name=f"HH {n}",
            submitter_id=submitter.id,
            district_id=district.id,
            received_at=start + dt.timedelta(hours=n),
            xml_sha256="0" * 64,
            xml_size=1,
            processing_state=fields.get("processing_state", "processed"),
            review_state=fields.get("review_state", "received"),
            data={},
        )
        session.add(row)
        rows.append(row)
    session.flush()
    return rows


def names(page) -> list[str]:
    return [row.instance_name for row in page.rows]


def test_the_queue_pages_by_keyset_both_ways_in_either_order(
    household, hodan, enumerator, supervisor, session
):
    add_rows(session, household, hodan, enumerator, 5)
    first = service.queue(session, supervisor, QueueFilter(per_page=2))
    assert (names(first), first.total, first.previous_cursor) == (["HH 4", "HH 3"], 5, None)
    second = service.queue(session, supervisor, QueueFilter(per_page=2, after=first.next_cursor))
    assert names(second) == ["HH 2", "HH 1"]
    third = service.queue(session, supervisor, QueueFilter(per_page=2, after=second.next_cursor))
    assert (names(third), third.next_cursor) == (["HH 0"], None)
    back = service.queue(session, supervisor, QueueFilter(per_page=2, before=third.previous_cursor))
    assert names(back) == ["HH 2", "HH 1"]
    back_again = service.queue(
        session, supervisor, QueueFilter(per_page=2, before=back.previous_cursor)
    )
    assert (names(back_again), back_again.previous_cursor) == (["HH 4", "HH 3"], None)
    oldest = service.queue(session, supervisor, QueueFilter(per_page=3, order="oldest"))
    assert names(oldest) == ["HH 0", "HH 1", "HH 2"]
    rest = service.queue(
        session, supervisor, QueueFilter(per_page=3, order="oldest", after=oldest.next_cursor)
    )
    assert names(rest) == ["HH 3", "HH 4"]


def test_rows_received_in_the_same_instant_are_neither_lost_nor_repeated(
    household, hodan, enumerator, supervisor, session
):
    rows = add_rows(session, household, hodan, enumerator, 5)
    for row in rows:
        row.received_at = START
    session.flush()
    seen, cursor = [], None
    while True:
        page = service.queue(session, supervisor, QueueFilter(per_page=2, after=cursor))
        seen += [row.id for row in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(row.id for row in rows) and len(seen) == 5


def test_filters_by_state_district_enumerator_form_and_date(
    household, hodan, wadajir, enumerator, wadajir_enumerator, admin, session
):
    add_rows(session, household, hodan, enumerator, 3)
    add_rows(session, household, hodan, enumerator, 2, review_state="approved")
    add_rows(session, household, wadajir, wadajir_enumerator, 4, start=START + dt.timedelta(days=2))

    def total(**filters) -> int:
        return service.queue(session, admin, QueueFilter(**filters)).total

    assert total() == 7  # waiting: received, has issues, edited
    assert total(state="all") == 9
    assert total(state="approved") == 2
    assert total(district_id=hodan.id) == 3
    assert total(submitter_id=wadajir_enumerator.id) == 4
    assert total(form_id="household_registration") == 7
    assert total(form_id="no_such_form") == 0
    assert total(since=(START + dt.timedelta(days=1)).date()) == 4
    assert total(until=START.date()) == 3


def test_a_supervisor_sees_only_their_districts_and_a_bad_cursor_is_400(
    household, hodan, wadajir, enumerator, wadajir_enumerator, supervisor, session, browser
):
    add_rows(session, household, hodan, enumerator, 2)
    add_rows(session, household, wadajir, wadajir_enumerator, 3)
    page = service.queue(session, supervisor, QueueFilter(state="all"))
    assert page.total == 2 and {row.district_id for row in page.rows} == {hodan.id}
    assert service.queue(session, supervisor, QueueFilter(district_id=wadajir.id)).total == 0
    browser.login(supervisor.username)
    assert browser.get("/review/submissions?after=not-a-cursor").status_code == 400
    assert browser.get("/review/submissions?state=nonsense").status_code == 400


def test_the_queue_api_pages_with_cursors(
    household, hodan, enumerator, supervisor, session, client, bearer
):
    add_rows(session, household, hodan, enumerator, 3)
    headers = bearer(supervisor)
    first = client.get("/api/v1/review/submissions?per_page=2", headers=headers).get_json()
    assert first["total"] == 3 and len(first["submissions"]) == 2
    assert first["submissions"][0]["instance_name"] == "HH 2"
    assert first["submissions"][0]["district"] == "Hodan"
    rest = client.get(
        f"/api/v1/review/submissions?per_page=2&after={first['next_cursor']}", headers=headers
    ).get_json()
    assert [s["instance_name"] for s in rest["submissions"]] == ["HH 0"]


def test_bulk_approval_counts_what_it_will_do_and_skips_what_was_decided_meanwhile(
    submit, session, supervisor, admin
):
    first, second, third = submit(), submit(), submit()
    unprocessed = submit(process=False)
    unprocessed.processing_state = "failed"  # stays out of the worker's way below
    session.flush()
    everything_waiting = QueueFilter()
    assert service.count_approvable(session, supervisor, everything_waiting) == 3
    confirmed_at = service.utcnow()
    later = submit()  # arrives after the confirmation page was shown
    service.set_review_state(session, admin, second, "rejected", expected_version=0)
    result = service.bulk_approve(session, supervisor, everything_waiting, cutoff=confirmed_at)
    assert (result.approved, result.skipped, result.registry_changes) == (2, 0, 8)
    session.expire_all()
    states = {
        s.id: s.review_state
        for s in session.scalars(select(Submission).where(Submission.current.is_(True)))
    }
    assert states[first.id] == states[third.id] == "approved"
    assert states[second.id] == "rejected"
    assert states[unprocessed.id] == states[later.id] == "received"
    [event] = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "review.bulk_approve")
    ).all()
    assert event.details["approved"] == 2
    per_submission = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "review.approved")
    ).all()
    assert {e.target_id for e in per_submission} == {str(first.id), str(third.id)}
    assert all(e.details["bulk"] is True for e in per_submission)


def test_bulk_approval_page_confirms_the_number_then_approves(submit, supervisor, browser, session):
    submit(), submit()
    browser.login(supervisor.username)
    confirm = browser.get("/review/bulk-approve?state=waiting")
    page = confirm.get_data(as_text=True)
    assert "Approve 2 submissions?" in page
    cutoff = page.split('name="cutoff" value="')[1].split('"')[0]
    done = browser.post("/review/bulk-approve", {"cutoff": cutoff, "state": "waiting"})
    assert done.status_code == 302
    assert "Approved 2 submissions." in browser.get(done.headers["Location"]).get_data(as_text=True)


def test_bulk_approval_stays_in_the_supervisors_districts(
    submit, session, supervisor, wadajir_supervisor, wadajir_enumerator
):
    submit(), submit(by=wadajir_enumerator)
    result = service.bulk_approve(session, wadajir_supervisor, QueueFilter())
    assert result.approved == 1
    assert service.count_approvable(session, supervisor, QueueFilter()) == 1


def test_the_dashboard_counts_by_state_district_enumerator_and_day(
    household, hodan, wadajir, enumerator, wadajir_enumerator, admin, supervisor, session
):
    today = service.utcnow().replace(hour=6, minute=0, second=0, microsecond=0)
    add_rows(session, household, hodan, enumerator, 3, start=today - dt.timedelta(days=2))
    add_rows(session, household, hodan, enumerator, 2, start=today, review_state="rejected")
    add_rows(
        session, household, wadajir, wadajir_enumerator, 1, start=today, review_state="rejected"
    )
    add_rows(
        session, household, wadajir, wadajir_enumerator, 4, start=today - dt.timedelta(days=40)
    )
    board = service.dashboard(session, admin)
    assert board.by_state == {
        "received": 7,
        "has_issues": 0,
        "edited": 0,
        "approved": 0,
        "rejected": 3,
    }
    assert board.waiting == 7 and board.total == 10
    assert [(row["name"], row["total"]) for row in board.by_district] == [
        ("Hodan", 5),
        ("Wadajir", 5),
    ]
    assert [(row["username"], row["rejected"]) for row in board.most_rejected] == [
        ("asha", 2),
        ("omar", 1),
    ]
    per_day = dict(board.per_day)
    assert len(board.per_day) == 30
    assert per_day[today.date()] == 3 and per_day[(today - dt.timedelta(days=2)).date()] == 3
    assert sum(per_day.values()) == 6  # the rows from 40 days ago are outside the chart
    assert board.oldest_waiting is not None
    assert board.oldest_waiting.received_at.date() == (today - dt.timedelta(days=40)).date()
    mine = service.dashboard(session, supervisor)
    assert mine.total == 5 and [row["name"] for row in mine.by_district] == ["Hodan"]


def test_the_dashboard_page_draws_a_bar_per_day(
    household, hodan, enumerator, supervisor, session, browser
):
    add_rows(session, household, hodan, enumerator, 2, start=service.utcnow())
    browser.login(supervisor.username)
    page = browser.get("/review").get_data(as_text=True)
    assert page.count('class="bar"') == 30
    assert "<svg" in page and "<script" not in page


@pytest.mark.parametrize("url", ["/review", "/review/submissions", "/review/bulk-approve"])
def test_enumerators_and_partners_cannot_open_review_pages(url, browser, enumerator):
    browser.login(enumerator.username)
    assert browser.get(url).status_code == 403
