"""Growth of incremental matching from a small registry to a large one, measured in one
run: the same new households matched against both registries in turn, household by
household, in one process, so that the machine's drift (±25 % between runs of
`bench/match_db.py` here) falls on both sizes alike and the ratio means something.

    .venv/bin/python bench/match_growth.py [--small bench_match_10k] [--large bench_match]
                                           [--queries 1000] [--seed 17] [--districts 20]

It reuses two databases that `bench/match_db.py --keep` built with the same --seed and
--districts, and changes neither (every household is matched in a transaction that is
rolled back):

    .venv/bin/python bench/match_db.py --sizes 10000 --database bench_match_10k --keep
    .venv/bin/python bench/match_db.py --keep        # 10k, 100k, then 1M in bench_match

Without them it says so and stops (so `make bench` goes on). It prints, for each registry,
the median time of matching (keys, candidates, scores, bands and match-candidate rows: the
whole of `linking.index_and_match` but the automatic merge that follows a link), the same
over the new families only, over all the households with their merges, and the median
merge of the households that merged; then the growth of each from the small registry to
the large one. Matching is what grows with the registry and what issue #7's growth target
is read from; a merge costs the same at every size (see docs/benchmarks.md). Run it
twice: the first run after PostgreSQL starts reads the large registry from disk.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import match_db  # noqa: E402
from sqlalchemy import Engine, create_engine, text  # noqa: E402

from server.db import make_engine  # noqa: E402


def exists(database: str) -> bool:
    engine = create_engine(match_db.DEFAULT_SERVER)
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database}
        ).first()
    engine.dispose()
    return found is not None


FIGURES = ("matching", "new families", "all with merges", "one merge")


def medians(outcomes: list[tuple[float, float, bool]]) -> tuple[float, float, float, float]:
    """Medians in milliseconds, as `FIGURES` names them: matching (the merge time left
    out) over all the households, matching over the new families, the whole call over
    all the households, and the merges alone."""

    def median(values: list[float]) -> float:
        return statistics.median(values) * 1000 if values else float("nan")

    return (
        median([seconds - merge for seconds, merge, _new in outcomes]),
        median([seconds - merge for seconds, merge, new in outcomes if new]),
        median([seconds for seconds, _merge, _new in outcomes]),
        median([merge for _seconds, merge, _new in outcomes if merge > 0]),
    )


def arguments(description: str, new_families: int | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    if new_families is not None:
        parser.add_argument("--new-families", type=int, default=new_families)
    parser.add_argument("--small", default="bench_match_10k")
    parser.add_argument("--large", default="bench_match")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--districts", type=int, default=20)
    return parser.parse_args()


def prepare(
    args: argparse.Namespace,
) -> tuple[dict[str, Engine], dict[str, match_db.Probe], list[match_db.Query]] | None:
    """Engines and probes for both registries, and the new households to match against
    them (the same as `bench/match_db.py` asks), both registries warmed up; None, having
    said why, when a database is missing."""
    missing = [name for name in (args.small, args.large) if not exists(name)]
    if missing:
        print(f"skipped: no database {' or '.join(missing)}; build them as the docstring says")
        return None
    engines = {}
    for name in (args.small, args.large):
        match_db.DATABASE = name
        engines[name] = make_engine(match_db.bench_url(match_db.DEFAULT_SERVER))
    generator = match_db.restricted_generator(args.seed, args.districts)
    pool = match_db.RETURNING_POOL
    keep = {n * pool // (args.queries // 2 + 1) for n in range(args.queries // 2 + 1)}
    registry = match_db.Registry(
        generator, match_db.district_map(engines[args.small]), keep, random.Random(args.seed * 7919)
    )
    for _ in registry.households(pool):  # the families that come back, as match_db makes them
        pass
    chosen, warm_up = match_db.queries(registry, args.queries, args.seed)
    probes = {name: match_db.Probe(engine) for name, engine in engines.items()}
    for query in warm_up:
        for name, engine in engines.items():
            match_db.match_one(engine, probes[name], query)
    return engines, probes, chosen


def in_turn(names: list[str], number: int) -> list[str]:
    """Both registries for the `number`th household, neither always first."""
    return names if number % 2 == 0 else names[::-1]


def main() -> None:
    args = arguments(__doc__.split("\n\n")[0])
    prepared = prepare(args)
    if prepared is None:
        return
    engines, probes, chosen = prepared
    gc.collect()
    outcomes: dict[str, list[tuple[float, float, bool]]] = {name: [] for name in engines}
    for number, query in enumerate(chosen):
        for name in in_turn(list(engines), number):
            outcome = match_db.match_one(engines[name], probes[name], query)
            outcomes[name].append(
                (outcome.seconds, outcome.timings.merge_seconds, query.truth is None)
            )
    small, large = medians(outcomes[args.small]), medians(outcomes[args.large])
    merged = [sum(1 for _s, merge, _n in outcomes[name] if merge > 0) for name in engines]
    print(f"medians, ms ({len(chosen)} households; merged: {merged[0]} / {merged[1]})")
    print(f"{'':>16}  " + "  ".join(f"{figure:>15}" for figure in FIGURES))
    for name, figures in ((args.small, small), (args.large, large)):
        print(f"{name:>16}  " + "  ".join(f"{value:15.2f}" for value in figures))
    print(
        f"{'growth':>16}  "
        + "  ".join(f"{'×' + format(b / a, '.2f'):>15}" for a, b in zip(small, large, strict=True))
    )


if __name__ == "__main__":
    main()
