"""Pending changes as the worker records them for a form applied on approval: one set per
submission, whole and in order, placed in the districts their codes name, and replaced —
never doubled — when a submission is processed again."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from forms.instance import parse_instance
from server.catalog import service as catalog
from server.intake import processing
from server.intake.models import Submission
from server.registry import service as registry
from server.registry.models import Entity, PendingChange
from tests.factories import DistrictFactory
from tests.server.registry import test_registry_flow as flow
from tests.server.registry.test_registry_flow import _admin, drain, household_xml, submit
from tests.support.xlsforms import MemberAnswers

field = flow.field  # the fixture of the end-to-end registry tests


@pytest.fixture
def on_approval(session, field):
    form = field["forms"]["household_registration"].form
    catalog.set_registry_mode(session, _admin(session), form, "approval")
    session.commit()
    return field


def members(count: int) -> list[MemberAnswers]:
    return [
        MemberAnswers(f"Qof {n} Cali Xasan", "female", "1990-01-0{n + 1}", "other", "no")
        for n in range(count)
    ]


def changes_of(session, submission) -> list[PendingChange]:
    session.expire_all()
    return registry.pending_changes(session, submission)


def test_a_batch_records_each_submissions_changes_whole_in_order_and_placed(session, on_approval):
    site = on_approval
    households = [("hodan", 1), ("wadajir", 3), ("hodan", 0), ("wadajir", 2)]  # code, members
    submissions = [
        submit(session, site, site["amina"], household_xml(district=code, members=members(n)))
        for code, n in households
    ]
    assert drain(site) == 4  # one batch: the worker leases up to 50 at once

    for submission, (code, count) in zip(submissions, households, strict=True):
        changes = changes_of(session, submission)
        assert [c.position for c in changes] == list(range(1 + count))
        assert [c.list_name for c in changes] == ["households"] + ["members"] * count
        assert all(c.state == "pending" and c.create for c in changes)
        household, *its_members = changes
        assert household.parent_entity_id is None
        assert household.district_id == site[code].id
        assert household.properties["district"] == code
        assert [m.properties["full_name"] for m in its_members] == [
            m.full_name for m in members(count)
        ]
        # Members name no district: they are placed where the submission is.
        for member in its_members:
            assert member.parent_entity_id == household.entity_id
            assert member.district_id == submission.district_id == site["hodan"].id
    assert session.scalar(select(Entity.id).limit(1)) is None  # nothing applied yet


def test_reprocessing_replaces_the_changes_still_pending_instead_of_adding_to_them(
    session, on_approval
):
    site = on_approval
    submission = submit(session, site, site["amina"], household_xml(members=members(2)))
    drain(site)
    first = changes_of(session, submission)
    assert len(first) == 3
    before = [(c.entity_id, c.list_name, c.properties) for c in first]
    for change in first:
        change.message = "from the first processing"
    processing.reprocess(session, failed_only=False, submission_ids=[submission.id])
    session.commit()
    assert drain(site) == 1

    again = changes_of(session, submission)
    assert [(c.entity_id, c.list_name, c.properties) for c in again] == before
    assert all(c.message is None and c.state == "pending" for c in again)  # new rows
    assert sorted(session.scalars(select(PendingChange.id)).all()) == [c.id for c in again]


def test_a_district_unknown_to_one_submission_is_looked_up_again_for_the_next(session, on_approval):
    """Codes found are remembered for the session; codes not found are not, so a district
    created meanwhile places the next submission that names it."""
    site = on_approval
    version = site["forms"]["household_registration"].version
    definition = catalog.definition_of(version)

    def record(code: str) -> PendingChange:
        xml = household_xml(district=code, members=[])
        # Read back as the worker loads it, with its form.
        submission = session.get(Submission, submit(session, site, site["amina"], xml).id)
        assert (
            registry.record_changes(session, [(submission, parse_instance(xml, definition))]) == 1
        )
        (household,) = registry.pending_changes(session, submission)
        return household

    assert record("galkayo").district_id == site["hodan"].id  # unknown: the submission's
    galkayo = DistrictFactory(code="galkayo", name="Galkayo", region=site["hodan"].region)
    session.flush()
    assert record("galkayo").district_id == galkayo.id
    assert record("wadajir").district_id == site["wadajir"].id


def test_one_call_for_a_batch_keeps_applied_replaces_pending_and_adds_new(session, on_approval):
    """The worker hands on a batch at once: a submission whose changes are in the
    registry gets none again, one processed before has its pending changes replaced, a
    new one gets its own — all in one call."""
    site = on_approval
    definition = catalog.definition_of(site["forms"]["household_registration"].version)
    xmls = [household_xml(members=members(count)) for count in (1, 2, 0)]
    applied, pending, new = (submit(session, site, site["amina"], xml) for xml in xmls)
    assert drain(site) == 3
    # changes_of expires what the session holds: each edit is flushed before the next.
    for change in changes_of(session, applied):
        change.state = "applied"
    session.flush()
    for change in changes_of(session, pending):
        change.message = "from the first processing"
    session.flush()
    for change in changes_of(session, new):
        session.delete(change)
    session.flush()

    processed = [
        (session.get(Submission, s.id), parse_instance(xml, definition))
        for s, xml in zip((applied, pending, new), xmls, strict=True)
    ]
    assert registry.record_changes(session, processed) == 3 + 1

    assert [c.state for c in changes_of(session, applied)] == ["applied"] * 2
    replaced = changes_of(session, pending)
    assert [(c.state, c.message) for c in replaced] == [("pending", None)] * 3  # new rows
    assert [c.list_name for c in changes_of(session, new)] == ["households"]


def test_reprocessing_a_rejected_submission_leaves_its_changes_discarded(session, on_approval):
    """Rejecting discards a submission's changes for good: an administrator reprocessing
    it later (after a fix elsewhere) does not make them pending again."""
    from server.review import service as review

    site = on_approval
    submission = submit(session, site, site["amina"], household_xml(members=members(1)))
    drain(site)
    mine = session.get(Submission, submission.id)
    review.set_review_state(session, _admin(session), mine, "rejected", expected_version=None)
    session.commit()
    assert [c.state for c in changes_of(session, submission)] == ["discarded"] * 2

    processing.reprocess(session, failed_only=False, submission_ids=[submission.id])
    session.commit()
    assert drain(site) == 1
    assert [c.state for c in changes_of(session, submission)] == ["discarded"] * 2
