"""Incremental matching on PostgreSQL: one new household against registries of 10k, 100k
and 1M households, timed through `server.registry.linking.index_and_match`.

    .venv/bin/python bench/match_db.py [--sizes 10000 100000 1000000] [--queries 1000]
                                       [--districts 20] [--seed 17] [--member-keys]
                                       [--max-candidates 30] [--explain] [--profile]
                                       [--keep | --reuse]
                                       [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

What it does (bounded; ≈ 9 min for the three sizes on an idle 2-core machine, up to 30 min
when other jobs share it; ≈ 1 min for 10k + 100k):
1. drops and creates the database `bench_match` on --database-url's server (never the
   database named in the URL) and migrates it with Alembic;
2. creates --districts districts (17 of 20 Somali, 3 Kenyan, like the generator's mix),
   so a district's name blocks hold 1/20 of the registry;
3. grows the registry to each of --sizes in turn: synthetic households from
   bench/synthetic.py (15 % of them brothers' or adult sons' households, generated as
   confusers), registered cleanly, written as the household registration form writes
   them — households `head_name`, `national_id`, `phone`, `village`, `gps`; members
   (the head among them) `full_name`, `sex`, `date_of_birth`, `household_id` set — with
   COPY in batches, their blocking keys (from `linking.household_record`, as the worker
   computes them) into `registry_match_key`; then VACUUM ANALYZE;
4. at each size, times `index_and_match(session, household, actor=None)` for --queries new
   households — the same ones at every size: half re-register, with field noise, a
   family among the first 10,000, half are new families — each created with its members
   in a transaction that is rolled back afterwards, so the registry stays at its size.
   It prints median, p90, p99 of the wall time — for all, for the new families, for the
   returning ones (the link band merges the household and reconciles its members, part
   of `index_and_match`), and with the merge time left out — client CPU, SQL time and
   statements, server CPU, candidates, and how many returning households found their
   family (link or review).

--member-keys files the members' own keys too (as the worker does for members; the
household lookups never read them); --max-candidates overrides `linking.MAX_CANDIDATES`
for the run; --explain prints EXPLAIN ANALYZE of the candidate query (median and largest
candidate sets); --profile adds a cProfile pass over the largest size; --keep keeps the
database, and --reuse measures a kept one again at its size without loading.

Foreign-key triggers are off during COPY (`session_replication_role = replica`, so the
server user must be a superuser); the rows are consistent by construction.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import os
import pstats
import random
import statistics
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import synthetic  # noqa: E402
from sqlalchemy import Engine, create_engine, event, make_url, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from server.accounts.models import District, Region  # noqa: E402
from server.cli import upgrade_database  # noqa: E402
from server.db import make_engine  # noqa: E402
from server.registry import linking, matching, service  # noqa: E402
from server.registry.models import HOUSEHOLDS, MEMBERS, Entity  # noqa: E402

DATABASE = "bench_match"
DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
RETURNING_POOL = 10_000  # returning households re-register one of the first 10,000 families
CONFUSERS = 0.15  # share of households that are a brother's or an adult son's
BATCH = 10_000  # households per COPY transaction
ENTITY_COLUMNS = (
    "id",
    "list_name",
    "label",
    "properties",
    "version",
    "district_id",
    "household_id",
    "deleted",
    "created_at",
    "updated_at",
)
ENTITY_TYPES = [
    "uuid", "text", "text", "jsonb", "int4", "int4", "uuid", "bool", "timestamptz", "timestamptz",
]  # fmt: skip


# ---------------------------------------------------------------- the database


def fresh_database(server_url: str) -> str:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    return bench_url(server_url)


def drop_database(server_url: str) -> None:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
    admin.dispose()


def bench_url(server_url: str) -> str:
    return make_url(server_url).set(database=DATABASE).render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def describe(seed: int, districts: int, member_keys: bool) -> str:
    """What a kept database holds, so that --reuse refuses one built otherwise."""
    return f"seed={seed} districts={districts} member_keys={member_keys}"


def vacuum_analyze(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE) registry_entity")
        connection.execute("VACUUM (ANALYZE) registry_match_key")


# ---------------------------------------------------------------- households as rows


@dataclass(slots=True)
class Row:
    """An entity as linking reads it (id, label, properties, district), without the ORM:
    a million households go through `linking.household_record` on their way to COPY."""

    id: uuid.UUID
    list_name: str
    label: str
    properties: dict[str, Any]
    district_id: int
    household_id: uuid.UUID | None = None


@dataclass(slots=True)
class Household:
    household: Row
    members: list[Row]


def written(
    record: matching.HouseholdRecord, district_id: int, new_id: Callable[[], uuid.UUID]
) -> Household:
    """A generated registration as the household form stores it: the household's own
    properties, and every person (the head first) as a member with name, sex and birth."""
    properties: dict[str, Any] = {"head_name": record.head.name}
    if record.national_id:
        properties["national_id"] = record.national_id
    if record.phone:
        properties["phone"] = record.phone
    if record.village:
        properties["village"] = record.village
    if record.latitude is not None and record.longitude is not None:
        properties["gps"] = f"{record.latitude:.6f} {record.longitude:.6f} 0 5"
    household = Row(new_id(), HOUSEHOLDS, record.head.name or "", properties, district_id)
    members = []
    for number, person in enumerate([record.head, *record.members]):
        member: dict[str, Any] = {
            "full_name": person.name,
            "relationship": "head" if number == 0 else "other",
        }
        if person.sex:
            member["sex"] = person.sex
        if person.date_of_birth:
            member["date_of_birth"] = person.date_of_birth
        members.append(Row(new_id(), MEMBERS, person.name or "", member, district_id, household.id))
    return Household(household, members)


def household_keys(session: Session, household: Household) -> set[str]:
    """The keys `linking.index` files this household under (same record, same cut)."""
    record = linking.household_record(session, household.household, household.members)
    return {key[:200] for key in matching.blocking_keys(record)}


def member_keys(member: Row) -> set[str]:
    return {key[:200] for key in matching.blocking_keys(linking.person_record(member))}


def as_entities(household: Household) -> tuple[Entity, list[Entity]]:
    def entity(row: Row) -> Entity:
        return Entity(
            id=row.id,
            list_name=row.list_name,
            label=row.label,
            properties=row.properties,
            district_id=row.district_id,
            household_id=row.household_id,
        )

    return entity(household.household), [entity(member) for member in household.members]


# ---------------------------------------------------------------- the generated registry


def restricted_generator(seed: int, districts: int) -> synthetic.Generator:
    """The synthetic generator living in `districts` places: 85 % Somali districts, the
    rest Kenyan ones, picked evenly from its lists."""
    generator = synthetic.Generator(seed)
    somali = [place for place in generator.places if place[3] == "SO"]
    kenyan = [place for place in generator.places if place[3] != "SO"]
    n_kenyan = min(len(kenyan), max(1, round(districts * 0.15))) if districts > 1 else 0
    n_somali = min(len(somali), districts - n_kenyan)
    generator.places = (
        somali[:: max(1, len(somali) // n_somali)][:n_somali]
        + kenyan[:: max(1, len(kenyan) // max(1, n_kenyan))][:n_kenyan]
    )
    return generator


@dataclass
class Registry:
    """The stream of registered households, and the families kept to come back later."""

    generator: synthetic.Generator
    district_ids: dict[str, int]
    keep: set[int]
    id_rng: random.Random
    loaded: int = 0
    recent: deque[synthetic.Family] = field(default_factory=lambda: deque(maxlen=5000))
    kept: dict[int, tuple[synthetic.Family, uuid.UUID]] = field(default_factory=dict)

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.id_rng.getrandbits(128), version=4)

    def households(self, count: int) -> Iterator[Household]:
        rng = self.generator.rng
        for _ in range(count):
            if self.recent and rng.random() < CONFUSERS:
                relative = rng.choice(self.recent)
                family = self.generator.family(relative, rng.choice(["brother", "son"]))
            else:
                family = self.generator.family()
            self.recent.append(family)
            record, _ = self.generator.register(family, noisy=False)
            household = written(record, self.district_ids[record.district or ""], self.new_id)
            if self.loaded in self.keep:
                self.kept[self.loaded] = (family, household.household.id)
            self.loaded += 1
            yield household


def load(
    url: str, registry: Registry, count: int, with_member_keys: bool, session: Session
) -> dict[str, float]:
    """COPY `count` more households, their members and blocking keys, in batches."""
    started = time.perf_counter()
    generating = 0.0
    copying = 0.0
    key_rows = member_key_rows = entity_rows = 0
    with psycopg.connect(libpq_url(url)) as connection:
        connection.execute("SET session_replication_role = replica")
        done = 0
        while done < count:
            batch = min(BATCH, count - done)
            began = time.perf_counter()
            entities: list[tuple[Any, ...]] = []
            keys: list[tuple[str, str, uuid.UUID]] = []
            now = dt.datetime.now(dt.UTC)
            for household in registry.households(batch):
                for row in (household.household, *household.members):
                    entities.append(
                        (row.id, row.list_name, row.label, row.properties, 1, row.district_id,
                         row.household_id, False, now, now)
                    )  # fmt: skip
                for key in household_keys(session, household):
                    keys.append((HOUSEHOLDS, key, household.household.id))
                if with_member_keys:
                    for member in household.members:
                        for key in member_keys(member):
                            keys.append((MEMBERS, key, member.id))
                            member_key_rows += 1
            copied = time.perf_counter()
            generating += copied - began
            with connection.cursor() as cursor:
                with cursor.copy(
                    f"COPY registry_entity ({', '.join(ENTITY_COLUMNS)}) FROM STDIN"
                ) as copy:
                    copy.set_types(ENTITY_TYPES)
                    for entity_row in entities:
                        copy.write_row(entity_row)
                with cursor.copy(
                    "COPY registry_match_key (list_name, key, entity_id) FROM STDIN"
                ) as copy:
                    copy.set_types(["text", "text", "uuid"])
                    for key_row in keys:
                        copy.write_row(key_row)
            connection.commit()
            copying += time.perf_counter() - copied
            entity_rows += len(entities)
            key_rows += len(keys)
            done += batch
            if done % 100_000 == 0 or done == count:
                elapsed = time.perf_counter() - started
                print(
                    f"    {registry.loaded:>9,} households loaded "
                    f"({done / elapsed:,.0f}/s: generating and keys {generating:.0f} s, "
                    f"COPY {copying:.0f} s)",
                    flush=True,
                )
    return {
        "seconds": time.perf_counter() - started,
        "entity_rows": entity_rows,
        "key_rows": key_rows,
        "member_key_rows": member_key_rows,
    }


# ---------------------------------------------------------------- the new households


@dataclass
class Query:
    household: Household
    truth: uuid.UUID | None  # the registered household of the same family, if returning


def queries(registry: Registry, count: int, seed: int) -> tuple[list[Query], list[Query]]:
    """`count` new households (even: a returning family re-registered with noise; odd: a
    new family) and 20 more new families to warm up with. A generator of its own, so
    the registry's stream does not depend on how many queries are asked for."""
    generator = restricted_generator(seed, len(registry.district_ids))
    generator.rng = random.Random(seed * 7919 + 1)
    id_rng = random.Random(seed * 7919 + 2)

    def new_id() -> uuid.UUID:
        return uuid.UUID(int=id_rng.getrandbits(128), version=4)

    def household(family: synthetic.Family, noisy: bool) -> Household:
        record, _ = generator.register(family, noisy=noisy)
        return written(record, registry.district_ids[record.district or ""], new_id)

    returning = [registry.kept[number] for number in sorted(registry.kept)]
    chosen: list[Query] = []
    for number in range(count):
        if number % 2 == 0 and returning:
            family, truth = returning.pop(0)
            chosen.append(Query(household(family, True), truth))
        else:
            chosen.append(Query(household(generator.family(), False), None))
    warm_up = [Query(household(generator.family(), False), None) for _ in range(20)]
    return chosen, warm_up


