"""Synthetic Somali and Kenyan households with known duplicates, and the dedup evaluation
shared by the matching benchmarks. Run it to get F1 on households and members.

    .venv/bin/python bench/synthetic.py [--households 4000] [--duplicates 0.2] [--seed 7]

Everything is generated here (seeded); the district list comes from
docs/examples/somalia_locations.csv. The re-registration of a household introduces what
field teams see: names spelt in the other register (Maxamed/Mohamed) or with typos, the
grandfather's name left out, titles, day and month swapped, a year-only age re-estimated,
national IDs missing, members born or gone, GPS taken elsewhere, phones in another format
or changed, and a share of households displaced to another district. Confusers are
generated on purpose: brothers (same father and grandfather, same village) and adult sons
(the father's given and father's names) with households of their own.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from server.registry import linking, matching
from server.registry.matching import (
    ComparisonVector,
    FellegiSunterModel,
    HouseholdRecord,
    PersonRecord,
    Thresholds,
)
from server.registry.names import NAME_VARIANTS

ROOT = Path(__file__).resolve().parents[1]


def _words(text: str) -> list[str]:
    return text.split()


# ---------------------------------------------------------------- name pools
# (spelling in the English/Arabic register, spelling in Somali orthography, weight)
# Names that the normaliser lists get their other spellings from NAME_VARIANTS; the
# unlisted ones below carry their own Somali spelling, and only the orthographic fold can
# join them — the honest part of the test.
SOMALI_MEN = [
    ("Mohamed", 12), ("Ahmed", 6), ("Ali", 6), ("Abdi", 5), ("Hassan", 5), ("Hussein", 4),
    ("Omar", 4), ("Abdullahi", 5), ("Abdirahman", 4), ("Ibrahim", 3), ("Yusuf", 3),
    ("Osman", 3), ("Ismail", 2), ("Abdikadir", 2), ("Mohamud", 4), ("Adan", 3), ("Nur", 2),
    ("Farah", 2), ("Jama", 2), ("Abdiaziz", 1), ("Abdirashid", 1), ("Abdirizak", 1),
    ("Abdiwali", 1), ("Abdinur", 1), ("Said", 2), ("Khalid", 1), ("Bashir", 1),
    ("Mustafa", 1), ("Hirsi", 1), ("Guled", 1), ("Salad", 1), ("Yasin", 1), ("Idris", 1),
    ("Mahad", 1), ("Abdulle", 1), ("Isa", 1), ("Musa", 2), ("Warsame", 1), ("Dahir", 1),
    ("Elmi", 1), ("Awale", 1), ("Sharif", 1), ("Hamza", 1), ("Abukar", 2), ("Abdisalam", 1),
    ("Abdikarim", 1),
]  # fmt: skip
SOMALI_WOMEN = [
    ("Fatima", 8), ("Halima", 4), ("Khadija", 4), ("Aisha", 4), ("Mariam", 4), ("Zahra", 3),
    ("Hawa", 3), ("Amina", 3), ("Zeinab", 2), ("Hafsa", 2), ("Sadia", 1), ("Ruqia", 1),
    ("Sumaya", 1), ("Safiya", 1), ("Kaltun", 1), ("Fartun", 1), ("Anab", 1), ("Awo", 1),
    ("Ayan", 2), ("Ilhan", 1), ("Hamdi", 1), ("Deqa", 1), ("Hodan", 2), ("Sagal", 1),
    ("Nasra", 1), ("Muna", 1), ("Hibo", 1), ("Idil", 1), ("Asli", 1), ("Shamsa", 1),
    ("Ubah", 1), ("Leyla", 1),
]  # fmt: skip
# Not in the normaliser's list: (English register, Somali orthography, weight)
UNLISTED_MEN = [
    ("Abdiwahab", "Cabdiwahaab", 1), ("Mukhtar", "Muqtaar", 1), ("Faisal", "Faysal", 1),
    ("Hamse", "Xamse", 1), ("Zakariye", "Sakariye", 1), ("Mowlid", "Mowliid", 1),
    ("Awil", "Cawil", 1), ("Daqane", "Dhaqane", 1), ("Korane", "Qorane", 1),
    ("Gedi", "Geedi", 1), ("Siad", "Siyaad", 1), ("Liban", "Liibaan", 1),
    ("Sahal", "Saxal", 1), ("Shire", "Shiire", 1), ("Abdifatah", "Cabdifataax", 1),
    ("Abshir", "Abshir", 1), ("Mohamednur", "Maxamednuur", 1), ("Hashi", "Xaashi", 1),
]  # fmt: skip
UNLISTED_WOMEN = [
    ("Nimo", "Nimco", 1), ("Suad", "Sucaad", 1), ("Fawzia", "Fowsiya", 1),
    ("Farhia", "Farxiya", 1), ("Naima", "Naciima", 1), ("Kamar", "Qamar", 1),
    ("Ikran", "Ikraan", 1), ("Shukri", "Shukri", 1), ("Ifrah", "Ifraax", 1),
    ("Ladan", "Ladhan", 1), ("Hinda", "Hindo", 1), ("Ebla", "Cibla", 1),
]  # fmt: skip
KENYAN_CHRISTIAN_MEN = _words(
    """
    John Joseph Peter Paul James Charles Francis Vincent Patrick Collins Victor Felix
    Brian Kevin David Daniel Samuel Stephen Michael Dennis Moses
    """
)
KENYAN_CHRISTIAN_WOMEN = _words(
    """
    Mary Grace Catherine Jane Lucy Mercy Joyce Alice Esther Ruth Faith Rebecca Cecilia
    Christine Caroline Jacinta Dorcas Agnes Beatrice Elizabeth Margaret Florence Monica
    Nancy Susan Eunice Purity
    """
)
KENYAN_NATIVE_MEN = _words(
    """
    Kamau Njoroge Mwangi Kariuki Otieno Ochieng Odhiambo Onyango Omondi Kiprono Kiptoo
    Kipchoge Wafula Wekesa Barasa Mutua Musyoka Gitau Macharia Kimani
    """
)
KENYAN_NATIVE_WOMEN = _words(
    """
    Wanjiru Wanjiku Wambui Njeri Nyambura Wairimu Achieng Akinyi Atieno Auma Chebet
    Cherono Mwende Nafula Nekesa Wangari
    """
)
KENYAN_DISTRICTS = [
    ("Dadaab", 0.05, 40.31, "somali"), ("Fafi", -0.9, 40.1, "somali"),
    ("Garissa Township", -0.45, 39.65, "somali"), ("Mandera East", 3.94, 41.86, "somali"),
    ("Wajir East", 1.75, 40.06, "somali"), ("Eastleigh", -1.27, 36.85, "mixed"),
    ("Kibra", -1.31, 36.78, "kenyan"), ("Kisumu Central", -0.09, 34.76, "kenyan"),
    ("Nakuru Town East", -0.28, 36.07, "kenyan"), ("Kiambu", -1.17, 36.83, "kenyan"),
    ("Turkana West", 3.73, 34.86, "kenyan"), ("Kakamega Central", 0.28, 34.75, "kenyan"),
]  # fmt: skip
VILLAGE_PARTS = _words(
    """
    Ceel Bar Dhagax Goob Buulo War Qoryo Biyo Xaafad Tuulo Dooy Garas Laan Xero Baraag
    Dar
    """
)
VILLAGE_SUFFIXES = _words(
    """
    weyn yare cad madow dheere barwaaqo jecel dhexe xaanshi baraf
    """
)
KENYAN_VILLAGES = _words(
    """
    Kamukunji Majengo Soweto Bondeni Kaloleni Mwariki Githurai Kangemi Nyalenda Manyatta
    Kondele Kawangware Huruma Kibagare Riruta Lodwar Kalobeyei Ifo Hagadera Dagahaley
    """
)
TITLES_MEN = ["Sheikh", "Sh.", "Haji", "Xaaji", "Mr", "Ustaad", "Eng."]
TITLES_WOMEN = ["Mrs", "Xaajiyo", "Hajia", "Mama"]
TITLES_KENYAN = ["Mr", "Mrs", "Mama", "Mzee", "Pastor"]


def _somali_spellings() -> dict[str, list[str]]:
    spellings: dict[str, list[str]] = {}
    for english, _ in SOMALI_MEN + SOMALI_WOMEN:
        canonical = english.lower()
        others = [v.capitalize() for v in NAME_VARIANTS.get(canonical, ())]
        spellings[english] = [english, *others]
    for english, somali, _ in UNLISTED_MEN + UNLISTED_WOMEN:
        spellings[english] = [english, somali]
    return spellings


SPELLINGS = _somali_spellings()
KEYBOARD = {
    "a": "sqz", "b": "vn", "c": "xv", "d": "sf", "e": "wr", "f": "dg", "g": "fh", "h": "gj",
    "i": "uo", "j": "hk", "k": "jl", "l": "k", "m": "n", "n": "bm", "o": "ip", "p": "o",
    "q": "wa", "r": "et", "s": "ad", "t": "ry", "u": "yi", "v": "cb", "w": "qe", "x": "zc",
    "y": "tu", "z": "x",
}  # fmt: skip


def typo(word: str, rng: random.Random) -> str:
    """One keyboard slip: a neighbouring key, a letter dropped, doubled or swapped."""
    if len(word) < 3:
        return word
    i = rng.randrange(1, len(word))  # first letters are rarely wrong
    kind = rng.random()
    if kind < 0.35:
        ch = word[i].lower()
        return word[:i] + rng.choice(KEYBOARD.get(ch, "e")) + word[i + 1 :]
    if kind < 0.6:
        return word[:i] + word[i + 1 :]
    if kind < 0.8:
        return word[:i] + word[i] + word[i:]
    if i < len(word) - 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:-1]


def _weighted(pool: Sequence[tuple[Any, ...]]) -> Callable[[random.Random], str]:
    names = [item[0] for item in pool]
    weights = [item[-1] for item in pool]

    def pick(rng: random.Random) -> str:
        return rng.choices(names, weights)[0]

    return pick


_pick_man = _weighted(SOMALI_MEN + [(e, w) for e, _, w in UNLISTED_MEN])
_pick_woman = _weighted(SOMALI_WOMEN + [(e, w) for e, _, w in UNLISTED_WOMEN])


# ---------------------------------------------------------------- people and households


@dataclass
class Person:
    """A person as they are (the truth), before any registration writes them down."""

    key: str
    names: list[str]  # canonical English-register tokens in order
    somali: bool
    sex: str
    dob: tuple[int, int, int]
    dob_known: str  # "full", "year", "year_month", "none"
    phone: str | None
    national_id: str | None


@dataclass
class Family:
    key: str
    head: Person
    members: list[Person]
    country: str
    district: str
    village: str
    position: tuple[float, float]


def _places(rng: random.Random) -> list[tuple[str, float, float, str, list[str]]]:
    districts = []
    path = ROOT / "docs" / "examples" / "somalia_locations.csv"
    with path.open(encoding="utf-8") as handle:
        names = sorted({row["district_name"] for row in csv.DictReader(handle)})
    for name in names:
        lat, lon = rng.uniform(-1.0, 11.5), rng.uniform(41.5, 50.5)
        villages = [
            f"{rng.choice(VILLAGE_PARTS)} {rng.choice(VILLAGE_SUFFIXES).capitalize()}"
            for _ in range(12)
        ]
        districts.append((name, lat, lon, "SO", sorted(set(villages))))
    for name, lat, lon, kind in KENYAN_DISTRICTS:
        if kind == "kenyan":
            villages = rng.sample(KENYAN_VILLAGES, 8)
        else:
            villages = [
                f"{rng.choice(VILLAGE_PARTS)} {rng.choice(VILLAGE_SUFFIXES).capitalize()}"
                for _ in range(8)
            ]
        districts.append((name, lat, lon, "KE:" + kind, villages))
    return districts


class Generator:
    """Seeded generator of true families and of their (noisy) registrations."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.places = _places(self.rng)
        self.village_centres: dict[tuple[str, str], tuple[float, float]] = {}
        for name, lat, lon, _, villages in self.places:
            for village in villages:
                self.village_centres[(name, village)] = (
                    lat + self.rng.uniform(-0.1, 0.1),
                    lon + self.rng.uniform(-0.1, 0.1),
                )
        self.serial = 0
        self.year = 2026

    def _key(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def _dob(self, age: int) -> tuple[tuple[int, int, int], str]:
        rng = self.rng
        year = self.year - age
        dob = (year, rng.randint(1, 12), rng.randint(1, 28))
        if age < 10:
            known = rng.choices(["full", "year", "none"], [0.6, 0.35, 0.05])[0]
        else:
            known = rng.choices(["full", "year", "year_month", "none"], [0.3, 0.5, 0.05, 0.15])[0]
        return dob, known

    def _phone(self, country: str) -> str | None:
        rng = self.rng
        if rng.random() < 0.15:
            return None
        if country == "SO":
            return (
                "252"
                + rng.choice(["61", "62", "63", "65", "68", "77", "90"])
                + (f"{rng.randrange(10**7):07d}")
            )
        return "254" + rng.choice(["7", "1"]) + f"{rng.randrange(10**8):08d}"

    def _national_id(self, country: str, age: int) -> str | None:
        rng = self.rng
        if age < 18:
            return None
        if country == "SO":
            return f"SO{rng.randrange(10**9):09d}" if rng.random() < 0.3 else None
        return f"{rng.randrange(10**7, 10**8)}" if rng.random() < 0.8 else None

    def _somali_person(
        self, sex: str, father: list[str], age: int, country: str, given: str | None = None
    ) -> Person:
        name = given or (_pick_man(self.rng) if sex == "m" else _pick_woman(self.rng))
        dob, known = self._dob(age)
        return Person(
            self._key("p"),
            [name, *father[:2]],
            True,
            sex,
            dob,
            known,
            self._phone(country) if age >= 16 else None,
            self._national_id(country, age),
        )

    def _kenyan_person(self, sex: str, surname: str, age: int, country: str) -> Person:
        rng = self.rng
        christian = rng.choice(KENYAN_CHRISTIAN_MEN if sex == "m" else KENYAN_CHRISTIAN_WOMEN)
        native = rng.choice(KENYAN_NATIVE_MEN if sex == "m" else KENYAN_NATIVE_WOMEN)
        names = [christian, native, surname] if rng.random() < 0.7 else [native, surname]
        if names[-1] == names[-2]:
            names = names[:-1]
        dob, known = self._dob(age)
        return Person(
            self._key("p"),
            names,
            False,
            sex,
            dob,
            known,
            self._phone(country) if age >= 16 else None,
            self._national_id(country, age),
        )

    def family(self, related_to: Family | None = None, relation: str = "") -> Family:
        """A new family; `related_to` and `relation` ('brother' or 'son') make confusers."""
        rng = self.rng
        if related_to is not None:
            district, village = related_to.district, related_to.village
            country = related_to.country
            place = next(p for p in self.places if p[0] == district)
        else:
            place = rng.choice(self.places)
            district, country = place[0], ("SO" if place[3] == "SO" else "KE")
            village = rng.choice(place[4])
        kind = place[3]
        somali = kind in ("SO", "KE:somali") or (kind == "KE:mixed" and rng.random() < 0.7)
        if related_to is not None:
            somali = related_to.head.somali
        head_age = rng.randint(22, 75)
        if somali:
            if related_to is not None and relation == "brother":
                father = related_to.head.names[1:3]
            elif related_to is not None and relation == "son":
                father = related_to.head.names[:2]
                head_age = max(20, self.year - related_to.head.dob[0] - rng.randint(20, 30))
            else:
                father = [_pick_man(rng), _pick_man(rng)]
            head_sex = "m" if related_to is not None or rng.random() < 0.8 else "f"
            head = self._somali_person(head_sex, father, head_age, country)
            members = []
            if head_sex == "m" and rng.random() < 0.85:
                members.append(
                    self._somali_person(
                        "f",
                        [_pick_man(rng), _pick_man(rng)],
                        head_age - rng.randint(0, 12),
                        country,
                    )
                )
            children_father = head.names[:2] if head_sex == "m" else [_pick_man(rng), head.names[1]]
            for _ in range(min(9, int(rng.expovariate(1 / 3.5)))):
                age = rng.randint(0, max(0, min(25, head_age - 16)))
                child = self._somali_person(rng.choice("mf"), children_father, age, country)
                if all(child.names[0] != m.names[0] for m in members):  # no two alike
                    members.append(child)
        else:
            surname = (
                related_to.head.names[-1]
                if related_to is not None
                else rng.choice(KENYAN_NATIVE_MEN)
            )
            head_sex = "m" if rng.random() < 0.75 else "f"
            head = self._kenyan_person(head_sex, surname, head_age, country)
            members = []
            if head_sex == "m" and rng.random() < 0.8:
                members.append(
                    self._kenyan_person("f", surname, head_age - rng.randint(0, 10), country)
                )
            for _ in range(min(8, int(rng.expovariate(1 / 3.0)))):
                age = rng.randint(0, max(0, min(25, head_age - 16)))
                members.append(self._kenyan_person(rng.choice("mf"), surname, age, country))
        centre = self.village_centres[(district, village)]
        position = (centre[0] + rng.gauss(0, 0.003), centre[1] + rng.gauss(0, 0.003))
        return Family(self._key("f"), head, members, country, district, village, position)

    # ------------------------------------------------ writing a family down

    def _spell(self, token: str, register: str, noisy: bool) -> str:
        rng = self.rng
        options = SPELLINGS.get(token)
        if options is None:
            word = token
        elif register == "so":
            word = options[-1] if len(options) == 2 else rng.choice(options)
        else:
            word = options[0] if rng.random() < 0.7 else rng.choice(options)
        if token.startswith("Abd") and rng.random() < 0.1 and len(word) > 6:
            word = word[:4] + " " + word[4:].capitalize()  # "Abdi Rahman"
        if noisy and rng.random() < 0.08:
            word = typo(word, rng)
        return word

    def write_name(self, person: Person, noisy: bool, *, primary: bool = False) -> str:
        rng = self.rng
        register = "so" if person.somali and rng.random() < 0.45 else "en"
        tokens = [self._spell(t, register, noisy) for t in person.names]
        if noisy and person.somali and len(tokens) == 3 and rng.random() < 0.2:
            tokens = tokens[:2]  # grandfather left out
        if noisy and not person.somali and len(tokens) > 1 and rng.random() < 0.2:
            rng.shuffle(tokens)  # Kenyan IDs put the surname first
        if noisy and primary and rng.random() < 0.06:
            pool = (
                TITLES_KENYAN
                if not person.somali
                else (TITLES_MEN if person.sex == "m" else TITLES_WOMEN)
            )
            tokens.insert(0, rng.choice(pool))
        text = " ".join(tokens)
        case = rng.random()
        return text.upper() if case < 0.15 else text.lower() if case < 0.25 else text

    def write_dob(self, person: Person, noisy: bool) -> str | None:
        rng = self.rng
        year, month, day = person.dob
        known = person.dob_known
        if noisy:
            roll = rng.random()
            if known == "full" and roll < 0.06:
                if day <= 12 and day != month:
                    month, day = day, month  # entered as DD/MM the other way round
            elif known == "full" and roll < 0.09:
                day = min(28, max(1, day + rng.choice([-1, 1])))
            elif known in ("year", "year_month") and roll < 0.3:
                year += rng.choice([-1, 1])  # age estimated again
            elif known in ("year", "year_month") and roll < 0.36:
                year += rng.choice([-5, -3, -2, 2, 3, 5])  # and further off
            elif roll < 0.38:
                known = "none"
            elif known == "full" and roll < 0.45:
                known = "year"
        if known == "none":
            return None
        if known == "year":
            return f"{year:04d}"
        if known == "year_month":
            return f"{year:04d}-{month:02d}"
        return f"{year:04d}-{month:02d}-{day:02d}"

    def write_phone(self, phone: str | None, country: str, noisy: bool) -> str | None:
        rng = self.rng
        if phone is None:
            return None
        if noisy:
            roll = rng.random()
            if roll < 0.12:
                return None
            if roll < 0.22:
                phone = self._phone(country) or phone  # a new SIM
            elif roll < 0.25:
                i = rng.randrange(4, len(phone))
                phone = phone[:i] + str((int(phone[i]) + 1) % 10) + phone[i + 1 :]
        local = phone[3:]
        style = rng.random()
        if style < 0.3:
            return "+" + phone
        if style < 0.5:
            return f"+{phone[:3]} {local[:2]} {local[2:5]} {local[5:]}"
        if style < 0.6:
            return "00" + phone
        if style < 0.7:
            return phone
        if style < 0.9:
            return "0" + local
        return local

    def write_id(self, national_id: str | None, noisy: bool) -> str | None:
        rng = self.rng
        if national_id is None:
            return None
        if noisy:
            roll = rng.random()
            if roll < 0.3:
                return None
            if roll < 0.33:
                i = rng.randrange(2, len(national_id))
                return national_id[:i] + str(rng.randrange(10)) + national_id[i + 1 :]
            if roll < 0.4 and national_id[:1].isalpha():
                return national_id[:2] + "-" + national_id[2:]
        return national_id

    def write_person(
        self, person: Person, family: Family, noisy: bool, district: str, primary: bool = False
    ) -> PersonRecord:
        return PersonRecord(
            id=self._key("r"),
            name=self.write_name(person, noisy, primary=primary),
            date_of_birth=self.write_dob(person, noisy),
            sex={"m": "male", "f": "female"}[person.sex]
            if self.rng.random() < 0.5
            else person.sex.upper(),
            phone=self.write_phone(person.phone, family.country, noisy),
            national_id=self.write_id(person.national_id, noisy),
            village=family.village,
            district=district,
        )

    def register(self, family: Family, noisy: bool) -> tuple[HouseholdRecord, dict[str, str]]:
        """Write a family down as one registration; returns the record and, for each person
        record, the true person key."""
        rng = self.rng
        district, village, position = family.district, family.village, family.position
        if noisy and rng.random() < 0.05:  # displaced: registered again somewhere else
            place = rng.choice(self.places)
            district, village = place[0], rng.choice(place[4])
            position = self.village_centres[(district, village)]
        truth: dict[str, str] = {}
        head = self.write_person(family.head, family, noisy, district, primary=True)
        truth[head.id] = family.head.key
        members = []
        for person in family.members:
            if noisy and rng.random() < 0.08:
                continue  # away, married out, or died
            record = self.write_person(person, family, noisy, district)
            truth[record.id] = person.key
            members.append(record)
        given = _pick_woman(rng)
        if noisy and rng.random() < 0.2 and all(p.names[0] != given for p in family.members):
            baby = Person(  # a child born since
                self._key("p"), [given, *family.head.names[:2]], True, "f",
                (self.year, rng.randint(1, 12), rng.randint(1, 28)), "full", None, None,
            )  # fmt: skip
            record = self.write_person(baby, family, False, district)
            truth[record.id] = baby.key
            members.append(record)
        rng.shuffle(members)
        gps: tuple[float | None, float | None] = (None, None)
        if rng.random() > 0.08:
            jitter = rng.choice([0.00008, 0.0002, 0.0004]) if rng.random() < 0.85 else 0.003
            gps = (position[0] + rng.gauss(0, jitter), position[1] + rng.gauss(0, jitter))
        spelt_village = village
        if noisy and rng.random() < 0.3:
            spelt_village = (
                village.replace("Ceel", "El").replace("Xaafad", "Hafad").replace("Dh", "D")
            )
            if rng.random() < 0.2:
                spelt_village = typo(spelt_village, rng)
        household = HouseholdRecord(
            id=self._key("h"),
            head=head,
            members=members,
            village=spelt_village,
            latitude=gps[0],
            longitude=gps[1],
            phone=head.phone,
            national_id=head.national_id,
            district=district,
        )
        head.village = spelt_village
        for member in members:
            member.village = spelt_village
            member.latitude, member.longitude = gps
        head.latitude, head.longitude = gps
        return household, truth


@dataclass
class Registry:
    households: list[HouseholdRecord]
    household_truth: set[tuple[str, str]]  # pairs of household ids that are one family
    person_truth: set[tuple[str, str]]  # pairs of person ids that are one person
    household_of: dict[str, str]  # person id → household id


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def build_registry(
    n_households: int, duplicate_share: float = 0.2, seed: int = 7, confusers: float = 0.15
) -> Registry:
    """`n_households` true families (a share of them brothers' and adult sons' households),
    each registered once cleanly, and `duplicate_share` of them registered again with noise."""
    generator = Generator(seed)
    rng = generator.rng
    families: list[Family] = []
    for _ in range(n_households):
        if families and rng.random() < confusers:
            relative = rng.choice(families)
            families.append(generator.family(relative, rng.choice(["brother", "son"])))
        else:
            families.append(generator.family())
    households: list[HouseholdRecord] = []
    by_family: dict[str, list[str]] = defaultdict(list)
    by_person: dict[str, list[str]] = defaultdict(list)
    household_of: dict[str, str] = {}
    for family in families:
        copies = [False] + ([True] if rng.random() < duplicate_share else [])
        for noisy in copies:
            household, truth = generator.register(family, noisy)
            households.append(household)
            by_family[family.key].append(household.id)
            for record_id, person_key in truth.items():
                by_person[person_key].append(record_id)
                household_of[record_id] = household.id
    rng.shuffle(households)
    household_truth = {_pair(a, b) for ids in by_family.values() for a, b in combinations(ids, 2)}
    person_truth = {_pair(a, b) for ids in by_person.values() for a, b in combinations(ids, 2)}
    return Registry(households, household_truth, person_truth, household_of)


# ---------------------------------------------------------------- evaluation helpers


def block(
    records: Iterable[tuple[str, set[str]]], floor: int = 1
) -> tuple[set[tuple[str, str]], dict[str, int]]:
    """Candidate pairs: records sharing keys worth at least `floor` (`matching.key_weight`
    summed over the keys shared; 1: any key, as for people; households have
    `linking.HOUSEHOLD_MIN_SHARED`). Returns the pairs and the block sizes (records per
    key). Unlike `linking.candidates`, no cap: every pair sharing enough is compared."""
    index: dict[str, list[str]] = defaultdict(list)
    for record_id, keys in records:
        for key in keys:
            index[key].append(record_id)
    shared: dict[tuple[str, str], int] = defaultdict(int)
    for key, ids in index.items():
        if len(ids) > 1:
            weight = matching.key_weight(key)
            for a, b in combinations(ids, 2):
                shared[_pair(a, b)] += weight
    pairs = {pair for pair, weight in shared.items() if weight >= floor}
    return pairs, {key: len(ids) for key, ids in index.items()}


def block_report(
    pairs: set[tuple[str, str]], sizes: dict[str, int], truth: set[Any], n: int
) -> str:
    found = len(pairs & truth)
    multi = [s for s in sizes.values() if s > 1]
    all_pairs = n * (n - 1) // 2
    return (
        f"blocking: {len(sizes)} keys, mean block {statistics.fmean(sizes.values()):.2f} "
        f"records (mean {statistics.fmean(multi) if multi else 0:.2f} over blocks of 2+, "
        f"largest {max(sizes.values())}); {len(pairs)} candidate pairs "
        f"(reduction {1 - len(pairs) / max(1, all_pairs):.5f}); "
        f"pair completeness {found}/{len(truth)} = {found / max(1, len(truth)):.4f}"
    )


def random_pairs(ids: Sequence[str], count: int, seed: int = 11) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        a, b = rng.sample(ids, 2)
        pairs.append((a, b))
    return pairs


def fit(
    vectors: Sequence[ComparisonVector],
    random_vectors: Sequence[ComparisonVector],
    initial: FellegiSunterModel,
    iterations: int = 100,
) -> FellegiSunterModel:
    """u from random pairs as the start, then EM on the candidate pairs."""
    start = matching.estimate_u(random_vectors, initial)
    return matching.estimate_em(vectors, start, iterations)


def prf(predicted: set[Any], truth: set[Any]) -> tuple[float, float, float]:
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 1.0
    recall = tp / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def report_bands(
    label: str,
    scored: Sequence[tuple[tuple[str, str], float]],
    truth: set[tuple[str, str]],
    thresholds: Thresholds,
    prior_weight: float,
    without_evidence: frozenset[tuple[str, str]] = frozenset(),
    never: frozenset[tuple[str, str]] = frozenset(),
) -> dict[str, float]:
    """P/R/F1 of the auto-link band, of link+review (what a supervisor would see), and at
    the Bayes decision point (posterior 0.5: weight ≥ −log2 prior odds). Pairs in
    `without_evidence` (households without `matching.household_evidence`) are never in
    the link band, as in the registry: past its threshold they go to review; pairs in
    `never` (people without `matching.person_evidence`) are in neither band."""
    link = {
        pair
        for pair, weight in scored
        if weight >= thresholds.link and pair not in without_evidence and pair not in never
    }
    review = {pair for pair, weight in scored if weight >= thresholds.review} - link - never
    bayes = {pair for pair, weight in scored if weight >= prior_weight}
    p, r, f = prf(link, truth)
    p2, r2, f2 = prf(link | review, truth)
    p3, r3, f3 = prf(bayes, truth)
    print(
        f"{label}: link band P={p:.4f} R={r:.4f} F1={f:.4f} ({len(link)} links); "
        f"review band {len(review)} pairs ({len(review & truth)} true); "
        f"link+review P={p2:.4f} R={r2:.4f} F1={f2:.4f}; "
        f"posterior≥0.5 (weight ≥ {prior_weight:.2f}) P={p3:.4f} R={r3:.4f} F1={f3:.4f}"
    )
    return {"precision": p, "recall": r, "f1": f, "f1_review": f2, "f1_bayes": f3}


def prior_weight(model: FellegiSunterModel) -> float:
    """The weight at which the posterior is one half: −log2(prior / (1 − prior))."""
    import math

    return -math.log2(model.prior / (1 - model.prior))


def print_model(model: FellegiSunterModel) -> None:
    for name, levels in model.fields.items():
        cells = ", ".join(
            f"{lv} m={model.m[name][lv]:.3f} u={model.u[name][lv]:.4f} "
            f"w={model.weight_of(name, lv):+.1f}"
            for lv in levels
        )
        print(f"    {name}: {cells}")
    print(f"    prior {model.prior:.4f}")


# ---------------------------------------------------------------- the benchmark


def evaluate_households(
    registry: Registry, thresholds: Thresholds, verbose: bool
) -> dict[str, float]:
    records = {h.id: h for h in registry.households}
    started = time.perf_counter()
    pairs, sizes = block(
        ((h.id, matching.blocking_keys(h)) for h in registry.households),
        floor=linking.HOUSEHOLD_MIN_SHARED,
    )
    print(
        f"households (sharing keys worth ≥ {linking.HOUSEHOLD_MIN_SHARED}) "
        + block_report(pairs, sizes, registry.household_truth, len(records))
    )
    ordered = sorted(pairs)
    vectors = [matching.compare_households(records[a], records[b]) for a, b in ordered]
    randoms = [
        matching.compare_households(records[a], records[b])
        for a, b in random_pairs(list(records), 20_000)
    ]
    compared = time.perf_counter() - started
    model = fit(vectors, randoms, matching.default_model(household=True))
    if verbose:
        print_model(model)
    scored = [(pair, model.score(v).weight) for pair, v in zip(ordered, vectors, strict=True)]
    print(f"  {len(ordered)} pairs blocked and compared in {compared:.1f} s")
    without_evidence = frozenset(
        pair
        for pair, vector in zip(ordered, vectors, strict=True)
        if not matching.household_evidence(vector)
    )
    return report_bands(
        "households",
        scored,
        registry.household_truth,
        thresholds,
        prior_weight(model),
        without_evidence,
    )


def evaluate_members(registry: Registry, thresholds: Thresholds, verbose: bool) -> dict[str, float]:
    people = {p.id: p for h in registry.households for p in (h.head, *h.members)}
    pairs, sizes = block((p.id, matching.blocking_keys(p)) for p in people.values())
    # Members registered together in one household are different people.
    pairs = {(a, b) for a, b in pairs if registry.household_of[a] != registry.household_of[b]}
    print("members " + block_report(pairs, sizes, registry.person_truth, len(people)))
    ordered = sorted(pairs)
    vectors = [matching.compare_people(people[a], people[b]) for a, b in ordered]
    randoms = [
        matching.compare_people(people[a], people[b]) for a, b in random_pairs(list(people), 20_000)
    ]
    model = fit(vectors, randoms, matching.default_model())
    if verbose:
        print_model(model)
    scored = [(pair, model.score(v).weight) for pair, v in zip(ordered, vectors, strict=True)]
    never = frozenset(
        pair
        for pair, vector in zip(ordered, vectors, strict=True)
        if not matching.person_evidence(vector)
    )
    return report_bands(
        "members", scored, registry.person_truth, thresholds, prior_weight(model), never=never
    )


def evaluate_alignment(registry: Registry) -> dict[str, float]:
    """Members of each truly duplicated household pair, paired by `align_members` with the
    default person model (what follows a household link)."""
    by_id = {h.id: h for h in registry.households}
    predicted: set[tuple[str, str]] = set()
    truth: set[tuple[str, str]] = set()
    for a_id, b_id in sorted(registry.household_truth):
        a, b = by_id[a_id], by_id[b_id]
        people_a = [a.head, *a.members]
        people_b = [b.head, *b.members]
        for x in people_a:
            for y in people_b:
                if _pair(x.id, y.id) in registry.person_truth:
                    truth.add(_pair(x.id, y.id))
        for match in matching.align_members(people_a, people_b):
            predicted.add(_pair(match.a_id, match.b_id))
    p, r, f = prf(predicted, truth)
    print(
        "members of duplicated households, aligned by align_members (weight ≥ 0): "
        f"P={p:.4f} R={r:.4f} F1={f:.4f} ({len(truth)} true pairs)"
    )
    return {"precision": p, "recall": r, "f1": f}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--households", type=int, default=4000)
    parser.add_argument("--duplicates", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--verbose", action="store_true", help="print the fitted models")
    parser.add_argument(
        "--household-min-shared",
        type=int,
        default=linking.HOUSEHOLD_MIN_SHARED,
        help="least weight of keys a pair of households shares to be compared "
        f"(default {linking.HOUSEHOLD_MIN_SHARED}, as the registry; 1: any key)",
    )
    args = parser.parse_args(argv)
    linking.HOUSEHOLD_MIN_SHARED = args.household_min_shared
    started = time.perf_counter()
    registry = build_registry(args.households, args.duplicates, args.seed)
    people = sum(1 + len(h.members) for h in registry.households)
    print(
        f"synthetic registry: {len(registry.households)} household records, {people} person "
        f"records, {len(registry.household_truth)} duplicate household pairs, "
        f"{len(registry.person_truth)} duplicate person pairs (seed {args.seed})"
    )
    thresholds = matching.DEFAULT_THRESHOLDS
    print(f"thresholds: link ≥ {thresholds.link}, review ≥ {thresholds.review} (log2 weight)")
    evaluate_households(registry, thresholds, args.verbose)
    evaluate_members(registry, thresholds, args.verbose)
    evaluate_alignment(registry)
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
