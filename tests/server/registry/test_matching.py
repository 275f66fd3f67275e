"""Specification of `server.registry.matching`: names as the field writes them, blocking,
comparison levels, the Fellegi–Sunter model and its EM fit. Pure Python, no app."""

from __future__ import annotations

import json
import math
import random

import pytest

from server.registry import matching
from server.registry.matching import (
    ComparisonVector,
    FellegiSunterModel,
    HouseholdRecord,
    PersonRecord,
    Score,
    Thresholds,
    blocking_keys,
    classify,
    compare_dates,
    compare_households,
    compare_people,
    estimate_em,
    name_similarity,
    name_tokens,
    normalise_name,
    normalise_national_id,
    normalise_phone,
    phonetic_keys,
)
from server.registry.names import KNOWN_CLASHES, SKELETON_CLASHES

# ---------------------------------------------------------------- names

SAME_NAME = [
    ("Mohamed", "Mohammed", "Maxamed", "Muhammad", "Mohamad", "Mohammad"),
    ("Mohamud", "Maxamuud", "Mahmoud", "Mahmud"),
    ("Cabdi", "Abdi"),
    ("Xasan", "Hassan", "Hasan"),
    ("Cumar", "Omar", "Umar"),
    ("Faadumo", "Fatuma", "Fatima", "Fadumo"),
    ("Xaliimo", "Halima"),
    ("Cali", "Ali"),
    ("Axmed", "Ahmed", "Ahmad"),
    ("Ibraahim", "Ibrahim"),
    ("Yuusuf", "Yusuf", "Yousuf"),
    ("Khadiija", "Khadija", "Hadija"),
    ("Caasha", "Aisha", "Asha"),
    ("Maryan", "Mariam", "Maryam"),
    ("Sahra", "Zahra"),
    ("Nuur", "Noor", "Nur"),
    ("Shariif", "Sharif"),
    ("Cabdullaahi", "Abdullahi", "Abdullah", "Abdallah", "Abdulahi"),
    ("Cabdiraxmaan", "Abdirahman", "Abdulrahman", "Abd al-Rahman", "Abdi Rahman"),
    ("Cabdulqaadir", "Abdikadir", "Abdulkadir", "Abdul Kadir", "Abdiqadir"),
    ("Xuseen", "Hussein", "Husein"),
    ("Cusmaan", "Osman", "Usman"),
    ("Xaawo", "Hawa"),
    ("Seynab", "Zeinab", "Zaynab"),
]


@pytest.mark.parametrize("spellings", SAME_NAME, ids=lambda s: "/".join(s))
def test_somali_arabic_and_english_spellings_share_one_canonical_name(
    spellings: tuple[str, ...],
) -> None:
    canonical = {normalise_name(spelling) for spelling in spellings}
    assert len(canonical) == 1, canonical


def test_mohamed_and_mohamud_stay_different_names() -> None:
    assert normalise_name("Maxamed") != normalise_name("Maxamuud")


def test_unlisted_names_meet_through_the_somali_orthography() -> None:
    # None of these is in the variant list: c = ʿayn, x = ḥ, q = k, doubled vowels are long.
    assert normalise_name("Cabdiwahaab") == normalise_name("Abdiwahab")
    assert normalise_name("Muqtaar Xaashi") == normalise_name("Muktar Hashi")
    assert normalise_name("Ca'isha") == normalise_name("Caisha")


def test_only_known_clashes_in_the_fold() -> None:
    assert set(SKELETON_CLASHES) <= KNOWN_CLASHES
    assert normalise_name("Isaac") == "isaac"  # written as listed, still Isaac


@pytest.mark.parametrize(
    "written",
    [
        "Sheikh Ahmed Ali",
        "Sh. Ahmed Ali",
        "Haji Ahmed Ali",
        "Xaaji Axmed Cali",
        "Mr. Ahmed Ali",
        "Dr Ahmed Ali",
        "Ustaad Ahmed Ali",
        "Eng. Ahmed Ali",
        "ahmed bin ali",
        "AHMED  ALI",
    ],
)
def test_titles_connectors_case_and_spacing_are_dropped(written: str) -> None:
    assert normalise_name(written) == "ahmed ali"


def test_a_title_alone_is_kept_as_the_name() -> None:
    assert normalise_name("Haji") == "haji"
    assert normalise_name("Mama Wanjiru") == "wanjiru"


def test_abdi_alone_is_a_name_and_not_glued_to_the_father() -> None:
    assert name_tokens("Abdi Ahmed Ali") == ["abdi", "ahmed", "ali"]
    assert name_tokens("Abdi Rahman Ali") == ["abdirahman", "ali"]
    assert name_tokens("Abdulle Hirsi") == ["abdulle", "hirsi"]


def test_accents_and_apostrophes_fold_to_ascii() -> None:
    assert normalise_name("Sa\u2019iid Xasan") == normalise_name("Said Hassan")
    assert normalise_name("Fátima") == "fatima"


def _similarity(a: str, b: str) -> float:
    similarity = name_similarity(a, b)
    assert similarity is not None
    return similarity


