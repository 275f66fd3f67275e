"""`diiwaan registry relink`: the whole list matched again in chunks, each a transaction
of its own — keys filed again, the model refitted on the pairs' counted levels, every
candidate pair scored once, decisions kept, nothing merged."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from server.db import db
from server.registry import linking
from server.registry.models import HOUSEHOLDS, Entity, MatchCandidate, MatchKey, MatchModel
from tests.factories import DistrictFactory, HouseholdFactory, MemberFactory

FAMILIES = 40  # each registered twice: 40 strong pairs, and namesakes' pairs besides
FIRST = ["Maxamed", "Cali", "Xasan", "Cumar", "Yuusuf", "Cabdi"]
FATHER = ["Axmed", "Nuur", "Faarax", "Jaamac", "Warsame"]


def registered(district: Any, name: str, village: str, phone: str, wife: str) -> Entity:
    household = HouseholdFactory(
        properties={"head_name": name, "village": village, "phone": phone},
        district_id=district.id,
    )
    for full_name, sex, born in ((name, "male", "1980"), (wife, "female", "1985")):
        MemberFactory(
            properties={"full_name": full_name, "sex": sex, "date_of_birth": born},
            district_id=district.id,
            household_id=household.id,
        )
    return household


@pytest.fixture
def registry(session: Session) -> dict[str, Any]:
    """Families registered twice (the phone written another way the second time), heads
    sharing first names across families (namesakes), nothing matched yet."""
    district = DistrictFactory(code="baydhabo", name="Baydhabo")
    pairs = []
    for number in range(FAMILIES):
        name = f"{FIRST[number % 6]} {FATHER[number % 5]} Xirsi"
        village = f"Tuulo {number % 3}"
        wife = f"Faadumo {FATHER[(number + 1) % 5]} Cabdi"
        first = registered(district, name, village, f"06155{number:05d}", wife)
        again = registered(district, name, village, f"+25261 55{number:05d}", wife)
        pairs.append((first.id, again.id))
    session.flush()
    return {"district": district, "families": pairs}


def pairs_in(session: Session) -> dict[frozenset[Any], MatchCandidate]:
    session.expire_all()
    return {
        frozenset((p.entity_id, p.candidate_id)): p
        for p in session.scalars(
            select(MatchCandidate).where(MatchCandidate.list_name == HOUSEHOLDS)
        )
    }


def test_relink_files_keys_refits_and_sends_strong_pairs_to_review(app, session, registry):
    families = registry["families"]
    decided = MatchCandidate(
        list_name=HOUSEHOLDS,
        entity_id=families[0][1],
        candidate_id=families[0][0],
        weight=1.5,
        probability=0.5,
        contributions={},
        band="review",
        state="separate",
        district_id=registry["district"].id,
    )
    session.add(decided)
    session.flush()

    result = app.test_cli_runner().invoke(args=["registry", "relink", "--list", HOUSEHOLDS])

    assert result.exit_code == 0, result.output
    records = 2 * FAMILIES
    assert f"households: {records} records" in result.output
    keys = session.scalar(select(func.count(func.distinct(MatchKey.entity_id))))
    assert keys == records
    # EM counted each candidate pair once, as the pass that scores them did.
    compared = re.search(r"(\d+) candidate pairs", result.output)
    model = session.get(MatchModel, HOUSEHOLDS)
    assert compared is not None and model is not None
    assert model.pairs == int(compared.group(1)) >= 50
    found = pairs_in(session)
    for first, again in families[1:]:
        pair = found[frozenset((first, again))]
        assert (pair.state, pair.band) == ("open", "review")  # however strong: never merged
        assert pair.weight >= linking.thresholds().review
    kept = found[frozenset(families[0])]
    assert (kept.state, kept.weight) == ("separate", 1.5)
    assert session.scalar(select(func.count()).where(Entity.merged_into_id.is_not(None))) == 0


def test_relink_in_small_chunks_compares_each_pair_once_as_in_one_chunk(session, registry):
    """The pairs a chunk leaves to the next are each compared once, from whichever record
    comes first, and the outcome does not depend on the chunk size."""
    steps: list[int] = []

    def outcome(chunk: int) -> tuple[dict[str, int], dict[frozenset[Any], tuple[str, float]]]:
        session.execute(delete(MatchCandidate))
        counts = linking.relink(
            db.job_session, HOUSEHOLDS, refit=False, chunk=chunk, progress=steps.append
        )
        return counts, {
            key: (pair.band, round(pair.weight, 6)) for key, pair in pairs_in(session).items()
        }

    whole = outcome(1000)
    assert sum(steps) == 2 * 2 * FAMILIES  # two passes without a refit
    steps.clear()
    chunked = outcome(7)
    one_pass = [7] * (2 * FAMILIES // 7) + [2 * FAMILIES % 7]
    assert steps == one_pass + one_pass
    assert chunked == whole
    counts, pairs = chunked
    assert counts["pairs"] >= len(pairs) >= FAMILIES
    session.expire_all()
    orientations = session.execute(
        select(MatchCandidate.entity_id, MatchCandidate.candidate_id)
    ).all()
    assert len({frozenset(o) for o in orientations}) == len(orientations)  # no pair twice


def test_a_relink_stopped_half_way_keeps_the_chunks_it_committed(session, registry, monkeypatch):
    session.execute(delete(MatchKey))
    session.flush()
    file_chunk = linking._index_all
    chunks = 0

    def failing_on_the_third(*args: Any, **kwargs: Any) -> Any:
        nonlocal chunks
        chunks += 1
        if chunks == 3:
            raise RuntimeError("the machine went down")
        return file_chunk(*args, **kwargs)

    monkeypatch.setattr(linking, "_index_all", failing_on_the_third)
    with pytest.raises(RuntimeError, match="went down"):
        linking.relink(db.job_session, HOUSEHOLDS, refit=False, chunk=5)
    session.expire_all()
    assert session.scalar(select(func.count(func.distinct(MatchKey.entity_id)))) == 10


def test_a_refit_with_too_few_likely_duplicates_keeps_the_model(
    app, session, registry, monkeypatch
):
    """EM learns duplicates from the pairs; with fewer likely ones than it needs (here made
    more than the registry has), the model stays as it was and the command says why."""
    monkeypatch.setattr(linking, "REFIT_MIN_LIKELY", 1000)

    result = app.test_cli_runner().invoke(args=["registry", "relink", "--list", HOUSEHOLDS])

    assert result.exit_code == 0, result.output
    kept = re.search(r"model kept: (\d+) likely duplicates", result.output)
    assert kept is not None and FAMILIES <= int(kept.group(1)) < 1000
    assert session.get(MatchModel, HOUSEHOLDS) is None
    monkeypatch.setattr(linking, "REFIT_MIN_LIKELY", FAMILIES)
    again = app.test_cli_runner().invoke(args=["registry", "relink", "--list", HOUSEHOLDS])
    assert "model refitted with EM on" in again.output
    session.expire_all()
    assert session.get(MatchModel, HOUSEHOLDS) is not None


def _siblings_model() -> Any:
    """The kind of fit EM gave for the members of a registry without duplicates: the
    group it took for matches was siblings, so a shared birth date counted against."""
    from server.registry import matching

    data = matching.default_model().to_dict()
    m = data["m"]["date_of_birth"]
    m["different"] += m["exact"] - 0.0001
    m["exact"] = 0.0001  # a shared birth date: −4.3, a different one: −0.8
    return matching.FellegiSunterModel.from_dict(data)


def test_a_refit_that_cannot_describe_duplicates_is_refused(app, session, registry, monkeypatch):
    from server.registry import matching

    assert matching.implausible_fit(matching.default_model()) is None
    assert matching.implausible_fit(matching.default_model(household=True)) is None
    reason = matching.implausible_fit(_siblings_model())
    assert reason is not None and reason.startswith("date_of_birth exact would weigh")
    monkeypatch.setattr(matching, "estimate_em", lambda *_args, **_kw: _siblings_model())

    result = app.test_cli_runner().invoke(args=["registry", "relink", "--list", HOUSEHOLDS])

    assert result.exit_code == 0, result.output
    assert "model kept: EM's fit on the pairs was refused, as date_of_birth exact" in (
        result.output
    )
    session.expire_all()
    assert session.get(MatchModel, HOUSEHOLDS) is None  # the default model still scores
    assert session.scalar(select(func.count()).select_from(MatchCandidate)) >= FAMILIES


def test_a_stored_fit_that_cannot_describe_duplicates_is_not_used(session, caplog):
    """A members' model stored by a relink from before fits were checked."""
    from server.db import utcnow
    from server.registry import matching
    from server.registry.models import MEMBERS

    session.add(
        MatchModel(
            list_name=MEMBERS, parameters=_siblings_model().to_dict(), fitted_at=utcnow(), pairs=9
        )
    )
    session.flush()

    assert linking.model_for(session, MEMBERS) == matching.default_model()
    assert any("is not used: date_of_birth exact" in r.getMessage() for r in caplog.records)
