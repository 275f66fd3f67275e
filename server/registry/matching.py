"""Finding the same household or person twice: blocking keys, field comparisons, and a
Fellegi–Sunter model (fitted by EM) that scores a pair and says why. Pure Python: no Flask,
no database; `server.registry.linking` stores keys and models and calls this."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from rapidfuzz.distance import OSA, JaroWinkler

from server.registry.names import (
    COMMON_NAMES,
    ascii_fold,
    name_tokens,
    normalise_name,
    phonetic_code,
    phonetic_keys,
    skeleton,
)

__all__ = [
    "DEFAULT_COUNTRY_CODE",
    "DEFAULT_THRESHOLDS",
    "HOUSEHOLD_FIELDS",
    "MISSING",
    "PERSON_FIELDS",
    "Band",
    "ComparisonVector",
    "FellegiSunterModel",
    "HouseholdComparer",
    "HouseholdRecord",
    "MemberMatch",
    "PersonRecord",
    "Score",
    "Thresholds",
    "align_members",
    "band_of",
    "blocking_keys",
    "classify",
    "compare_dates",
    "compare_households",
    "compare_people",
    "default_model",
    "estimate_em",
    "estimate_u",
    "haversine_m",
    "household_evidence",
    "implausible_fit",
    "key_weight",
    "member_overlap",
    "members_paired_at_most",
    "members_weight_at_most",
    "name_similarity",
    "name_tokens",
    "normalise_name",
    "normalise_national_id",
    "normalise_phone",
    "normalise_sex",
    "patterns",
    "person_evidence",
    "birth_year",
    "phonetic_keys",
]

MISSING = "missing"
DEFAULT_COUNTRY_CODE = "252"  # Somalia; Kenya is "254"

# Each field's levels, strongest agreement first; MISSING is implicit everywhere and
# carries no weight (it neither helps nor hurts a pair).
NAME_LEVELS = ("exact", "jw94", "jw88", "different")
DATE_LEVELS = ("exact", "swap", "typo", "year_month", "year", "year_1", "different")
SEX_LEVELS = ("agree", "disagree")
VILLAGE_LEVELS = ("exact", "similar", "different")
GPS_LEVELS = ("50m", "250m", "1km", "far")
IDENTIFIER_LEVELS = ("exact", "typo", "different")
MEMBER_LEVELS = ("75", "50", "some", "none")

PERSON_FIELDS: dict[str, tuple[str, ...]] = {
    "name": NAME_LEVELS,
    "date_of_birth": DATE_LEVELS,
    "sex": SEX_LEVELS,
    "village": VILLAGE_LEVELS,
    "gps": GPS_LEVELS,
    "phone": IDENTIFIER_LEVELS,
    "national_id": IDENTIFIER_LEVELS,
}
HOUSEHOLD_FIELDS: dict[str, tuple[str, ...]] = {
    "head_name": NAME_LEVELS,
    "head_date_of_birth": DATE_LEVELS,
    "head_sex": SEX_LEVELS,
    "village": VILLAGE_LEVELS,
    "gps": GPS_LEVELS,
    "phone": IDENTIFIER_LEVELS,
    "national_id": IDENTIFIER_LEVELS,
    "members": MEMBER_LEVELS,
}


# ---------------------------------------------------------------- records


@dataclass(slots=True)
class PersonRecord:
    """One person as the matcher sees them. `date_of_birth` is 'YYYY-MM-DD', 'YYYY-MM' or
    'YYYY' (ages estimated in the field are often a year only)."""

    id: str
    name: str | None = None
    date_of_birth: str | None = None
    sex: str | None = None
    phone: str | None = None
    national_id: str | None = None
    village: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    district: str | None = None


@dataclass(slots=True)
class HouseholdRecord:
    """A household: its head, the other members, and where and how to reach it. Household
    phone, ID and place fall back to the head's when missing."""

    id: str
    head: PersonRecord
    members: list[PersonRecord] = field(default_factory=list)
    village: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    phone: str | None = None
    national_id: str | None = None
    district: str | None = None


# ---------------------------------------------------------------- field normalisation


_SEX = {
    "m": "m", "male": "m", "man": "m", "boy": "m", "lab": "m", "nin": "m", "wiil": "m",
    "f": "f", "female": "f", "woman": "f", "girl": "f", "dhedig": "f", "naag": "f",
    "gabar": "f", "dumar": "f",
}  # fmt: skip
_PLACEHOLDERS = frozenset({"na", "none", "null", "nil", "unknown", "maya", "hapana"})
_DATE = re.compile(r"^\s*(\d{4})(?:[-/.]?(\d{1,2})(?:[-/.]?(\d{1,2}))?)?")
_DAY_FIRST = re.compile(r"^\s*(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})\s*$")  # 12/03/1985


def normalise_sex(text: str | None) -> str | None:
    """'M', 'Male', 'Lab' (Somali) → 'm'; 'F', 'Female', 'Dhedig' → 'f'; else None."""
    if not text:
        return None
    return _SEX.get(text.strip().lower())


def normalise_phone(
    text: str | None, default_country_code: str = DEFAULT_COUNTRY_CODE
) -> str | None:
    """E.164 digits without '+': '+252 61 555 1234', '00252615551234', '252615551234' and
    '0615551234' → '252615551234'; a local number takes `default_country_code` ('254' for
    Kenya: '0712 345 678' → '254712345678'). Placeholders ('000000000', 'N/A') → None."""
    if not text:
        return None
    stripped = text.strip()
    digits = "".join(ch for ch in stripped if ch.isdigit())
    if len(digits) < 6 or len(set(digits)) == 1:
        return None
    if stripped.startswith("+"):
        return digits if len(digits) <= 15 else None
    if digits.startswith("00"):
        digits = digits[2:]
        return digits if len(digits) >= 8 else None
    if digits.startswith(("252", "254")) and len(digits) >= 11:
        return digits
    if digits.startswith("0"):
        digits = digits[1:]
    return default_country_code + digits


def _national_number(e164: str) -> str:
    """The last nine digits: Somali and Kenyan mobile numbers without country code, so a
    number read with the wrong default country still meets itself."""
    return e164[-9:]