def test_token_order_does_not_stop_a_match() -> None:
    assert _similarity("Wanjiru Mary Kamau", "Mary Wanjiru Kamau") >= 0.94
    assert 0.94 <= _similarity("Otieno John", "John Otieno") < 1.0


def test_patronymic_without_grandfather_stays_a_strong_match() -> None:
    assert 0.94 <= _similarity("Maxamed Cali Xasan", "Mohamed Ali") < 1.0
    vector = compare_people(
        PersonRecord("a", "Maxamed Cali Xasan"), PersonRecord("b", "Mohamed Ali")
    )
    assert vector.level("name") == "jw94"


def test_father_and_son_sharing_two_names_are_not_a_strong_match() -> None:
    father, son = "Ahmed Ali Hassan", "Mohamed Ahmed Ali"
    assert _similarity(father, son) < 0.88
    assert _similarity("Ahmed Ali", son) < 0.88
    assert _similarity("Ali Hassan", father) < 0.88  # the same two names, shifted


def test_identical_canonical_names_are_exact_and_missing_is_missing() -> None:
    a = PersonRecord("a", "Sh. Maxamed Cali Xasan")
    assert compare_people(a, PersonRecord("b", "MOHAMED ALI HASSAN")).level("name") == "exact"
    assert compare_people(a, PersonRecord("b", None)).level("name") == "missing"
    assert compare_people(a, PersonRecord("b", "Khadija Omar")).level("name") == "different"


def test_phonetic_keys_give_given_and_given_father_keys() -> None:
    keys = phonetic_keys("Maxamed Cali Xasan")
    assert keys == phonetic_keys("Mohamed Ali Hassan")
    assert {k.split(":")[0] for k in keys} == {"g", "gf", "p"}
    assert phonetic_keys("") == set()


# ---------------------------------------------------------------- identifiers


@pytest.mark.parametrize(
    "written",
    ["+252 61 555 1234", "00252615551234", "252615551234", "0615551234", "615551234",
     "+252-61-555-1234", "(061) 555 1234"],
)  # fmt: skip
def test_somali_phone_formats_normalise_to_one_number(written: str) -> None:
    assert normalise_phone(written) == "252615551234"


@pytest.mark.parametrize("written", ["+254 712 345 678", "0712345678", "254712345678"])
def test_kenyan_phone_formats_normalise_with_the_kenyan_default(written: str) -> None:
    assert normalise_phone(written, default_country_code="254") == "254712345678"


@pytest.mark.parametrize("written", [None, "", "N/A", "0000000000", "123", "-"])
def test_placeholder_phones_are_missing(written: str | None) -> None:
    assert normalise_phone(written) is None


def test_a_local_number_read_with_the_wrong_country_still_meets_itself() -> None:
    a = PersonRecord("a", "Ali", phone="+254 712 345 678")
    b = PersonRecord("b", "Ali", phone="0712345678")  # read as Somali by default
    assert compare_people(a, b).level("phone") == "exact"
    assert blocking_keys(a) & blocking_keys(b)


def test_national_ids_ignore_punctuation_case_and_lost_leading_zeros() -> None:
    assert normalise_national_id("so-000123456") == normalise_national_id("SO000123456")
    assert normalise_national_id("01234567") == normalise_national_id("1234567")
    assert normalise_national_id("N/A") is None
    assert normalise_national_id("0000") is None


def test_one_wrong_digit_in_an_identifier_is_a_typo_level() -> None:
    a = PersonRecord("a", national_id="12345678", phone="0615551234")
    b = PersonRecord("b", national_id="12345687", phone="0615551235")
    vector = compare_people(a, b)
    assert vector.level("national_id") == "typo"
    assert vector.level("phone") == "typo"
    c = PersonRecord("c", national_id="87654321", phone="0619999999")
    assert compare_people(a, c).level("national_id") == "different"


# ---------------------------------------------------------------- dates, sex, place


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        ("1985-03-12", "1985-03-12", "exact"),
        ("1985-03-12", "1985-12-03", "swap"),
        ("1985-03-12", "1985-03-13", "typo"),
        ("1985-03-12", "1985-03-27", "year_month"),
        ("1985-03", "1985-03-27", "year_month"),
        ("1985-03-12", "1985-07-30", "year"),
        ("1985", "1985-07-30", "year"),
        ("1985", "1986", "year_1"),
        ("1985-03-12", "1990-03-12", "different"),
        ("1985-03-12", None, "missing"),
        ("unknown", "1985", "missing"),
        ("12/03/1985", "1985-03-12", "exact"),  # day first, as written in Kenya and Somalia
        ("1985-13-03", "1985-03-13", "exact"),  # an impossible month is the day
        ("1985-03-45", "1985-03-12", "year_month"),  # an impossible day is dropped
        ("1985-03-12T00:00:00", "1985-03-12", "exact"),
    ],
)
def test_date_of_birth_levels(a: str | None, b: str | None, level: str) -> None:
    assert compare_dates(a, b) == level


def test_sex_agrees_across_languages() -> None:
    assert (
        compare_people(PersonRecord("a", sex="Lab"), PersonRecord("b", sex="male")).level("sex")
        == "agree"
    )
    assert (
        compare_people(PersonRecord("a", sex="F"), PersonRecord("b", sex="M")).level("sex")
        == "disagree"
    )
    assert (
        compare_people(PersonRecord("a", sex="?"), PersonRecord("b", sex="M")).level("sex")
        == "missing"
    )


