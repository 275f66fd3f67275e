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
the median time over all the households, over the new families, and with the merge time
left out, and the growth of each from the small registry to the large one. Run it twice:
the first run after PostgreSQL starts reads the large registry from disk.
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
from sqlalchemy import create_engine, text  # noqa: E402

from server.db import make_engine  # noqa: E402


def exists(database: str) -> bool:
    engine = create_engine(match_db.DEFAULT_SERVER)
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database}
        ).first()
    engine.dispose()
    return found is not None


def medians(outcomes: list[tuple[float, float, bool]]) -> tuple[float, float, float]:
    """(all, new families, merge time left out), in milliseconds."""

    def median(values: list[float]) -> float:
        return statistics.median(values) * 1000

    return (
        median([seconds for seconds, _merge, _new in outcomes]),
        median([seconds for seconds, _merge, new in outcomes if new]),
        median([seconds - merge for seconds, merge, _new in outcomes]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", default="bench_match_10k")
    parser.add_argument("--large", default="bench_match")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--districts", type=int, default=20)
    args = parser.parse_args()
    missing = [name for name in (args.small, args.large) if not exists(name)]
    if missing:
        print(f"skipped: no database {' or '.join(missing)}; build them as the docstring says")
        return
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
    gc.collect()
    outcomes: dict[str, list[tuple[float, float, bool]]] = {name: [] for name in engines}
    order = list(engines)
    for number, query in enumerate(chosen):
        for name in order if number % 2 == 0 else order[::-1]:  # neither always goes first
            outcome = match_db.match_one(engines[name], probes[name], query)
            outcomes[name].append(
                (outcome.seconds, outcome.timings.merge_seconds, query.truth is None)
            )
    small, large = medians(outcomes[args.small]), medians(outcomes[args.large])
    for name, figures in ((args.small, small), (args.large, large)):
        print(
            f"{name:>16}: median all {figures[0]:6.2f} ms, new families {figures[1]:6.2f} ms,"
            f" merge time left out {figures[2]:6.2f} ms"
        )
    print(
        f"growth: all ×{large[0] / small[0]:.2f}, new families ×{large[1] / small[1]:.2f},"
        f" merge time left out ×{large[2] / small[2]:.2f}"
    )


if __name__ == "__main__":
    main()