def normalise_national_id(text: str | None) -> str | None:
    """Upper-case letters and digits only, leading zeros off (spreadsheets drop them);
    placeholders ('0', 'N/A', '-', 'none', '111111') → None."""
    if not text:
        return None
    cleaned = "".join(ch for ch in text.upper() if ch.isalnum()).lstrip("0")
    if len(cleaned) < 4 or len(set(cleaned)) == 1 or cleaned.lower() in _PLACEHOLDERS:
        return None
    if not any(ch.isdigit() for ch in cleaned):
        return None
    return cleaned


@lru_cache(maxsize=200_000)
def _parse_date(text: str) -> tuple[int, int | None, int | None] | None:
    """(year, month, day) from 'YYYY-MM-DD', 'YYYY-MM', 'YYYY', 'YYYYMMDD' or 'DD/MM/YYYY';
    an impossible month with a possible day is read the other way round; None if no year."""
    day_first = _DAY_FIRST.match(text)
    if day_first:
        dd, mm, yyyy = (int(part) for part in day_first.groups())
        parts: tuple[int, int | None, int | None] = (yyyy, mm, dd)
    else:
        match = _DATE.match(text)
        if not match:
            return None
        parts = (
            int(match.group(1)),
            int(match.group(2)) if match.group(2) else None,
            int(match.group(3)) if match.group(3) else None,
        )
    year, month, day = parts
    if not 1880 <= year <= 2100:
        return None
    if month is not None and month > 12 and day is not None and 1 <= day <= 12:
        month, day = day, month
    if month is None or not 1 <= month <= 12:
        return year, None, None
    if day is None or not 1 <= day <= 31:
        return year, month, None
    return year, month, day


def birth_year(text: str | None) -> int | None:
    """The year of a 'YYYY[-MM[-DD]]' date, or None."""
    parsed = _parse_date(text) if text else None
    return parsed[0] if parsed else None


@lru_cache(maxsize=100_000)
def _place(text: str) -> str:
    return " ".join(skeleton(word) for word in ascii_fold(text).split())


# ---------------------------------------------------------------- comparisons


@dataclass(slots=True)
class ComparisonVector:
    """The level each field reached for one pair, and the raw figure behind it (name
    similarity, distance in metres, member share) for a reviewer."""

    levels: dict[str, str]
    values: dict[str, float | None] = field(default_factory=dict)

    def level(self, name: str) -> str:
        return self.levels.get(name, MISSING)


_ORDER_FACTOR = 0.97  # same names, another order ('Otieno John' / 'John Otieno')
_MISSING_LAST_FACTOR = 0.96  # 'Ahmed Ali' / 'Ahmed Ali Hassan': grandfather left out
_GIVEN_ONLY_FACTOR = 0.90  # 'Ahmed' / 'Ahmed Ali Hassan'
_SHIFTED_FACTOR = 0.85  # 'Ali Hassan' / 'Ahmed Ali Hassan': the father's name, not his


@lru_cache(maxsize=200_000)
def _jaro_winkler(a: str, b: str) -> float:
    return JaroWinkler.similarity(a, b)


@lru_cache(maxsize=200_000)
def _token_similarity(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    if a == b:
        return 1.0
    scored = sorted(
        (-_jaro_winkler(x, y), abs(i - j), i, j) for i, x in enumerate(a) for j, y in enumerate(b)
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    aligned: list[tuple[int, int, float]] = []
    for negative, _, i, j in scored:
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        aligned.append((i, j, -negative))
        if len(aligned) == min(len(a), len(b)):
            break
    aligned.sort()
    mean = sum(s for _, _, s in aligned) / len(aligned)
    in_order = all(aligned[k][1] < aligned[k + 1][1] for k in range(len(aligned) - 1))
    given_to_given = aligned[0][0] == 0 and aligned[0][1] == 0
    if len(a) == len(b):
        return mean if in_order and given_to_given else mean * _ORDER_FACTOR
    # One name is shorter: it should be the start of the longer one (given, father, ...).
    shorter = len(aligned)
    prefix = in_order and all(i == k and j == k for k, (i, j, _) in enumerate(aligned))
    if prefix:
        return mean * (_MISSING_LAST_FACTOR if shorter >= 2 else _GIVEN_ONLY_FACTOR)
    return mean * _SHIFTED_FACTOR


def name_similarity(a: str | None, b: str | None) -> float | None:
    """Jaro–Winkler on canonical tokens aligned one-to-one regardless of order, then
    discounted when the order differs or a trailing name (grandfather) is missing, and more
    when the shorter name lines up with the other's father and grandfather (a father and
    son share two of three names). 1.0 only for the same canonical name."""
    ta, tb = tuple(name_tokens(a)), tuple(name_tokens(b))
    if not ta or not tb:
        return None
    return _token_similarity(ta, tb)


def _name_level(similarity: float | None) -> str:
    if similarity is None:
        return MISSING
    if similarity >= 0.9999:
        return "exact"
    if similarity >= 0.94:
        return "jw94"
    if similarity >= 0.88:
        return "jw88"
    return "different"


def compare_dates(a: str | None, b: str | None) -> str:
    """Date of birth level: exact; swap (day and month exchanged); typo (one digit of
    YYYYMMDD differs); year_month; year; year_1 (a year apart, as estimated ages are);
    different; missing."""
    pa = _parse_date(a) if a else None
    pb = _parse_date(b) if b else None
    if pa is None or pb is None:
        return MISSING
    (ya, ma, da), (yb, mb, db) = pa, pb
    full = None not in (ma, da, mb, db)
    if pa == pb:
        return "exact" if full else ("year_month" if ma is not None and mb is not None else "year")
    if full and ya == yb and ma == db and da == mb:
        return "swap"
    if full:
        sa = f"{ya:04d}{ma:02d}{da:02d}"
        sb = f"{yb:04d}{mb:02d}{db:02d}"
        if sum(x != y for x, y in zip(sa, sb, strict=True)) == 1:
            return "typo"
    if ya == yb:
        return "year_month" if ma is not None and ma == mb else "year"
    if abs(ya - yb) == 1:
        return "year_1"
    return "different"


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(h)))