# ---------------------------------------------------------------- timing


@dataclass
class Timings:
    """What happens inside one `index_and_match`: SQL statements and their time, the
    candidates linking fetched, and the time spent merging (the link band)."""

    statements: int = 0
    sql_seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's thread: SQLAlchemy, psycopg, matching
    candidates: int = 0
    merge_seconds: float = 0.0
    candidate_sql: tuple[str, Any] | None = None


class Probe:
    """Counts statements (engine events) and wraps `linking.candidates` and
    `service.merge` to see candidates and merge time — measuring, not changing them."""

    def __init__(self, engine: Engine) -> None:
        self.current: Timings | None = None
        self._started: list[float] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        original_candidates = linking.candidates
        original_merge = service.merge

        def candidates(session: Session, entity: Entity, keys: set[str]) -> list[Entity]:
            found = original_candidates(session, entity, keys)
            if self.current is not None and entity.list_name == HOUSEHOLDS:
                self.current.candidates = len(found)
            return found

        def merge(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original_merge(*args, **kwargs)
            finally:
                if self.current is not None and kwargs.get("parent") is None:
                    self.current.merge_seconds += time.perf_counter() - began

        linking.candidates = candidates
        service.merge = merge

    def _before(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self._started.append(time.perf_counter())
        if self.current is not None and "GROUP BY registry_match_key.entity_id" in statement:
            self.current.candidate_sql = (statement, parameters)

    def _after(self, *_: Any) -> None:
        began = self._started.pop()
        if self.current is not None:
            self.current.statements += 1
            self.current.sql_seconds += time.perf_counter() - began


def backend_cpu(url: str) -> dict[int, float] | None:
    """CPU seconds used so far by each server process serving this database (PostgreSQL
    on this machine), read from /proc; None where that cannot be read."""
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        pids = [
            pid
            for (pid,) in connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ]
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def percentile(values: Sequence[float], share: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


@dataclass
class Outcome:
    seconds: float
    timings: Timings
    pairs: list[tuple[uuid.UUID, str]]  # (candidate household, band) for link and review
    plan: list[str] | None = None


def match_one(engine: Engine, probe: Probe, query: Query, explain: bool = False) -> Outcome:
    """Create the household and its members, time `index_and_match`, roll back."""
    household, members = as_entities(query.household)
    with Session(engine) as session:
        session.add(household)
        session.add_all(members)
        session.flush()
        probe.current = timings = Timings()
        began, began_cpu = time.perf_counter(), time.thread_time()
        found = linking.index_and_match(session, household, actor=None)
        seconds = time.perf_counter() - began
        timings.cpu_seconds = time.thread_time() - began_cpu
        probe.current = None
        pairs = [(pair.candidate_id, pair.band) for pair in found]
        plan = None
        if explain and timings.candidate_sql is not None:
            statement, parameters = timings.candidate_sql
            connection = session.connection()
            plan = [
                line
                for (line,) in connection.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                )
            ]
        session.rollback()
    return Outcome(seconds, timings, pairs, plan)


def measure(
    url: str,
    engine: Engine,
    probe: Probe,
    size: int,
    chosen: list[Query],
    warm_up: list[Query],
    *,
    explain: bool,
    profile: bool,
) -> dict[str, float]:
    for query in warm_up:
        match_one(engine, probe, query)
    outcomes: list[Outcome] = []
    load = os.getloadavg()[0]
    server_before = backend_cpu(url)
    for number, query in enumerate(chosen):
        outcomes.append(match_one(engine, probe, query))
        if (number + 1) % 250 == 0:
            print(f"    {number + 1} of {len(chosen)} new households matched", flush=True)
    load = max(load, os.getloadavg()[0])
    server_after = backend_cpu(url)
    server_cpu = "not readable"
    if server_before is not None and server_after is not None:
        used = sum(after - server_before.get(pid, 0.0) for pid, after in server_after.items())
        server_cpu = f"{used / len(chosen) * 1000:.1f} ms"
    pairs = list(zip(chosen, outcomes, strict=True))
    returning = [(q, o) for q, o in pairs if q.truth is not None]
    found = sum(any(c == q.truth for c, _ in o.pairs) for q, o in returning)
    linked = sum(any(c == q.truth and b == "link" for c, b in o.pairs) for q, o in returning)
    wrong_links = sum(sum(1 for c, b in o.pairs if b == "link" and c != q.truth) for q, o in pairs)
    merged = sum(1 for o in outcomes if o.timings.merge_seconds > 0)
    counts = [float(o.timings.candidates) for o in outcomes]
    groups = {
        f"all {len(outcomes)}": [o.seconds for o in outcomes],
        f"{len(outcomes) - len(returning)} new families": [
            o.seconds for q, o in pairs if q.truth is None
        ],
        f"{len(returning)} returning ({merged} merged)": [o.seconds for _, o in returning],
        "all, merge time left out": [o.seconds - o.timings.merge_seconds for o in outcomes],
        "client CPU (this process)": [o.timings.cpu_seconds for o in outcomes],
        "SQL (statements' execution)": [o.timings.sql_seconds for o in outcomes],
    }
    print(
        f"  N={size:,}: index_and_match per new household, ms   median      p90      p99      max",
        flush=True,
    )
    result: dict[str, float] = {}
    for (label, seconds), name in zip(
        groups.items(), ("all", "new", "returning", "no_merge", "cpu", "sql"), strict=True
    ):
        ms = [value * 1000 for value in seconds]
        figures = {
            "median": statistics.median(ms),
            "p90": percentile(ms, 0.90),
            "p99": percentile(ms, 0.99),
            "max": max(ms),
        }
        result |= {f"{name}_{key}": value for key, value in figures.items()}
        print(f"    {label:<44}" + "".join(f"{value:>9.2f}" for value in figures.values()))
    print(
        f"    {statistics.fmean(o.timings.statements for o in outcomes):.1f} statements on "
        f"average; server CPU mean {server_cpu} per household (creating it and rolling back "
        f"included); load average up to {load:.1f}\n"
        f"    candidates mean {statistics.fmean(counts):.1f}, median "
        f"{statistics.median(counts):.0f}, p99 {percentile(counts, 0.99):.0f}, max "
        f"{max(counts):.0f}; returning households: {found}/{len(returning)} found their "
        f"family (link or review), {linked} linked; {wrong_links} links to a wrong household",
        flush=True,
    )
    if explain:
        by_candidates = sorted(
            range(len(outcomes)), key=lambda i: (outcomes[i].timings.candidates, i)
        )
        for label, index in (
            ("median", by_candidates[len(by_candidates) // 2]),
            ("most", by_candidates[-1]),
        ):
            outcome = match_one(engine, probe, chosen[index], explain=True)
            print(
                f"    EXPLAIN ANALYZE of the candidate query, {label} candidates "
                f"({outcome.timings.candidates}):"
            )
            for line in outcome.plan or []:
                print("      " + line)
    if profile:  # a second pass: cProfile slows the client, so it is not the timed one
        profiler = cProfile.Profile()
        profiler.enable()
        for query in chosen:
            match_one(engine, probe, query)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue())
    return result


# ---------------------------------------------------------------- the run


@contextmanager
def phase(label: str) -> Iterator[None]:
    began = time.perf_counter()
    yield
    print(f"  {label} in {time.perf_counter() - began:.0f} s", flush=True)


def create_districts(engine: Engine, generator: synthetic.Generator) -> dict[str, int]:
    with Session(engine) as session:
        regions = {"SO": Region(code="so", name="Somalia"), "KE": Region(code="ke", name="Kenya")}
        districts = [
            District(code=f"d{n:02d}", name=place[0], region=regions[place[3][:2]])
            for n, place in enumerate(generator.places)
        ]
        session.add_all(districts)
        session.commit()
        return {district.name: district.id for district in districts}


def district_map(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {d.name: d.id for d in session.scalars(select(District))}


def check_keys(engine: Engine, registry: Registry) -> None:
    """The keys COPY stored are the keys `linking.index` computes for the stored rows."""
    with Session(engine) as session:
        for _, (_, household_id) in sorted(registry.kept.items())[:50]:
            entity = session.get(Entity, household_id)
            assert entity is not None
            expected = {key[:200] for key in matching.blocking_keys(
                linking.household_record(session, entity)
            )}  # fmt: skip
            stored = set(
                session.scalars(
                    text("SELECT key FROM registry_match_key WHERE entity_id = :id"),
                    {"id": household_id},
                )
            )
            assert stored == expected, (household_id, stored ^ expected)


def table_sizes(engine: Engine) -> str:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
                "WHERE relname IN ('registry_entity', 'registry_match_key') ORDER BY relname"
            )
        ).all()
    return ", ".join(f"{name} {size}" for name, size in rows)


def main(argv: list[str] | None = None) -> int:
    global DATABASE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--districts", type=int, default=20)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--member-keys", action="store_true", help="file members' blocking keys too"
    )
    parser.add_argument(
        "--max-candidates",
        type=int,
        default=linking.MAX_CANDIDATES,
        help=f"linking's cap on candidates per record (default {linking.MAX_CANDIDATES})",
    )
    parser.add_argument(
        "--household-min-shared",
        type=int,
        default=linking.HOUSEHOLD_MIN_SHARED,
        help="least weight of keys a candidate household shares (default "
        f"{linking.HOUSEHOLD_MIN_SHARED}; 1: every household sharing a key)",
    )
    parser.add_argument(
        "--database", default=DATABASE, help=f"database to build or reuse (default {DATABASE})"
    )
    parser.add_argument("--explain", action="store_true", help="EXPLAIN the candidate query")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest size")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure a database kept by an earlier run (its size must be the largest size)",
    )
    parser.add_argument("--database-url", default=DEFAULT_SERVER)
    args = parser.parse_args(argv)
    DATABASE = args.database
    sizes = sorted(set(args.sizes))
    linking.MAX_CANDIDATES = args.max_candidates
    linking.HOUSEHOLD_MIN_SHARED = args.household_min_shared
    if args.districts < 1 or sizes[0] < 1:
        parser.error("--districts and --sizes must be positive")
    pool = min(RETURNING_POOL, sizes[0])
    keep = {number * pool // (args.queries // 2 + 1) for number in range(args.queries // 2 + 1)}
    print(
        f"sizes {', '.join(f'{s:,}' for s in sizes)}; {args.queries} new households per size; "
        f"{args.districts} districts; seed {args.seed}; at most {args.max_candidates} "
        f"candidates, households sharing at least {args.household_min_shared}; "
        f"database {DATABASE}",
        flush=True,
    )
    started = time.perf_counter()
    label = describe(args.seed, args.districts, args.member_keys)
    url = bench_url(args.database_url)
    generator = restricted_generator(args.seed, args.districts)
    if args.reuse:
        engine = make_engine(url)
        with engine.connect() as connection:
            comment = connection.scalar(
                text("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                     "WHERE datname = current_database()")
            )  # fmt: skip
            have = connection.scalar(
                text("SELECT count(*) FROM registry_entity WHERE list_name = 'households'")
            )
        if comment != label or have != sizes[-1]:
            parser.error(f"{DATABASE} holds {have:,} households ({comment}), not {sizes[-1]:,} "
                         f"({label})")  # fmt: skip
        sizes = sizes[-1:]
        district_ids = district_map(engine)
    else:
        with phase("database created and migrated"):
            url = fresh_database(args.database_url)
            upgrade_database(url)
            engine = make_engine(url)
            with engine.connect() as connection:
                connection.execute(text(f"COMMENT ON DATABASE \"{DATABASE}\" IS '{label}'"))
                connection.commit()
            district_ids = create_districts(engine, generator)
    registry = Registry(generator, district_ids, keep, random.Random(args.seed * 7919))
    probe = Probe(engine)
    results: dict[int, dict[str, float]] = {}
    chosen: list[Query] = []
    warm_up: list[Query] = []
    try:
        for size in sizes:
            if args.reuse:
                with phase(f"first {pool:,} households generated again (not loaded)"):
                    for _ in registry.households(pool):
                        pass
            else:
                with Session(engine) as session, phase(f"grown to {size:,} households"):
                    loaded = load(url, registry, size - registry.loaded, args.member_keys, session)
                    print(
                        f"    {loaded['entity_rows']:,} entity rows, {loaded['key_rows']:,} "
                        f"key rows ({loaded['member_key_rows']:,} of them members')"
                    )
                with phase("VACUUM ANALYZE"):
                    vacuum_analyze(url)
                print(f"    {table_sizes(engine)}")
            if not chosen:
                check_keys(engine, registry)
                chosen, warm_up = queries(registry, args.queries, args.seed)
            gc.collect()
            results[size] = measure(
                url,
                engine,
                probe,
                size,
                chosen,
                warm_up,
                explain=args.explain,
                profile=args.profile and size == sizes[-1],
            )
    finally:
        engine.dispose()
        if not args.keep and not args.reuse:
            drop_database(args.database_url)
    if len(results) > 1:
        first, last = results[sizes[0]], results[sizes[-1]]
        print(
            f"growth {sizes[0]:,} → {sizes[-1]:,} of the median: all ×"
            f"{last['all_median'] / first['all_median']:.2f}, new families ×"
            f"{last['new_median'] / first['new_median']:.2f}, merge time left out ×"
            f"{last['no_merge_median'] / first['no_merge_median']:.2f}"
        )
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