@pytest.mark.parametrize(
    ("metres", "level"), [(20, "50m"), (120, "250m"), (600, "1km"), (5000, "far")]
)
def test_gps_levels_by_distance(metres: float, level: str) -> None:
    lat, lon = 2.0469, 45.3182  # Mogadishu
    north = lat + metres / 111_195  # one degree of latitude ≈ 111.2 km
    a = PersonRecord("a", latitude=lat, longitude=lon)
    b = PersonRecord("b", latitude=north, longitude=lon)
    vector = compare_people(a, b)
    assert vector.level("gps") == level
    assert vector.values["gps"] == pytest.approx(metres, rel=0.01)


def test_gps_zero_zero_is_missing() -> None:
    a = PersonRecord("a", latitude=0.0, longitude=0.0)
    b = PersonRecord("b", latitude=2.0, longitude=45.0)
    assert compare_people(a, b).level("gps") == "missing"


def test_village_spellings_in_both_registers_agree() -> None:
    a = PersonRecord("a", village="Ceelasha Biyaha")
    assert compare_people(a, PersonRecord("b", village="Elasha Biyaha")).level("village") == "exact"
    assert compare_people(a, PersonRecord("b", village="Lafoole")).level("village") == "different"


# ---------------------------------------------------------------- blocking


def _person(id: str, name: str, **fields: object) -> PersonRecord:
    return PersonRecord(id, name, **fields)  # type: ignore[arg-type]


def test_true_match_variants_share_a_blocking_key() -> None:
    base = _person("1", "Maxamed Cali Xasan", date_of_birth="1985", district="Hodan")
    variants = [
        _person("2", "Mohamed Ali Hassan", date_of_birth="1985", district="Hodan"),
        _person("3", "Mohamed Ali", district="Hodan"),  # grandfather and year missing
        _person("4", "Sh. Muhammad Ali Hasan", date_of_birth="1986", district="Hodan"),
        _person("5", "Mohamed Ali Hassan", date_of_birth="1985", district="Baidoa"),  # moved
        _person("6", "Mohamed Alli Hasan", district="Hodan"),  # typo in the father's name
    ]
    for variant in variants:
        assert blocking_keys(base) & blocking_keys(variant), variant.name


def test_kenyan_name_order_variants_share_a_blocking_key() -> None:
    a = _person("1", "Wanjiru Mary Kamau", district="Kiambu")
    b = _person("2", "Mary Wanjiru Kamau", district="Kiambu")
    c = _person("3", "Kamau Wanjiru", district="Kiambu")
    assert blocking_keys(a) & blocking_keys(b)
    assert blocking_keys(a) & blocking_keys(c)


def test_a_phone_or_id_alone_blocks_across_districts() -> None:
    a = _person("1", "Faadumo Xasan", phone="0615551234", district="Hodan")
    b = _person("2", "Hawa Omar", phone="+252615551234", district="Baidoa")
    assert blocking_keys(a) & blocking_keys(b) == {"ph:615551234"}
    c = _person("3", "X", national_id="SO-1234567", district="Hodan")
    d = _person("4", "Y", national_id="so1234567", district="Kismayo")
    assert blocking_keys(c) & blocking_keys(d) == {"nid:SO1234567"}


def test_unrelated_people_share_no_key() -> None:
    a = _person("1", "Maxamed Cali Xasan", date_of_birth="1985-03-12", district="Hodan",
                phone="0615551234", national_id="SO123456")  # fmt: skip
    others = [
        _person(
            "2", "Khadija Omar Yusuf", date_of_birth="1990", district="Hodan", phone="0617770000"
        ),
        _person("3", "Mohamed Ali Hassan", date_of_birth="1990", district="Kismayo"),
        _person("4", "Ibrahim Yusuf", date_of_birth="1985-03-12", district="Garowe"),
        _person("5", "Mohamed Ali Hassan", district="Baidoa"),
    ]
    for other in others:
        assert not blocking_keys(a) & blocking_keys(other), other


def test_siblings_are_not_blocked_together_by_their_shared_father_and_grandfather() -> None:
    a = _person("1", "Ahmed Ali Hassan", district="Hodan")
    b = _person("2", "Khadija Ali Hassan", district="Hodan")
    assert not blocking_keys(a) & blocking_keys(b)


def test_household_keys_include_the_heads_and_members_identifiers() -> None:
    head = _person("h", "Axmed Cali Xasan", district="Hodan")
    member = _person("m", "Faadumo Axmed", national_id="SO998877")
    household = HouseholdRecord("1", head, [member], phone="0615551234", district="Hodan")
    keys = blocking_keys(household)
    assert "nid:SO998877" in keys and "ph:615551234" in keys
    assert blocking_keys(head) <= keys
    # A head is filed under father + grandfather too; two common names get the initial of
    # the given name.
    assert "d:Hodan|n:AL+HSN|i:a" in keys
    assert all(len(key) <= 200 for key in keys)