def _position(latitude: float | None, longitude: float | None) -> tuple[float, float] | None:
    if latitude is None or longitude is None:
        return None
    if (latitude == 0 and longitude == 0) or abs(latitude) > 90 or abs(longitude) > 180:
        return None
    return latitude, longitude


def _gps(a: tuple[float, float] | None, b: tuple[float, float] | None) -> tuple[str, float | None]:
    if a is None or b is None:
        return MISSING, None
    metres = haversine_m(a[0], a[1], b[0], b[1])
    if metres < 50:
        return "50m", metres
    if metres < 250:
        return "250m", metres
    if metres < 1000:
        return "1km", metres
    return "far", metres


def _identifier(a: str | None, b: str | None) -> str:
    if a is None or b is None:
        return MISSING
    if a == b:
        return "exact"
    if OSA.distance(a, b, score_cutoff=1) <= 1:  # one wrong, missing or swapped character
        return "typo"
    return "different"


def _phone_level(a: str | None, b: str | None) -> str:
    pa, pb = normalise_phone(a), normalise_phone(b)
    if pa is None or pb is None:
        return MISSING
    return _identifier(_national_number(pa), _national_number(pb))


def _village(a: str | None, b: str | None) -> tuple[str, float | None]:
    pa = _place(a) if a else ""
    pb = _place(b) if b else ""
    if not pa or not pb:
        return MISSING, None
    return _places(pa, pb)


def _places(a: str, b: str) -> tuple[str, float]:
    """The village level of two folded village names (`_place`)."""
    if a == b:
        return "exact", 1.0
    similarity = JaroWinkler.similarity(a, b)
    return ("similar" if similarity >= 0.9 else "different"), similarity


def _sex(a: str | None, b: str | None) -> str:
    return _sexes(normalise_sex(a), normalise_sex(b))


def _sexes(a: str | None, b: str | None) -> str:
    """The sex level of two normalised sexes."""
    if a is None or b is None:
        return MISSING
    return "agree" if a == b else "disagree"


def compare_people(a: PersonRecord, b: PersonRecord) -> ComparisonVector:
    """Compare two people field by field (see PERSON_FIELDS for the levels)."""
    similarity = name_similarity(a.name, b.name)
    village, village_similarity = _village(a.village, b.village)
    gps, metres = _gps(_position(a.latitude, a.longitude), _position(b.latitude, b.longitude))
    levels = {
        "name": _name_level(similarity),
        "date_of_birth": compare_dates(a.date_of_birth, b.date_of_birth),
        "sex": _sex(a.sex, b.sex),
        "village": village,
        "gps": gps,
        "phone": _phone_level(a.phone, b.phone),
        "national_id": _identifier(
            normalise_national_id(a.national_id), normalise_national_id(b.national_id)
        ),
    }
    return ComparisonVector(
        levels, {"name": similarity, "village": village_similarity, "gps": metres}
    )


_Member = tuple[tuple[str, ...], int | None]  # a member's name tokens and birth year


def _members(people: Sequence[PersonRecord]) -> list[_Member]:
    return [
        (tuple(name_tokens(person.name)), birth_year(person.date_of_birth)) for person in people
    ]


def _members_match(a: _Member, b: _Member) -> float | None:
    (ta, ya), (tb, yb) = a, b
    if ya is not None and yb is not None:
        if abs(ya - yb) > 1:
            return None
        required, bonus = 0.88, (0.05 if ya == yb else 0.0)
    else:
        required, bonus = 0.94, 0.0  # no year to back a weaker name
    if not ta or not tb:
        return None
    similarity = _token_similarity(ta, tb)
    if similarity < required:
        return None
    return similarity + bonus


def member_overlap(a: Sequence[PersonRecord], b: Sequence[PersonRecord]) -> float | None:
    """Share of members found in both lists (Dice: 2·matched / (|a| + |b|)), pairing people
    greedily by name similarity where birth years are within a year. None if either list is
    empty."""
    if not a or not b:
        return None
    return _overlap(_members(a), _members(b))


def _overlap(a: Sequence[_Member], b: Sequence[_Member]) -> float | None:
    """`member_overlap` of members whose names and birth years are read already."""
    if not a or not b:
        return None
    scored = []
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            score = _members_match(x, y)
            if score is not None:
                scored.append((score, i, j))
    scored.sort(reverse=True)
    used_a: set[int] = set()
    used_b: set[int] = set()
    for _, i, j in scored:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
    return 2 * len(used_a) / (len(a) + len(b))


def _member_level(share: float | None) -> str:
    if share is None:
        return MISSING
    if share >= 0.75:
        return "75"
    if share >= 0.5:
        return "50"
    return "some" if share > 0 else "none"


@dataclass(frozen=True, slots=True)
class _HouseholdFields:
    """A household's fields as `compare_households` compares them, normalised."""

    head_name: tuple[str, ...]
    head_date_of_birth: str | None
    head_sex: str | None
    place: str
    position: tuple[float, float] | None
    phone: str | None
    national_id: str | None

    @classmethod
    def of(cls, household: HouseholdRecord) -> _HouseholdFields:
        village = household.village or household.head.village
        phone = normalise_phone(household.phone or household.head.phone)
        return cls(
            head_name=tuple(name_tokens(household.head.name)),
            head_date_of_birth=household.head.date_of_birth,
            head_sex=normalise_sex(household.head.sex),
            place=_place(village) if village else "",
            position=_household_position(household),
            phone=_national_number(phone) if phone else None,
            national_id=normalise_national_id(household.national_id or household.head.national_id),
        )


