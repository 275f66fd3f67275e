"""Specification of `server.registry.linking` against the database: candidates ranked by
the keys they share, the cap on how many are compared, and matching through them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from server.db import utcnow
from server.registry import linking, matching
from server.registry.models import HOUSEHOLDS, MEMBERS, Entity, MatchModel
from tests import factories
from tests.factories import DistrictFactory, HouseholdFactory, MemberFactory

CAP = 5
NAMESAKES = CAP + 3
# Ties in the ranking are broken by id; the household to be found gets the largest, so
# that only what it shares can bring it within the cap.
LAST_ID = uuid.UUID("ffffffff-ffff-4fff-bfff-ffffffffffff")


@pytest.fixture(autouse=True)
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linking, "MAX_CANDIDATES", CAP)


@pytest.fixture
def district(session: Session) -> Any:
    return DistrictFactory(code="afgooye", name="Afgooye")


def household(
    district: Any,
    head_name: str,
    village: str,
    *,
    phone: str | None = None,
    members: tuple[tuple[str, str, str], ...] = (),
    id: uuid.UUID | None = None,
    index: bool = True,
    born: str = "1985",
) -> Entity:
    """A registered household (the head among its members, as the form stores her), filed
    under its blocking keys unless `index` is false."""
    properties = {"head_name": head_name, "village": village}
    if phone:
        properties["phone"] = phone
    entity = HouseholdFactory(properties=properties, district_id=district.id, id=id or uuid.uuid4())
    for full_name, sex, date_of_birth in ((head_name, "female", born), *members):
        MemberFactory(
            properties={"full_name": full_name, "sex": sex, "date_of_birth": date_of_birth},
            district_id=district.id,
            household_id=entity.id,
        )
    if index:
        assert factories.current_session is not None
        linking.index(factories.current_session, entity)
    return entity


def candidates_of(session: Session, entity: Entity) -> list[uuid.UUID]:
    keys = linking.index(session, entity)
    session.flush()
    return [candidate.id for candidate in linking.candidates(session, entity, keys)]


def test_namesakes_of_the_same_village_rank_before_those_of_other_villages(session, district):
    for _ in range(NAMESAKES):
        household(district, "Maxamed Cali Xasan", "Buulo Mareer")
    same_village = household(district, "Maxamed Cali Xasan", "Ceelasha Biyaha", id=LAST_ID)
    new = household(district, "Mohamed Ali Hassan", "Elasha Biyaha", index=False)

    found = candidates_of(session, new)

    assert len(found) == CAP
    assert same_village.id in found


def test_a_shared_phone_outranks_more_namesakes_than_the_cap(session, district):
    # The returning family's head was written with two names only: it shares one name
    # pair with the new registration, against three for each namesake of the village.
    for number in range(NAMESAKES):
        household(district, "Maxamed Cali Xasan", "Ceelasha Biyaha", phone=f"06170000{number:02d}")
    returning = household(
        district, "Maxamed Cali", "Ceelasha Biyaha", phone="0615551234", id=LAST_ID
    )
    new = household(
        district, "Mohamed Ali Hassan", "Elasha Biyaha", phone="+252615551234", index=False
    )

    found = candidates_of(session, new)

    assert len(found) == CAP
    assert returning.id in found


def test_a_phone_shared_by_strangers_ranks_below_a_namesake_of_the_village(session, district):
    # An agent's phone, written on many registrations.
    for number in range(NAMESAKES):
        household(district, f"Cumar Nuur Shire {number}", "Buulo Mareer", phone="0615551234")
    namesake = household(district, "Maxamed Cali Xasan", "Ceelasha Biyaha", id=LAST_ID)
    new = household(
        district, "Mohamed Ali Hassan", "Elasha Biyaha", phone="0615551234", index=False
    )

    found = candidates_of(session, new)

    assert len(found) == CAP
    assert namesake.id in found


def test_a_household_with_more_namesakes_than_the_cap_still_links_to_its_earlier_record(
    session, district
):
    family = (("Faadumo Cumar Xuseen", "female", "1987"), ("Caasha Maxamed", "female", "2012"))
    for number in range(NAMESAKES):
        household(
            district,
            "Maxamed Cali Xasan",
            "Ceelasha Biyaha",
            phone=f"06170000{number:02d}",
            members=((f"Xaliimo Yuusuf {number}", "female", "1990"),),
        )
    earlier = household(
        district,
        "Maxamed Cali",
        "Ceelasha Biyaha",
        phone="0615551234",
        members=family,
        id=LAST_ID,
    )
    session.flush()
    new = household(
        district,
        "Mohamed Ali Hassan",
        "Elasha Biyaha",
        phone="+252615551234",
        members=(("Fadumo Omar Hussein", "female", "1987"), ("Aisha Mohamed", "female", "2012")),
        index=False,
    )

    pairs = linking.index_and_match(session, new, actor=None)

    assert [pair.candidate_id for pair in pairs if pair.band == "link"] == [earlier.id]
    assert new.merged_into_id == earlier.id


def test_the_cap_on_candidates_comes_from_the_settings(make_app):
    make_app(match_max_candidates=7)
    assert linking.MAX_CANDIDATES == 7


def test_the_households_floor_comes_from_the_settings(make_app):
    make_app(match_household_min_shared=3)
    assert linking.HOUSEHOLD_MIN_SHARED == 3
    make_app()
    assert linking.HOUSEHOLD_MIN_SHARED == linking.DEFAULT_HOUSEHOLD_MIN_SHARED == 2


def shared_weight(session: Session, a: Entity, b: Entity) -> int:
    shared = matching.blocking_keys(linking._record(session, a)) & matching.blocking_keys(
        linking._record(session, b)
    )
    return sum(matching.key_weight(key) for key in shared)


def test_a_household_sharing_one_name_key_alone_is_no_candidate(session, district, monkeypatch):
    # Given and father's names shared; another grandfather, another village, another year.
    other_village = household(district, "Maxamed Cali Warsame", "Buulo Mareer", born="1960")
    new = household(district, "Mohamed Ali Hassan", "Elasha Biyaha", index=False)
    assert shared_weight(session, new, other_village) == 1

    assert candidates_of(session, new) == []

    monkeypatch.setattr(linking, "HOUSEHOLD_MIN_SHARED", 1)
    assert candidates_of(session, new) == [other_village.id]


@pytest.mark.parametrize(
    ("head_name", "village", "phone"),
    [
        ("Maxamed Cali Warsame", "Ceelasha Biyaha", None),  # the name key within the village
        ("Cumar Nuur Shire", "Buulo Mareer", "0615551234"),  # the phone alone
    ],
)
def test_a_household_sharing_two_keys_or_an_identifier_is_a_candidate(
    session, district, head_name, village, phone
):
    earlier = household(district, head_name, village, phone=phone, born="1960")
    new = household(
        district, "Mohamed Ali Hassan", "Elasha Biyaha", phone="0615551234", index=False
    )
    assert shared_weight(session, new, earlier) in (2, 5)

    assert candidates_of(session, new) == [earlier.id]


def test_people_have_no_floor(session, district):
    # Members of two households sharing one name key: still compared (a person's keys are
    # fewer, and FEBRL loses 3 % of its true pairs with a floor of 2).
    first = household(district, "Cumar Nuur Shire", "Buulo Mareer")
    second = household(district, "Xasan Cabdi Yuusuf", "Elasha Biyaha")
    earlier = MemberFactory(
        properties={"full_name": "Maxamed Cali Warsame", "sex": "male", "date_of_birth": "1960"},
        district_id=district.id,
        household_id=first.id,
    )
    linking.index(session, earlier)
    new = MemberFactory(
        properties={"full_name": "Mohamed Ali Hassan", "sex": "male", "date_of_birth": "1990"},
        district_id=district.id,
        household_id=second.id,
    )
    session.flush()
    assert shared_weight(session, new, earlier) == 1

    assert candidates_of(session, new) == [earlier.id]


def test_the_model_is_the_latest_fit_of_the_list(session):
    assert linking.model_for(session, HOUSEHOLDS) == matching.default_model(household=True)
    fitted = matching.default_model(household=True)
    fitted.prior = 0.2
    stored = MatchModel(list_name=HOUSEHOLDS, parameters=fitted.to_dict(), fitted_at=utcnow())
    session.add(stored)
    session.flush()
    assert linking.model_for(session, HOUSEHOLDS).prior == pytest.approx(0.2)
    # A refit (as `relink` stores it) is used from the next record on.
    fitted.prior = 0.3
    stored.parameters = fitted.to_dict()
    stored.fitted_at = utcnow()
    session.flush()
    assert linking.model_for(session, HOUSEHOLDS).prior == pytest.approx(0.3)


def test_a_list_without_a_model_is_looked_up_once_a_transaction(session):
    """Applying a household asks for the model of each record (the household and every
    member): while none is stored, the database is asked once per list and transaction,
    and asked again in the next transaction, where one may have been stored since."""
    lookups = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "FROM registry_match_model" in statement:
            lookups.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(3):
            assert linking.model_for(session, HOUSEHOLDS) == matching.default_model(household=True)
            linking.model_for(session, MEMBERS)
        assert len(lookups) == 2
        session.commit()
        linking.model_for(session, HOUSEHOLDS)
        assert len(lookups) == 3
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_merged_and_deleted_households_are_no_candidates_and_take_no_place(session, district):
    survivor = household(district, "Cumar Nuur Shire", "Buulo Mareer")
    for number in range(CAP):
        folded = household(district, "Maxamed Cali Xasan", "Ceelasha Biyaha")
        if number == 0:
            folded.deleted = True
        else:
            folded.merged_into_id = survivor.id
    namesake = household(district, "Maxamed Cali Xasan", "Buulo Mareer", id=LAST_ID)
    new = household(district, "Mohamed Ali Hassan", "Elasha Biyaha", index=False)

    assert candidates_of(session, new) == [namesake.id]


def test_the_candidate_query_is_built_once_for_records_with_other_keys(session, district):
    household(district, "Maxamed Cali Xasan", "Ceelasha Biyaha", phone="0615551234")
    household(district, "Cumar Nuur Shire", "Buulo Mareer", phone="0617000001")
    first = household(
        district, "Mohamed Ali Hassan", "Elasha Biyaha", phone="0615551234", index=False
    )
    second = household(district, "Omar Nur Shire", "Bulo Marer", phone="0617000001", index=False)
    linking._candidate_statement.cache_clear()

    assert len(candidates_of(session, first)) == 1
    assert len(candidates_of(session, second)) == 1

    assert linking._candidate_statement.cache_info().misses == 1


def test_a_changed_cap_applies_to_the_next_record(session, district, monkeypatch):
    for _ in range(NAMESAKES):
        household(district, "Maxamed Cali Xasan", "Ceelasha Biyaha")
    new = household(district, "Mohamed Ali Hassan", "Elasha Biyaha", index=False)
    assert len(candidates_of(session, new)) == CAP

    monkeypatch.setattr(linking, "MAX_CANDIDATES", 2)

    assert len(candidates_of(session, new)) == 2


# The other members of a household: the mother and four children.
MOTHER_AND_CHILDREN = (
    ("Faadumo Cumar Xuseen", "female", "1987"),
    ("Caasha Maxamed", "female", "2012"),
    ("Nuur Maxamed", "male", "2014"),
    ("Xaliimo Maxamed", "female", "2016"),
    ("Cabdi Maxamed", "male", "2018"),
)


def test_a_household_too_small_to_share_most_members_is_dropped_before_its_members_are_read(
    session, district
):
    children = MOTHER_AND_CHILDREN
    # Another grandfather: the heads' names differ, and only members could make the pair.
    alone = household(district, "Maxamed Cali Warsame", "Ceelasha Biyaha")
    family = household(district, "Maxamed Cali Warsame", "Ceelasha Biyaha", members=children)
    new = household(
        district, "Maxamed Cali Xasan", "Ceelasha Biyaha", members=children, index=False
    )
    keys = linking.index(session, new)
    session.flush()
    found = linking.candidates(session, new, keys)
    assert {candidate.id: candidate.member_count for candidate in found} == {
        alone.id: 1,
        family.id: 6,
    }
    model = linking.model_for(session, HOUSEHOLDS)

    worth = linking._worth_comparing(session, model, linking._record(session, new), found, 4.0)

    # Five members besides the head against none (one, if her head were counted as a
    # member): at most 2/6 of them shared, too few to lift the pair.
    assert [candidate.id for candidate in worth] == [family.id]
    assert [pair.candidate_id for pair in linking.index_and_match(session, new, None)] == [
        family.id
    ]


def test_a_household_whose_members_birth_years_cannot_pair_is_dropped_before_its_members_are_read(
    session, district
):
    children = MOTHER_AND_CHILDREN
    # As many members as the new household, but born decades before its children: no
    # more than the mother could pair, and her alone cannot lift the pair.
    elders = tuple((name, sex, f"19{40 + n}") for n, (name, sex, _born) in enumerate(children))
    elders_household = household(
        district, "Maxamed Cali Warsame", "Ceelasha Biyaha", members=elders
    )
    family = household(district, "Maxamed Cali Warsame", "Ceelasha Biyaha", members=children)
    unreadable = household(
        district,
        "Maxamed Cali Warsame",
        "Ceelasha Biyaha",
        members=(*elders[:4], ("Cabdi Maxamed", "male", f"1944{linking._BIRTHS_SEPARATOR}2018")),
    )
    new = household(
        district, "Maxamed Cali Xasan", "Ceelasha Biyaha", members=children, index=False
    )
    keys = linking.index(session, new)
    session.flush()
    found = {candidate.id: candidate for candidate in linking.candidates(session, new, keys)}
    assert set(found) == {elders_household.id, family.id, unreadable.id}
    assert linking._member_births(found[family.id]) == [1985, 1987, 2012, 2014, 2016, 2018]
    assert linking._member_births(found[elders_household.id]) == [
        1985, 1940, 1941, 1942, 1943, 1944
    ]  # fmt: skip
    # A date holding the separator: the years cannot be told apart, so none is assumed.
    assert linking._member_births(found[unreadable.id]) is None
    model = linking.model_for(session, HOUSEHOLDS)

    worth = linking._worth_comparing(
        session, model, linking._record(session, new), list(found.values()), 4.0
    )

    assert {candidate.id for candidate in worth} == {family.id, unreadable.id}
    assert [pair.candidate_id for pair in linking.index_and_match(session, new, None)] == [
        family.id
    ]


def test_namesakes_of_one_village_are_not_linked_by_their_heads_counted_as_members(
    session, district
):
    # Each head is also a member of her household, as the household form stores her. The
    # heads agree, the wives do not: no member in common but the head, who is the head.
    earlier = household(
        district,
        "Maxamed Cali Xasan",
        "Ceelasha Biyaha",
        members=(("Faadumo Cumar Xuseen", "female", "1987"),),
    )
    new = household(
        district,
        "Maxamed Cali Xasan",
        "Ceelasha Biyaha",
        members=(("Xaliimo Yuusuf Warsame", "female", "1990"),),
        index=False,
    )

    pairs = linking.index_and_match(session, new, actor=None)

    assert [pair.candidate_id for pair in pairs] == [earlier.id]
    assert pairs[0].band == "review"
    assert pairs[0].contributions["members"] < 0
    assert new.merged_into_id is None


def test_a_namesake_of_the_village_past_the_link_threshold_is_reviewed_not_merged(
    session, district
):
    """The heads' names, their years of birth and the village agree, and one child of
    three: enough weight to link, but nothing a namesake's household would not also have
    (at a million households the wrong automatic merges looked like this). A phone
    settles it."""
    child = ("Cabdi Maxamed Cali", "male", "2015")
    earlier = household(
        district,
        "Maxamed Cali Xasan",
        "Ceelasha Biyaha",
        members=(child, ("Faadumo Cumar Xuseen", "female", "1987")),
    )
    others = (("Xaliimo Yuusuf Warsame", "female", "1990"), ("Hodan Maxamed", "female", "2019"))
    new = household(
        district, "Maxamed Cali Xasan", "Ceelasha Biyaha", members=(child, *others), index=False
    )
    model = linking.model_for(session, HOUSEHOLDS)
    limits = linking.thresholds()

    pairs = linking.index_and_match(session, new, actor=None)

    assert [pair.candidate_id for pair in pairs] == [earlier.id]
    assert pairs[0].weight >= limits.link
    assert pairs[0].contributions["members"] < model.weight_of("members", "50")
    assert pairs[0].band == "review"
    assert new.merged_into_id is None
    assert model.weight_of("phone", "exact") > 0

    with_phone = household(
        district,
        "Maxamed Cali Xasan",
        "Ceelasha Biyaha",
        members=(child,),
        phone="0615550000",
    )
    again = household(
        district,
        "Maxamed Cali Xasan",
        "Ceelasha Biyaha",
        members=(child,),
        phone="+252615550000",
        index=False,
    )
    linked = linking.index_and_match(session, again, actor=None)
    assert [(p.candidate_id, p.band) for p in linked if p.candidate_id == with_phone.id] == [
        (with_phone.id, "link")
    ]
    assert again.merged_into_id == with_phone.id


def test_the_head_is_left_out_of_the_members_by_relationship_else_by_name(session, district):
    entity = household(
        district,
        "Maxamed Cali Xasan",
        "Ceelasha Biyaha",
        members=(("Faadumo Cumar Xuseen", "female", "1987"),),
    )
    record = linking._record(session, entity)
    assert [member.name for member in record.members] == ["Faadumo Cumar Xuseen"]

    # Written differently from the household's head_name, but the roster says she is head.
    head_member = next(
        member
        for member in session.query(Entity).filter(Entity.household_id == entity.id)
        if member.properties["full_name"] == "Maxamed Cali Xasan"
    )
    head_member.properties = head_member.properties | {
        "full_name": "Mohamed Ali Hassan Warsame",
        "relationship": "head",
    }
    session.flush()
    record = linking._record(session, entity)
    assert [member.name for member in record.members] == ["Faadumo Cumar Xuseen"]
    assert record.head.name == "Maxamed Cali Xasan"


def test_candidates_members_are_those_of_members_of_in_its_order(session, district):
    children = (
        ("Nuur Maxamed", "male", "2014"),
        ("Caasha Maxamed", "female", "2012"),
        ("Faadumo Cumar Xuseen", "female", "1987"),
    )
    earlier = household(district, "Maxamed Cali Xasan", "Ceelasha Biyaha", members=children)
    merged = MemberFactory(
        properties={"full_name": "Xaliimo Maxamed", "sex": "female", "date_of_birth": "2016"},
        district_id=district.id,
        household_id=earlier.id,
        merged_into_id=earlier.id,
    )
    new = household(district, "Mohamed Ali Hassan", "Elasha Biyaha", members=children, index=False)
    keys = linking.index(session, new)
    session.flush()
    found = linking.candidates(session, new, keys)
    assert [candidate.id for candidate in found] == [earlier.id]

    records = linking._records(session, found)

    assert records[earlier.id] == linking.household_record(session, earlier)
    assert merged.id not in {member.id for member in records[earlier.id].members}
    assert found[0].member_count == len(children) + 1  # the head among them


def test_a_household_read_without_its_members_has_no_other_members(session, district):
    entity = household(district, "Maxamed Cali Xasan", "Ceelasha Biyaha")

    record = linking.household_record(session, entity, members=[])

    assert record.members == []
    assert record.head.name == "Maxamed Cali Xasan"