def test_name_keys_are_filed_again_within_the_village_and_bring_no_candidate_of_their_own() -> None:
    def household(name: str, village: str | None) -> HouseholdRecord:
        return HouseholdRecord("1", _person("h", name), village=village, district="Hodan")

    keys = blocking_keys(household("Maxamed Cali Xasan", "Ceelasha Biyaha"))
    name_keys = {key for key in keys if key.startswith("d:Hodan|n:") and "|v:" not in key}
    village_keys = {key for key in keys if "|v:" in key}
    assert len(name_keys) == 3
    # Each is a name key narrowed to the village: its block lies inside the name key's.
    assert {key.split("|v:")[0] for key in village_keys} == name_keys
    # The village is folded, so both registers of its name meet.
    assert village_keys <= blocking_keys(household("Mohamed Ali Hassan", "Elasha Biyaha"))
    assert not village_keys & blocking_keys(household("Mohamed Ali Hassan", "Lafoole"))
    assert not any("|v:" in key for key in blocking_keys(household("Mohamed Ali Hassan", None)))


def test_an_identifier_counts_more_than_a_name_key_when_candidates_are_ranked() -> None:
    assert matching.key_weight("ph:615551234") == matching.key_weight("nid:SO1234567") == 5
    assert matching.key_weight("d:Hodan|n:AL+MHMT") == 1
    assert matching.key_weight("d:Hodan|n:AL+MHMT|v:elasha biyaha") == 1


# ---------------------------------------------------------------- households


def _household(
    id: str, head: str, members: list[tuple[str, str | None]], **kw: object
) -> HouseholdRecord:
    people = [PersonRecord(f"{id}-{i}", name, dob) for i, (name, dob) in enumerate(members)]
    return HouseholdRecord(id, PersonRecord(f"{id}-h", head), people, **kw)  # type: ignore[arg-type]


def test_member_overlap_levels() -> None:
    a = _household(
        "a",
        "Axmed Cali",
        [("Faadumo Xasan", "1990"), ("Cumar Axmed", "2010"), ("Caasha Axmed", "2012"),
         ("Nuur Axmed", "2015")],
    )  # fmt: skip
    same = _household(
        "b",
        "Ahmed Ali",
        [("Fatuma Hassan", "1991"), ("Omar Ahmed", "2010"), ("Aisha Ahmed", "2012"),
         ("Noor Ahmed", "2015")],
    )  # fmt: skip
    half = _household(
        "c",
        "Ahmed Ali",
        [("Fatuma Hassan", "1990"), ("Omar Ahmed", "2010"), ("Zahra Ahmed", "2020"),
         ("Yusuf Ahmed", "2022")],
    )  # fmt: skip
    one = _household(
        "d",
        "Ahmed Ali",
        [("Fatuma Hassan", "1990"), ("Hawa Ali", "1970"), ("Ali Ahmed", "2001"),
         ("Idris Ahmed", "2003")],
    )  # fmt: skip
    none = _household("e", "Ahmed Ali", [("Halima Yusuf", "1988")])
    empty = _household("f", "Ahmed Ali", [])
    assert compare_households(a, same).level("members") == "75"
    assert compare_households(a, half).level("members") == "50"
    assert compare_households(a, one).level("members") == "some"
    assert compare_households(a, none).level("members") == "none"
    assert compare_households(a, empty).level("members") == "missing"
    assert compare_households(a, same).values["members"] == 1.0


def test_one_household_compared_with_many_gives_each_pair_its_own_levels() -> None:
    a = _household("a", "Axmed Cali", [("Faadumo Xasan", "1990"), ("Cumar Axmed", "2010")],
                   village="Ceelasha Biyaha", phone="0615551234")  # fmt: skip
    others = [
        _household("b", "Ahmed Ali", [("Fatuma Hassan", "1991"), ("Omar Ahmed", "2010")],
                   village="Elasha Biyaha", phone="+252615551234"),
        _household("c", "Khadija Omar", [("Halima Yusuf", "1988")], village="Buulo Mareer"),
        _household("d", "Ahmed Ali", [], phone="0617000000"),
        _household("e", "Axmed Cali", [("Faadumo Xasan", "1990")], village="Ceelasha Biyaha"),
    ]  # fmt: skip
    comparer = matching.HouseholdComparer(a)

    in_turn = [comparer.compare(other) for other in others]

    # Each as if compared alone: nothing of one candidate stays for the next.
    assert in_turn == [matching.HouseholdComparer(a).compare(other) for other in others]
    assert [vector.level("members") for vector in in_turn] == ["75", "none", "missing", "50"]
    assert [vector.level("phone") for vector in in_turn] == [
        "exact",
        "missing",
        "different",
        "missing",
    ]
    assert [vector.level("village") for vector in in_turn] == [
        "exact",
        "different",
        "missing",
        "exact",
    ]


def test_households_compared_without_members_differ_only_in_the_members() -> None:
    a = _household("a", "Axmed Cali", [("Faadumo Xasan", "1990")], village="Hodan")
    b = _household("b", "Ahmed Ali", [("Fatuma Hassan", "1990")], village="Hodan")
    full = matching.HouseholdComparer(a).compare(b)
    bare = matching.HouseholdComparer(a).compare(b, members=False)
    assert full.level("members") == "75"
    assert bare.level("members") == "missing"
    assert {k: v for k, v in bare.levels.items() if k != "members"} == {
        k: v for k, v in full.levels.items() if k != "members"
    }