class HouseholdComparer:
    """One household compared with many (its candidates): its own fields are normalised
    once, not once per pair. `compare(other)` is `compare_households(household, other)`;
    `compare(other, members=False)` leaves the members out (level missing), and
    `can_reach` decides without them whether a pair is worth comparing members for."""

    __slots__ = ("household", "_fields", "_members", "_others", "_best_name")

    def __init__(self, household: HouseholdRecord) -> None:
        self.household = household
        self._fields = _HouseholdFields.of(household)
        self._members: list[_Member] | None = None  # read when first compared
        # The others' fields by record, normalised once when a pair is first looked at
        # (`can_reach`, then `compare` for the pairs kept); the record is held so that its
        # id() stays its own.
        self._others: dict[int, tuple[HouseholdRecord, _HouseholdFields]] = {}
        self._best_name: tuple[FellegiSunterModel, float] | None = None  # see `can_reach`

    def _fields_of(self, other: HouseholdRecord) -> _HouseholdFields:
        seen = self._others.get(id(other))
        if seen is None:
            seen = self._others[id(other)] = (other, _HouseholdFields.of(other))
        return seen[1]

    def compare(self, other: HouseholdRecord, *, members: bool = True) -> ComparisonVector:
        b = self._fields_of(other)
        levels, values = self._place_and_identifiers(b)
        similarity = self._head_name(b)
        share = None
        if members and self.household.members and other.members:
            if self._members is None:
                self._members = _members(self.household.members)
            share = _overlap(self._members, _members(other.members))
        levels |= {"head_name": _name_level(similarity), "members": _member_level(share)}
        values |= {"head_name": similarity, "members": share}
        return ComparisonVector(
            {name: levels[name] for name in HOUSEHOLD_FIELDS},
            {name: values[name] for name in ("head_name", "village", "gps", "members")},
        )

    def can_reach(
        self,
        other: HouseholdRecord,
        model: FellegiSunterModel,
        minimum: float,
        *,
        members_at_most: float,
    ) -> bool:
        """Whether the pair's weight can reach `minimum` when the members add at most
        `members_at_most`: `model.weight(compare(other, members=False)) + members_at_most
        >= minimum`, with the head's name (the costliest field) compared only when the
        best name level could still lift the other fields that far."""
        b = self._fields_of(other)
        levels, _ = self._place_and_identifiers(b)
        weight = model.weight(ComparisonVector(levels)) + members_at_most
        if weight + self._best_name_weight(model) < minimum:
            return False
        return weight + model.weight_of("head_name", _name_level(self._head_name(b))) >= minimum

    def _best_name_weight(self, model: FellegiSunterModel) -> float:
        """The most the head's name can add under `model` (0 when missing), worked out
        once for all the candidates that `can_reach` is asked about, not once per pair."""
        if self._best_name is None or self._best_name[0] is not model:
            names = model.fields.get("head_name", ())
            best = max((model.weight_of("head_name", level) for level in names), default=0.0)
            self._best_name = (model, max(best, 0.0))
        return self._best_name[1]

    def _head_name(self, b: _HouseholdFields) -> float | None:
        a = self._fields
        return _token_similarity(a.head_name, b.head_name) if a.head_name and b.head_name else None

    def _place_and_identifiers(
        self, b: _HouseholdFields
    ) -> tuple[dict[str, str], dict[str, float | None]]:
        """Levels and values of every field but the head's name and the members."""
        a = self._fields
        if a.place and b.place:
            village, village_similarity = _places(a.place, b.place)
        else:
            village, village_similarity = MISSING, None
        gps, metres = _gps(a.position, b.position)
        levels = {
            "head_date_of_birth": compare_dates(a.head_date_of_birth, b.head_date_of_birth),
            "head_sex": _sexes(a.head_sex, b.head_sex),
            "village": village,
            "gps": gps,
            "phone": _identifier(a.phone, b.phone),
            "national_id": _identifier(a.national_id, b.national_id),
        }
        return levels, {"village": village_similarity, "gps": metres}


def members_weight_at_most(
    model: FellegiSunterModel, a: int, b: int, paired_at_most: int | None = None
) -> float:
    """The most the members field can add to the weight of two households of `a` and `b`
    members: at most min(a, b) of them pair up (fewer when `paired_at_most` says so, as
    `members_paired_at_most` counts from birth years), so the share is at most
    2·min(a, b, paired) / (a + b), and any lower level can be reached too. 0 when either
    has none (missing)."""
    levels = model.fields.get("members", ())
    if not a or not b or not levels:
        return 0.0
    paired = min(a, b) if paired_at_most is None else min(a, b, paired_at_most)
    top = _member_level(2 * paired / (a + b))
    reachable = levels[levels.index(top) :] if top in levels else levels
    return max(model.weight_of("members", level) for level in reachable)


def members_paired_at_most(a: Sequence[int | None], b: Sequence[int | None]) -> int:
    """The most members of two households that `_overlap` can pair, from their birth
    years alone (None: unknown): two members pair only when their years are at most one
    apart, or one of them is unknown (`_members_match`), so no more pairs than the
    largest such matching. Among known years that is found by walking both sorted lists
    together, pairing whenever two are within a year (greedy is optimal for points on a
    line paired within a distance); each unknown year may pair with anyone."""
    known_a = sorted(year for year in a if year is not None)
    known_b = sorted(year for year in b if year is not None)
    paired = i = j = 0
    while i < len(known_a) and j < len(known_b):
        if abs(known_a[i] - known_b[j]) <= 1:
            paired, i, j = paired + 1, i + 1, j + 1
        elif known_a[i] < known_b[j]:
            i += 1
        else:
            j += 1
    unknown = (len(a) - len(known_a)) + (len(b) - len(known_b))
    return min(len(a), len(b), paired + unknown)


def compare_households(a: HouseholdRecord, b: HouseholdRecord) -> ComparisonVector:
    """Compare two households: their heads (name, birth date, sex), the household's place,
    phone and ID (the head's when the household has none), and how many other members the
    two share (see HOUSEHOLD_FIELDS)."""
    return HouseholdComparer(a).compare(b)


def _household_position(household: HouseholdRecord) -> tuple[float, float] | None:
    return _position(household.latitude, household.longitude) or _position(
        household.head.latitude, household.head.longitude
    )


# ---------------------------------------------------------------- blocking