def test_household_sizes_bound_what_the_members_can_add() -> None:
    model = matching.default_model(household=True)
    weights = {level: model.weight_of("members", level) for level in matching.MEMBER_LEVELS}
    # Four against one: at most 2·1/5 of them shared, "some" at best.
    assert matching.members_weight_at_most(model, 4, 1) == max(weights["some"], weights["none"])
    assert matching.members_weight_at_most(model, 4, 2) == weights["50"]  # 4/6 at most
    assert matching.members_weight_at_most(model, 4, 4) == weights["75"]
    assert matching.members_weight_at_most(model, 4, 0) == 0.0  # missing
    households = [
        _household("a", "Axmed Cali", [("Faadumo Xasan", "1990"), ("Cumar Axmed", "2010"),
                                       ("Caasha Axmed", "2012"), ("Nuur Axmed", "2015")]),
        _household("b", "Ahmed Ali", [("Fatuma Hassan", "1991")]),
        _household("c", "Ahmed Ali", [("Fatuma Hassan", "1991"), ("Omar Ahmed", "2010")]),
        _household("d", "Ahmed Ali", [("Omar Ahmed", "2010"), ("Aisha Ahmed", "2012"),
                                      ("Noor Ahmed", "2015")]),
    ]  # fmt: skip
    for a in households:
        for b in households:
            level = compare_households(a, b).level("members")
            assert model.weight_of("members", level) <= matching.members_weight_at_most(
                model, len(a.members), len(b.members)
            )


def test_a_pair_reaches_a_weight_as_its_comparison_without_members_says() -> None:
    model = matching.default_model(household=True)
    a = _household("a", "Axmed Cali Xasan", [], village="Hodan", phone="0615551234")
    others = [
        _household("b", "Ahmed Ali Hassan", [], village="Hodan", phone="+252615551234"),
        _household("c", "Ahmed Ali Hassan", [], village="Buulo Mareer"),
        _household("d", "Khadija Omar", [], village="Hodan"),
        _household("e", "Khadija Omar", [], village="Buulo Mareer", phone="0617000000"),
    ]
    comparer = matching.HouseholdComparer(a)
    for other in others:
        weight = model.weight(comparer.compare(other, members=False))
        for members_at_most in (0.0, 3.9, 8.6):
            for minimum in (weight + members_at_most - 0.01, weight + members_at_most + 0.01):
                assert comparer.can_reach(
                    other, model, minimum, members_at_most=members_at_most
                ) == (weight + members_at_most >= minimum)


def test_the_heads_names_are_not_compared_when_nothing_else_leaves_a_chance(monkeypatch) -> None:
    model = matching.default_model(household=True)
    a = _household("a", "Axmed Cali Xasan", [], village="Hodan", phone="0615551234")
    stranger = _household("b", "Ahmed Ali Hassan", [], village="Buulo Mareer",
                          phone="0617000000")  # fmt: skip
    comparer = matching.HouseholdComparer(a)

    def no_names(*_: object) -> float:
        raise AssertionError("names compared")

    monkeypatch.setattr(matching, "_token_similarity", no_names)
    assert not comparer.can_reach(stranger, model, 4.0, members_at_most=0.3)


def test_the_weight_alone_is_the_scores_weight() -> None:
    model = matching.default_model(household=True)
    a = _household("a", "Axmed Cali", [("Faadumo Xasan", "1990")], village="Hodan",
                   phone="0615551234")  # fmt: skip
    b = _household("b", "Ahmed Ali", [("Fatuma Hassan", "1990")], village="Hodan")
    c = _household("c", "Khadija Omar", [], phone="0617000000")
    vectors = [compare_households(a, b), compare_households(a, c), compare_households(b, c)]
    vectors.append(matching.ComparisonVector({"head_name": "exact", "unknown": "x"}))
    for vector in vectors:
        assert model.weight(vector) == pytest.approx(model.score(vector).weight)
    assert len({round(model.weight(vector), 6) for vector in vectors}) == len(vectors)


def test_member_years_more_than_one_apart_are_different_people() -> None:
    a = _household("a", "Axmed Cali", [("Cumar Axmed", "2010")])
    b = _household("b", "Axmed Cali", [("Cumar Axmed", "2014")])
    assert compare_households(a, b).level("members") == "none"


def test_household_phone_and_place_fall_back_to_the_head() -> None:
    a = HouseholdRecord("a", PersonRecord("ah", "Ali", phone="0615551234"))
    b = HouseholdRecord("b", PersonRecord("bh", "Ali"), phone="+252615551234")
    vector = compare_households(a, b)
    assert vector.level("phone") == "exact"
    assert set(vector.levels) == set(matching.HOUSEHOLD_FIELDS)


# ---------------------------------------------------------------- the model


def test_contributions_sum_to_the_weight_and_explain_the_score() -> None:
    model = matching.default_model()
    a = PersonRecord("a", "Maxamed Cali Xasan", "1985-03-12", "M", "0615551234", None,
                     "Hodan", 2.05, 45.3, "Hodan")  # fmt: skip
    b = PersonRecord("b", "Mohamed Ali", "1985-12-03", "male", "+252615551234", "SO1",
                     "Hodan", 2.0501, 45.3, "Hodan")  # fmt: skip
    score = model.score(compare_people(a, b))
    assert score.weight == pytest.approx(sum(score.contributions.values()))
    assert set(score.contributions) == set(matching.PERSON_FIELDS)
    assert score.contributions["national_id"] == 0.0  # missing on one side: no evidence
    assert score.contributions["phone"] > 5
    assert score.contributions["date_of_birth"] > 0  # day and month swapped still counts
    odds = score.weight + math.log2(model.prior / (1 - model.prior))
    assert score.probability == pytest.approx(1 / (1 + 2**-odds))


def test_disagreeing_fields_pull_the_weight_down() -> None:
    model = matching.default_model()
    a = PersonRecord("a", "Maxamed Cali Xasan", "1985-03-12", "M")
    b = PersonRecord("b", "Khadija Omar Yusuf", "1962-07-01", "F")
    score = model.score(compare_people(a, b))
    assert all(value < 0 for value in score.contributions.values() if value)
    assert classify(score) == "new"


def test_classify_bands() -> None:
    limits = Thresholds(link=12.0, review=4.0)
    assert classify(Score(12.0, 0.9, {}), limits) == "link"
    assert classify(Score(11.9, 0.9, {}), limits) == "review"
    assert classify(Score(4.0, 0.5, {}), limits) == "review"
    assert classify(Score(3.9, 0.5, {}), limits) == "new"
    assert classify(Score(-20.0, 0.0, {})) == "new"
    assert classify(Score(100.0, 1.0, {})) == "link"


def household_vector(**levels: str) -> ComparisonVector:
    """A household pair's levels: the heads' names and the village agree, the rest is
    missing unless given."""
    return ComparisonVector(
        {
            **dict.fromkeys(matching.HOUSEHOLD_FIELDS, matching.MISSING),
            "head_name": "exact",
            "village": "exact",
            **levels,
        }
    )


@pytest.mark.parametrize(
    ("levels", "evidence"),
    [
        ({}, False),  # a namesake of the village: the head's name and the village alone
        ({"members": "some"}, False),  # one member in common
        ({"gps": "250m"}, False),  # the same neighbourhood
        ({"head_date_of_birth": "year"}, False),  # estimated ages agree
        ({"phone": "exact"}, True),
        ({"phone": "typo"}, True),
        ({"national_id": "typo"}, True),
        ({"head_date_of_birth": "swap"}, True),
        ({"head_date_of_birth": "year_month"}, True),
        ({"members": "50"}, True),
        ({"gps": "50m"}, True),  # the same dwelling, the heads' names agreeing
        ({"gps": "50m", "head_name": "jw94"}, True),
        ({"gps": "50m", "head_name": "jw88"}, False),  # a father and his son next door
        ({"phone": "exact", "head_name": "different"}, True),
    ],
)
def test_household_evidence_beyond_the_heads_name_and_the_village(levels, evidence) -> None:
    assert matching.household_evidence(household_vector(**levels)) is evidence


def test_a_household_past_the_link_threshold_without_evidence_goes_to_review() -> None:
    limits = Thresholds(link=10.0, review=4.0)
    strong = Score(10.5, 0.99, {})
    assert classify(strong, limits, evidence=False) == "review"
    assert matching.band_of(strong, household_vector(members="some"), limits) == "review"
    assert matching.band_of(strong, household_vector(phone="typo"), limits) == "link"
    assert matching.band_of(Score(3.0, 0.1, {}), household_vector(), limits) == "new"
    # People are banded by the thresholds (a member merges only with her household),
    # once their names, or a phone or ID, say they could be one person.
    person = ComparisonVector({"name": "exact", "village": "exact"}, {"name": 1.0})
    assert matching.band_of(strong, person, limits) == "link"


@pytest.mark.parametrize(
    ("levels", "similarity", "evidence"),
    [
        ({"name": "exact"}, 1.0, True),
        ({"name": "jw88"}, 0.9, True),
        ({"name": "different"}, 0.72, True),  # 'Zenab Abdi Rahman' / 'Sainab Abdu Lrahman'
        ({"name": "different"}, 0.57, False),  # 'Qamar Shire Hassen' / 'Sadia Ciisa ...'
        ({"name": "different", "phone": "typo"}, 0.57, True),
        ({"name": "different", "national_id": "exact"}, 0.4, True),
        ({"name": "different", "phone": "different"}, 0.57, False),
        ({"name": "missing"}, None, False),  # no name: a birth date alone
    ],
)
def test_person_evidence_a_name_alike_or_an_identifier(levels, similarity, evidence) -> None:
    vector = ComparisonVector(levels, {"name": similarity})
    assert matching.person_evidence(vector) is evidence