def _person_keys(
    person: PersonRecord,
    district: str | None,
    country_code: str,
    *,
    family_pair: bool,
    village: str | None = None,
) -> set[str]:
    keys: set[str] = set()
    national_id = normalise_national_id(person.national_id)
    if national_id:
        keys.add(f"nid:{national_id}")
    phone = normalise_phone(person.phone, country_code)
    if phone:
        keys.add(f"ph:{_national_number(phone)}")
    tokens = name_tokens(person.name)
    if not tokens:
        return keys
    codes = [phonetic_code(token) for token in tokens[:3]]
    initials = "".join(sorted(token[0] for token in tokens[:2]))
    year = birth_year(person.date_of_birth)
    where = f"d:{district or '-'}"
    if len(codes) == 1:
        keys.add(f"{where}|n:{codes[0]}")
    if len(codes) > 1:
        keys.add(f"{where}|n:{_pair_code(codes[0], codes[1])}")
    if len(codes) > 2:
        # A misspelt or dropped father's name (for a head also the given name): the other
        # two. Two common Somali names together name too many people, so such a pair is
        # qualified by the initial of the name left out, which typing rarely gets wrong.
        for i, j, left_out in ((0, 2, 1), (1, 2, 0)) if family_pair else ((0, 2, 1),):
            key = f"{where}|n:{_pair_code(codes[i], codes[j])}"
            if tokens[i] in COMMON_NAMES and tokens[j] in COMMON_NAMES:
                key += f"|i:{tokens[left_out][0]}"
            keys.add(key)
    place = _place(village) if village else ""
    if place:
        # The name keys again within the village: they bring no candidate the name keys
        # do not, but a candidate sharing them shares one key more, and so ranks above
        # the namesakes of other villages when the candidates must be capped.
        keys |= {f"{key}|v:{place}" for key in keys if key.startswith(f"{where}|n:")}
    if year is not None:
        keys.add(f"{where}|yob:{year}|n1:{initials}")
        if len(codes) > 1:
            # Across districts (displacement): given + father + year of birth.
            keys.add(f"n:{_pair_code(codes[0], codes[1])}|yob:{year}")
    date = _full_date(person.date_of_birth)
    if date is not None:
        # Across districts, whatever happened to the names after their first letters.
        for token in tokens[:2]:
            keys.add(f"dob:{date}|n1:{token[0]}")
    return keys


def _pair_code(a: str, b: str) -> str:
    """Two names' codes in either order: 'Wanjiru Mary' and 'Mary Wanjiru' meet."""
    return f"{a}+{b}" if a <= b else f"{b}+{a}"


def _full_date(text: str | None) -> str | None:
    parsed = _parse_date(text) if text else None
    if parsed is None or parsed[1] is None or parsed[2] is None:
        return None
    return f"{parsed[0]:04d}-{parsed[1]:02d}-{parsed[2]:02d}"


def blocking_keys(
    record: PersonRecord | HouseholdRecord, *, country_code: str = DEFAULT_COUNTRY_CODE
) -> set[str]:
    """Keys a record is filed under; candidates are the records sharing at least one.

    - 'nid:<ID>' and 'ph:<last nine digits>' — identifiers, whatever the district;
    - 'd:<district>|n:<A>+<B>' — metaphone codes of unordered pairs among the first three
      names: given+father, given+grandfather, and for a household head father+grandfather
      (a misspelt given name), so one misspelt or dropped name or another order still
      meets. A pair other than given+father made of two common Somali names gets '|i:<x>',
      the initial of the name left out. People are not filed under father+grandfather:
      every sibling shares it. One name only: 'd:<district>|n:<A>';
    - 'd:<district>|yob:<year>|n1:<initials>' — year of birth and the initials of the
      first two names;
    - 'n:<given>+<father>|yob:<year>' — the same person registered in another district;
    - 'dob:<YYYY-MM-DD>|n1:<initial>' — a full date of birth with the initial of the given
      name, and again with the father's (or surname's): any district, any misspelling;
    - '<name key>|v:<village>' — each 'd:…|n:…' key again with the folded village. A
      subset of its name key's block, so it adds no candidate; it ranks the namesakes of
      the same village first (see `key_weight` and `server.registry.linking`).

    A household is filed under its head's keys, its own phone and ID, and its members'
    phones and IDs (so a household whose head changed still meets itself)."""
    if isinstance(record, PersonRecord):
        return _person_keys(
            record, record.district, country_code, family_pair=False, village=record.village
        )
    district = record.district or record.head.district
    keys = _person_keys(
        record.head,
        district,
        country_code,
        family_pair=True,
        village=record.village or record.head.village,
    )
    identifiers = [PersonRecord(id=record.id, phone=record.phone, national_id=record.national_id)]
    identifiers += [
        PersonRecord(id=member.id, phone=member.phone, national_id=member.national_id)
        for member in record.members
    ]
    for person in identifiers:
        keys |= _person_keys(person, district, country_code, family_pair=False)
    return keys


IDENTIFIER_KEY_WEIGHT = 5


def key_weight(key: str) -> int:
    """How much sharing `key` counts when candidates are ranked (by the sum over the keys
    shared). A national ID or phone counts 5, any other key 1. A head of household shares
    at most six name keys with a namesake of her village (three name pairs, each again
    with the village), so a returning family whose names were misspelt but which kept its
    phone (5) and one name pair (2 within the village) still ranks above any namesake
    (6); and strangers who share only a phone — an agent's, a village leader's — rank
    below the namesakes of the same village, though above those of other villages (3)."""
    return IDENTIFIER_KEY_WEIGHT if key.startswith(("nid:", "ph:")) else 1


# ---------------------------------------------------------------- the model

Band = Literal["link", "review", "new"]
_FLOOR = 1e-6