def test_strangers_born_on_one_day_are_not_match_candidates() -> None:
    """Seen in a 10,000-household registry: a birth date and a sex in common weigh more
    than the most different names take away, and strangers share birth dates."""
    model = matching.default_model()
    a = PersonRecord("a", "Agnes Wairimu Gitau", "2019-09-20", sex="female")
    b = PersonRecord("b", "Hawa Abdulle Farah", "2019-09-20", sex="female")
    vector = matching.compare_people(a, b)
    score = model.score(vector)
    assert vector.level("name") == "different" and score.weight >= Thresholds().review
    assert matching.band_of(score, vector) == "new"
    # The same child with her names misspelt and her grandfather left out stays one.
    c = PersonRecord("c", "Sainab Abdu Lrahman", "2019-09-20", sex="female")
    d = PersonRecord("d", "Zenab Abdi Rahman Khalid", "2019-09-20", sex="female")
    same = matching.compare_people(c, d)
    assert same.level("name") == "different"
    assert matching.band_of(model.score(same), same) == "review"


def test_thresholds_refuse_review_above_link() -> None:
    with pytest.raises(ValueError, match="review threshold"):
        Thresholds(link=4.0, review=8.0)


def test_model_round_trips_through_json() -> None:
    model = matching.default_model(household=True)
    stored = json.loads(json.dumps(model.to_dict()))
    assert FellegiSunterModel.from_dict(stored) == model
    person = matching.default_model()
    assert FellegiSunterModel.from_dict(person.to_dict()).fixed == {"village", "gps"}


def test_model_parameters_with_a_missing_level_are_refused_by_name() -> None:
    data = matching.default_model().to_dict()
    del data["m"]["sex"]["agree"]
    with pytest.raises(ValueError, match=r"m\['sex'\].*agree"):
        FellegiSunterModel.from_dict(data)
    with pytest.raises(ValueError, match="prior"):
        FellegiSunterModel({"a": ["y", "n"]}, {"a": {"y": 1, "n": 1}}, {"a": {"y": 1, "n": 1}}, 1.5)


# ---------------------------------------------------------------- EM

TRUE_M = {
    "name": {"yes": 0.9, "close": 0.08, "no": 0.02},
    "dob": {"yes": 0.8, "no": 0.2},
    "phone": {"yes": 0.7, "no": 0.3},
    "place": {"yes": 0.85, "no": 0.15},
}
TRUE_U = {
    "name": {"yes": 0.05, "close": 0.15, "no": 0.8},
    "dob": {"yes": 0.1, "no": 0.9},
    "phone": {"yes": 0.01, "no": 0.99},
    "place": {"yes": 0.3, "no": 0.7},
}
TRUE_PRIOR = 0.2


def _draw(probabilities: dict[str, float], rng: random.Random) -> str:
    return rng.choices(list(probabilities), list(probabilities.values()))[0]


def _synthetic_vectors(count: int, seed: int) -> list[ComparisonVector]:
    rng = random.Random(seed)
    vectors = []
    for _ in range(count):
        table = TRUE_M if rng.random() < TRUE_PRIOR else TRUE_U
        levels = {name: _draw(table[name], rng) for name in table}
        if rng.random() < 0.1:
            levels["phone"] = matching.MISSING  # missing values are skipped, not guessed
        vectors.append(ComparisonVector(levels))
    return vectors


def test_em_recovers_m_u_and_prior_from_unlabelled_pairs() -> None:
    fields = {name: list(levels) for name, levels in TRUE_M.items()}
    flat = {name: {lv: 1.0 for lv in levels} for name, levels in fields.items()}
    start_m = {name: dict(flat[name], yes=3.0) for name in fields}  # "yes" is likelier in m
    initial = FellegiSunterModel(fields, start_m, flat, prior=0.5)
    fitted = estimate_em(_synthetic_vectors(20_000, seed=1), initial, iterations=200)
    assert fitted.prior == pytest.approx(TRUE_PRIOR, abs=0.02)
    for name in fields:
        for level in fields[name]:
            assert fitted.m[name][level] == pytest.approx(TRUE_M[name][level], abs=0.03)
            assert fitted.u[name][level] == pytest.approx(TRUE_U[name][level], abs=0.03)


def test_em_keeps_fixed_fields_and_can_fix_the_prior() -> None:
    fields = {name: list(levels) for name, levels in TRUE_M.items()}
    initial = FellegiSunterModel(fields, TRUE_M, TRUE_U, prior=0.3, fixed=["place"])
    fitted = estimate_em(_synthetic_vectors(2_000, seed=2), initial, iterations=20, fix_prior=True)
    assert fitted.prior == 0.3
    assert fitted.m["place"] == initial.m["place"] and fitted.u["place"] == initial.u["place"]
    assert fitted.fixed == {"place"}


def test_estimate_u_from_random_pairs_counts_level_frequencies() -> None:
    vectors = [ComparisonVector({"sex": "agree"})] * 6 + [ComparisonVector({"sex": "disagree"})] * 4
    model = matching.default_model()
    with_u = matching.estimate_u(vectors, model, pseudo_count=0.0)
    assert with_u.u["sex"]["agree"] == pytest.approx(0.6)
    assert with_u.u["gps"] == model.u["gps"]  # fixed for people
    assert with_u.m == model.m


def test_em_on_no_pairs_returns_the_initial_model() -> None:
    model = matching.default_model()
    assert estimate_em([], model) is model


# ---------------------------------------------------------------- members of two households


def test_align_members_pairs_each_person_once() -> None:
    a = [
        PersonRecord("a1", "Faadumo Xasan", "1990", "F"),
        PersonRecord("a2", "Cumar Axmed", "2010", "M"),
    ]
    b = [
        PersonRecord("b1", "Omar Ahmed", "2010", "M"),
        PersonRecord("b2", "Fatuma Hassan", "1990", "F"),
        PersonRecord("b3", "Hawa Ahmed", "2024", "F"),
    ]
    pairs = {(m.a_id, m.b_id) for m in matching.align_members(a, b)}
    assert pairs == {("a1", "b2"), ("a2", "b1")}


def test_one_comparer_asked_under_two_models_bounds_the_name_by_each() -> None:
    # The best the head's name can add is worked out once per model, not once for all.
    a = _household("a", "Axmed Cali Xasan", [], village="Hodan")
    b = _household("b", "Ahmed Ali Hassan", [], village="Hodan")
    household = matching.default_model(household=True)
    fields = dict(household.fields)
    stronger_m = {name: dict(values) for name, values in household.m.items()}
    stronger_m["head_name"] = {"exact": 0.97, "jw94": 0.01, "jw88": 0.01, "different": 0.01}
    stronger = matching.FellegiSunterModel(fields, stronger_m, household.u, household.prior)
    comparer = matching.HouseholdComparer(a)
    for model in (household, stronger, household):
        weight = model.weight(comparer.compare(b, members=False))
        assert comparer.can_reach(b, model, weight, members_at_most=0.0)
        assert not comparer.can_reach(b, model, weight + 0.01, members_at_most=0.0)
        best = max(model.weight_of("head_name", level) for level in matching.NAME_LEVELS)
        without_name = weight - model.weight_of("head_name", comparer.compare(b).level("head_name"))
        assert not comparer.can_reach(b, model, without_name + best + 0.01, members_at_most=0.0)


def _most_pairs_by_brute_force(a: list[int | None], b: list[int | None]) -> int:
    """The largest matching of members within a year of each other (unknown: anyone),
    by trying every assignment of `a`'s members to distinct members of `b` or to none."""
    best = 0

    def extend(i: int, used: frozenset[int], paired: int) -> None:
        nonlocal best
        if i == len(a):
            best = max(best, paired)
            return
        extend(i + 1, used, paired)
        mine = a[i]
        for j, year in enumerate(b):
            if j not in used and (mine is None or year is None or abs(mine - year) <= 1):
                extend(i + 1, used | {j}, paired + 1)

    extend(0, frozenset(), 0)
    return best


def test_members_paired_at_most_is_the_largest_matching_of_birth_years() -> None:
    # Pairing 2010 with 2010 first would leave 2009 alone; both pair when 2009 takes 2010.
    assert matching.members_paired_at_most([2009, 2010], [2010, 2011]) == 2
    assert matching.members_paired_at_most([1950, 1960], [2010, 2012]) == 0
    assert matching.members_paired_at_most([1950, None], [2010, 2012]) == 1  # unknown year
    assert matching.members_paired_at_most([None, None, None], [2010]) == 1  # one to pair
    assert matching.members_paired_at_most([], [2010]) == 0
    rng = random.Random(7)
    for _ in range(400):
        a = [rng.choice([None, *range(2000, 2012)]) for _ in range(rng.randint(0, 5))]
        b = [rng.choice([None, *range(2000, 2012)]) for _ in range(rng.randint(0, 5))]
        assert matching.members_paired_at_most(a, b) == _most_pairs_by_brute_force(a, b), (a, b)


def _born(names: list[str], years: list[int | None]) -> list[tuple[str, str | None]]:
    return [(names[i], None if year is None else str(year)) for i, year in enumerate(years)]


def test_birth_years_bound_the_members_share_that_comparing_finds() -> None:
    model = matching.default_model(household=True)
    names = ["Faadumo Xasan", "Cumar Axmed", "Caasha Axmed", "Nuur Axmed", "Xaliimo Axmed"]
    spellings = ["Fatuma Hassan", "Omar Ahmed", "Aisha Ahmed", "Noor Ahmed", "Halima Ahmed"]
    rng = random.Random(11)
    tightened = 0
    for n in range(300):
        size_a, size_b = rng.randint(1, 5), rng.randint(1, 5)
        years_a = [rng.choice([None, *range(2008, 2016)]) for _ in range(size_a)]
        years_b = [rng.choice([None, *range(2008, 2016)]) for _ in range(size_b)]
        a = _household(f"a{n}", "Axmed Cali", _born(names, years_a))
        b = _household(f"b{n}", "Ahmed Ali", _born(spellings, years_b))
        paired = matching.members_paired_at_most(years_a, years_b)
        share = matching.member_overlap(a.members, b.members)
        assert share is not None and share <= 2 * paired / (size_a + size_b)
        level = compare_households(a, b).level("members")
        bound = matching.members_weight_at_most(model, size_a, size_b, paired)
        assert model.weight_of("members", level) <= bound
        tightened += bound < matching.members_weight_at_most(model, size_a, size_b)
    assert tightened > 50  # the years tell something in many of these pairs