@dataclass(frozen=True, slots=True)
class Score:
    """`weight`: log2 Bayes factor of the pair (sum of `contributions`, the prior left out);
    `probability`: posterior that the pair is a match given the model's prior;
    `contributions`: log2(m/u) per field — positive pulls towards a match."""

    weight: float
    probability: float
    contributions: dict[str, float]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Bands on the log2 weight: `link` and above is linked automatically, `review` and
    above goes to a supervisor as a match candidate, below is a new record."""

    link: float = 10.0
    review: float = 4.0

    def __post_init__(self) -> None:
        if self.review > self.link:
            raise ValueError(
                f"review threshold {self.review} is above the link threshold {self.link}"
            )


DEFAULT_THRESHOLDS = Thresholds()


def _normalised(
    probabilities: Mapping[str, float], levels: Sequence[str], what: str
) -> dict[str, float]:
    missing = [level for level in levels if level not in probabilities]
    if missing:
        raise ValueError(f"{what}: no probability for level(s) {', '.join(missing)}")
    values = {level: max(float(probabilities[level]), _FLOOR) for level in levels}
    total = sum(values.values())
    return {level: value / total for level, value in values.items()}


class FellegiSunterModel:
    """m (P(level | match)) and u (P(level | non-match)) per field and level, and the prior
    P(match) among candidate pairs. Fields are conditionally independent given the class;
    a missing field contributes nothing. `fixed` fields keep their m and u through
    `estimate_em` and `estimate_u` (see `default_model`: a person's village and GPS are
    shared by everyone in the household, so EM would learn "same household" from them)."""

    __slots__ = ("fields", "m", "u", "prior", "fixed", "_weights")

    def __init__(
        self,
        fields: Mapping[str, Sequence[str]],
        m: Mapping[str, Mapping[str, float]],
        u: Mapping[str, Mapping[str, float]],
        prior: float,
        fixed: Iterable[str] = (),
    ) -> None:
        if not 0 < prior < 1:
            raise ValueError(f"prior must be between 0 and 1, not {prior}")
        self.fields: dict[str, tuple[str, ...]] = {}
        self.m: dict[str, dict[str, float]] = {}
        self.u: dict[str, dict[str, float]] = {}
        for name, levels in fields.items():
            levels = tuple(levels)
            if not levels or MISSING in levels:
                raise ValueError(f"field {name!r}: levels must be listed, without {MISSING!r}")
            if name not in m or name not in u:
                raise ValueError(f"field {name!r}: both m and u probabilities are needed")
            self.fields[name] = levels
            self.m[name] = _normalised(m[name], levels, f"m[{name!r}]")
            self.u[name] = _normalised(u[name], levels, f"u[{name!r}]")
        self.prior = float(prior)
        self.fixed = frozenset(fixed)
        unknown = sorted(self.fixed - set(self.fields))
        if unknown:
            raise ValueError(f"fixed field(s) {', '.join(unknown)} are not fields of the model")
        self._weights = {
            name: {level: math.log2(self.m[name][level] / self.u[name][level]) for level in levels}
            for name, levels in self.fields.items()
        }

    def weight_of(self, name: str, level: str) -> float:
        """log2(m/u) of one field at one level; 0 when missing or unknown to the model."""
        return self._weights.get(name, {}).get(level, 0.0)

    def weight(self, vector: ComparisonVector) -> float:
        """`score(vector).weight`, without the contributions and the probability."""
        levels = vector.levels
        return sum(
            weights.get(levels.get(name, MISSING), 0.0) for name, weights in self._weights.items()
        )

    def score(self, vector: ComparisonVector) -> Score:
        contributions = {name: self.weight_of(name, vector.level(name)) for name in self.fields}
        weight = sum(contributions.values())
        log_odds = weight + math.log2(self.prior / (1 - self.prior))
        probability = 1.0 / (1.0 + 2.0 ** -max(min(log_odds, 1000.0), -1000.0))
        return Score(weight, probability, contributions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (store them; `from_dict` reads them back)."""
        return {
            "version": 1,
            "fields": {name: list(levels) for name, levels in self.fields.items()},
            "m": {name: dict(values) for name, values in self.m.items()},
            "u": {name: dict(values) for name, values in self.u.items()},
            "prior": self.prior,
            "fixed": sorted(self.fixed),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FellegiSunterModel:
        if data.get("version", 1) != 1:
            raise ValueError(f"match model version {data.get('version')!r} is not understood")
        try:
            return cls(data["fields"], data["m"], data["u"], data["prior"], data.get("fixed", ()))
        except KeyError as missing:
            raise ValueError(f"match model parameters lack {missing}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FellegiSunterModel) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"FellegiSunterModel(fields={list(self.fields)}, prior={self.prior:.4g})"


def _identifier_agrees(vector: ComparisonVector) -> bool:
    """A phone or national ID in common, exact or one character off."""
    return any(vector.level(name) in ("exact", "typo") for name in ("phone", "national_id"))


def household_evidence(vector: ComparisonVector) -> bool:
    """Whether two household records agree on something that namesakes in one village
    do not share: a phone or national ID (exact or one character off), the head's date
    of birth (to the month at least), half their members or more, or — when the heads'
    names agree — a dwelling within 50 m. The head's name and the village alone can add
    up past the link threshold; in a registry of a million households, a common name in
    one village is often someone else (a father and his adult son, two cousins), so
    such a pair is not linked automatically: it goes to review (`classify`)."""
    level = vector.level
    return (
        _identifier_agrees(vector)
        or level("head_date_of_birth") in ("exact", "swap", "typo", "year_month")
        or level("members") in ("75", "50")
        or (level("gps") == "50m" and level("head_name") in ("exact", "jw94"))
    )


def classify(
    score: Score, thresholds: Thresholds = DEFAULT_THRESHOLDS, *, evidence: bool = True
) -> Band:
    """'link' (same record, link automatically), 'review' (ask a supervisor) or 'new'. A
    pair past the link threshold without `evidence` (`household_evidence`, for
    households) is sent to review instead of linked."""
    if score.weight >= thresholds.link and evidence:
        return "link"
    if score.weight >= thresholds.review:
        return "review"
    return "new"


# Two records of one person have names at least this alike (`name_similarity`), typos,
# dropped grandfathers and other spellings included: on the synthetic registry the true
# pairs whose names fell below "jw88" were 0.64–0.88 alike (one in 47 below 0.70), the
# strangers 0.34–0.67, with a few cousins above.
PERSON_NAME_FLOOR = 0.70


def person_evidence(vector: ComparisonVector) -> bool:
    """Whether two people's records could be one person's: their names are at least
    `PERSON_NAME_FLOOR` alike, or a phone or national ID agrees (exact, or one character
    off). A date of birth and a sex in common weigh +8.8 and can carry a pair past review
    whatever the names say; among the people of a large registry many strangers share a
    birth date (a 10,000-household registry had 2,909 such pairs for review out of 6,667,
    most of their names under 0.70 alike), so the date alone never makes a match
    candidate."""
    if _identifier_agrees(vector):
        return True
    similarity = vector.values.get("name")
    return similarity is not None and similarity >= PERSON_NAME_FLOOR


def band_of(
    score: Score, vector: ComparisonVector, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> Band:
    """`classify` for a pair of either list: households need `household_evidence` to be
    linked automatically; people are never merged on their own (a member merges only
    with her household), so their bands are the thresholds', but a pair of people
    without `person_evidence` is new whatever its weight."""
    if "head_name" in vector.levels:
        return classify(score, thresholds, evidence=household_evidence(vector))
    return classify(score, thresholds) if person_evidence(vector) else "new"


def _patterns(
    vectors: Iterable[ComparisonVector], names: Sequence[str]
) -> Counter[tuple[str, ...]]:
    return Counter(tuple(vector.level(name) for name in names) for vector in vectors)


def patterns(
    vectors: Iterable[ComparisonVector], model: FellegiSunterModel
) -> Counter[tuple[str, ...]]:
    """How many pairs show each pattern of levels (in the order of `model`'s fields): what
    `estimate_em` reads of the pairs, added up a chunk of pairs at a time."""
    return _patterns(vectors, list(model.fields))


def estimate_u(
    vectors: Iterable[ComparisonVector],
    model: FellegiSunterModel,
    *,
    pseudo_count: float = 1.0,
) -> FellegiSunterModel:
    """u from pairs drawn at random (almost all non-matches): level frequencies per field,
    smoothed by `pseudo_count`. m, the prior and fixed fields are kept."""
    names = list(model.fields)
    counts = _patterns(vectors, names)
    u: dict[str, dict[str, float]] = {}
    for index, name in enumerate(names):
        if name in model.fixed:
            u[name] = model.u[name]
            continue
        tally = Counter[str]()
        for pattern, count in counts.items():
            if pattern[index] != MISSING:
                tally[pattern[index]] += count
        u[name] = {level: tally[level] + pseudo_count for level in model.fields[name]}
    return FellegiSunterModel(model.fields, model.m, u, model.prior, model.fixed)


def implausible_fit(model: FellegiSunterModel) -> str | None:
    """Why a fitted model cannot be what duplicates look like, or None when it can: EM
    finds whichever two groups the pairs fall into best, and on a registry whose candidate
    pairs are mostly relatives and namesakes rather than duplicates, the group it takes
    for matches can be "siblings" — the members' model refitted on a 10,000-household
    registry without duplicates called a shared birth date −14.3 and a different one
    +3.3, and sent 7,681 pairs for review. A fit is refused when a field's strongest
    agreement weighs less than its plainest disagreement (its first level against its
    last). The prior is not judged: after a bulk import of people registered twice, most
    candidate pairs can be duplicates."""
    for name, levels in model.fields.items():
        if name in model.fixed or len(levels) < 2:
            continue
        agree, differ = levels[0], levels[-1]
        if model.weight_of(name, agree) < model.weight_of(name, differ):
            return (
                f"{name} {agree} would weigh {model.weight_of(name, agree):+.1f}, "
                f"less than {differ} ({model.weight_of(name, differ):+.1f})"
            )
    return None


def estimate_em(
    vectors: Iterable[ComparisonVector] | Mapping[tuple[str, ...], int],
    initial_model: FellegiSunterModel,
    iterations: int = 50,
    *,
    tolerance: float = 1e-6,
    fix_u: bool = False,
    fix_prior: bool = False,
    pseudo_count: float = 0.1,
) -> FellegiSunterModel:
    """Expectation–maximisation of m, u and the prior over unlabelled candidate pairs
    (conditional independence, missing levels skipped). Starts from `initial_model` (e.g.
    `default_model()` with u from `estimate_u` on random pairs); the model's `fixed` fields
    keep their m and u but still count in the expectation step; `fix_u` keeps every u (when
    it came from random pairs), `fix_prior` keeps the prior; `pseudo_count` is a Dirichlet
    prior per level so that a level unseen in one class gets a small, not zero, probability.
    Stops after `iterations` or when no parameter moves more than `tolerance`. `vectors`
    may also be counted already (`patterns`): pairs too many to hold at once."""
    names = list(initial_model.fields)
    counts = Counter(vectors) if isinstance(vectors, Mapping) else _patterns(vectors, names)
    if not counts:
        return initial_model
    patterns = list(counts.items())
    m = {name: dict(values) for name, values in initial_model.m.items()}
    u = {name: dict(values) for name, values in initial_model.u.items()}
    prior = initial_model.prior
    for _ in range(max(0, iterations)):
        log_m = {name: {lv: math.log(p) for lv, p in m[name].items()} for name in names}
        log_u = {name: {lv: math.log(p) for lv, p in u[name].items()} for name in names}
        log_prior, log_rest = math.log(prior), math.log(1 - prior)
        match_total = 0.0
        grand_total = 0.0
        m_tally: dict[str, defaultdict[str, float]] = {n: defaultdict(float) for n in names}
        u_tally: dict[str, defaultdict[str, float]] = {n: defaultdict(float) for n in names}
        for pattern, count in patterns:
            lm, lu = log_prior, log_rest
            for name, level in zip(names, pattern, strict=True):
                if level in log_m[name]:
                    lm += log_m[name][level]
                    lu += log_u[name][level]
            difference = max(min(lu - lm, 700.0), -700.0)
            g = 1.0 / (1.0 + math.exp(difference))
            match_total += count * g
            grand_total += count
            for name, level in zip(names, pattern, strict=True):
                if level in log_m[name]:
                    m_tally[name][level] += count * g
                    u_tally[name][level] += count * (1 - g)
        change = 0.0
        new_prior = prior if fix_prior else min(max(match_total / grand_total, 1e-9), 1 - 1e-9)
        change = max(change, abs(new_prior - prior))
        prior = new_prior
        for name in names:
            if name in initial_model.fixed:
                continue
            levels = initial_model.fields[name]
            new_m = _smoothed(m_tally[name], levels, pseudo_count)
            change = max(change, *(abs(new_m[lv] - m[name][lv]) for lv in levels))
            m[name] = new_m
            if not fix_u:
                new_u = _smoothed(u_tally[name], levels, pseudo_count)
                change = max(change, *(abs(new_u[lv] - u[name][lv]) for lv in levels))
                u[name] = new_u
        if change < tolerance:
            break
    return FellegiSunterModel(initial_model.fields, m, u, prior, initial_model.fixed)


def _smoothed(
    tally: Mapping[str, float], levels: Sequence[str], pseudo_count: float
) -> dict[str, float]:
    total = sum(tally.get(level, 0.0) for level in levels) + pseudo_count * len(levels)
    if total <= 0:
        return {level: 1.0 / len(levels) for level in levels}
    return {level: max((tally.get(level, 0.0) + pseudo_count) / total, _FLOOR) for level in levels}


# Starting parameters, set by hand with the EM fits on the synthetic registry in view
# (`bench/synthetic.py --verbose`), rounded towards caution; u describes strangers in the
# same district. `diiwaan registry relink` re-estimates them on the registry's own pairs.
_PERSON_M = {
    "name": {"exact": 0.70, "jw94": 0.18, "jw88": 0.07, "different": 0.05},
    "date_of_birth": {
        "exact": 0.45, "swap": 0.04, "typo": 0.04, "year_month": 0.04, "year": 0.20,
        "year_1": 0.15, "different": 0.08,
    },
    "sex": {"agree": 0.98, "disagree": 0.02},
    "village": {"exact": 0.85, "similar": 0.05, "different": 0.10},
    "gps": {"50m": 0.50, "250m": 0.25, "1km": 0.10, "far": 0.15},
    "phone": {"exact": 0.85, "typo": 0.05, "different": 0.10},
    "national_id": {"exact": 0.90, "typo": 0.05, "different": 0.05},
}  # fmt: skip
_PERSON_U = {
    "name": {"exact": 0.002, "jw94": 0.01, "jw88": 0.05, "different": 0.938},
    "date_of_birth": {
        "exact": 0.002, "swap": 0.0002, "typo": 0.003, "year_month": 0.005, "year": 0.03,
        "year_1": 0.05, "different": 0.9098,
    },
    "sex": {"agree": 0.5, "disagree": 0.5},
    "village": {"exact": 0.40, "similar": 0.03, "different": 0.57},
    "gps": {"50m": 0.10, "250m": 0.10, "1km": 0.10, "far": 0.70},
    "phone": {"exact": 0.001, "typo": 0.001, "different": 0.998},
    "national_id": {"exact": 0.0005, "typo": 0.001, "different": 0.9985},
}  # fmt: skip
# A household's place is its own: strong evidence there.
_HOUSEHOLD_M = {
    "village": {"exact": 0.85, "similar": 0.05, "different": 0.10},
    "gps": {"50m": 0.50, "250m": 0.30, "1km": 0.12, "far": 0.08},
    "members": {"75": 0.75, "50": 0.15, "some": 0.06, "none": 0.04},
}
_HOUSEHOLD_U = {
    "village": {"exact": 0.25, "similar": 0.03, "different": 0.72},
    "gps": {"50m": 0.002, "250m": 0.03, "1km": 0.20, "far": 0.768},
    "members": {"75": 0.002, "50": 0.01, "some": 0.05, "none": 0.938},
}


def default_model(household: bool = False) -> FellegiSunterModel:
    """Starting parameters for people (or households, `household=True`) before any EM fit
    on the registry's own pairs."""
    if not household:
        # Everyone in a household shares its village and GPS: for people these are weak,
        # fixed evidence (siblings agree on them too), not something EM should learn.
        return FellegiSunterModel(
            PERSON_FIELDS, _PERSON_M, _PERSON_U, prior=0.01, fixed=("village", "gps")
        )
    rename = {"name": "head_name", "date_of_birth": "head_date_of_birth", "sex": "head_sex"}
    m = {rename.get(k, k): v for k, v in _PERSON_M.items()} | _HOUSEHOLD_M
    u = {rename.get(k, k): v for k, v in _PERSON_U.items()} | _HOUSEHOLD_U
    return FellegiSunterModel(HOUSEHOLD_FIELDS, m, u, prior=0.01)


# ---------------------------------------------------------------- members of two households


@dataclass(frozen=True, slots=True)
class MemberMatch:
    """A member of household A taken for a member of household B, with the score."""

    a_id: str
    b_id: str
    score: Score


def align_members(
    a: Sequence[PersonRecord],
    b: Sequence[PersonRecord],
    model: FellegiSunterModel | None = None,
    minimum_weight: float = 0.0,
) -> list[MemberMatch]:
    """Pair the people of two linked households one-to-one, best weight first, keeping
    pairs whose weight reaches `minimum_weight` (0: the evidence favours the same person;
    inside one household there are only a few people to choose from). The default person
    model suits this better than one fitted by EM on registry-wide candidates, whose u
    describes strangers who share a blocking key, not members of one household."""
    model = model or default_model()
    scored = []
    for x in a:
        for y in b:
            score = model.score(compare_people(x, y))
            if score.weight >= minimum_weight:
                scored.append((score.weight, x.id, y.id, score))
    scored.sort(key=lambda item: item[0], reverse=True)
    used_a: set[str] = set()
    used_b: set[str] = set()
    matches = []
    for _, a_id, b_id, score in scored:
        if a_id not in used_a and b_id not in used_b:
            used_a.add(a_id)
            used_b.add(b_id)
            matches.append(MemberMatch(a_id, b_id, score))
    return matches
