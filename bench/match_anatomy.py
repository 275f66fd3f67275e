"""Where incremental matching spends its time, and which candidates it spends it on: the
two tables behind docs/benchmarks.md's "Fifth session" figures, on the databases that
`bench/match_growth.py` reuses (built as its docstring says).

    .venv/bin/python bench/match_anatomy.py [--small bench_match_10k] [--large bench_match]
                                            [--new-families 300] [--queries 1000]

1. Phases: the first `--new-families` new families matched against both registries in
   turn, household by household, each phase timed around its function in
   `server.registry.linking` (the household's own record, filing its keys, the model,
   the candidate query, the first pass without members, the candidates' records); what is
   left of `index_and_match` is scoring and the match-candidate rows. Means in ms.
2. Candidates: every candidate of the `--queries` households in the large registry, by
   the weight of the keys it shares with the new household (`matching.key_weight`) and
   the band it ended in, the returning family's own earlier record apart from the others;
   then the kinds of keys shared at the floor (a name pair `n`, the same within the
   village `n|v`, ...), and how far the floor candidates' GPS fixes are from the new
   household's.

Only measures: each household is matched in a transaction that is rolled back.
"""

from __future__ import annotations

import collections
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import match_db  # noqa: E402
import match_growth  # noqa: E402
from sqlalchemy import text  # noqa: E402

from server.registry import linking, matching  # noqa: E402

PHASES = {
    "_record": "own record",
    "index": "keys filed",
    "model_for": "model",
    "candidates": "candidate query",
    "_worth_comparing": "first pass",
    "_records": "candidates' records",
}


class Phases:
    """Times the `PHASES` functions of `linking` while `current` is set."""

    def __init__(self) -> None:
        self.current: collections.Counter[str] | None = None
        for name, label in PHASES.items():
            setattr(linking, name, self._timed(getattr(linking, name), label))

    def _timed(self, function: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                if self.current is not None:
                    self.current[label] += time.perf_counter() - began

        return timed


def key_kind(key: str) -> str:
    """The kind of a blocking key, as `matching.blocking_keys` lists them."""
    for prefix, kind in (("nid:", "nid"), ("ph:", "ph"), ("dob:", "dob"), ("n:", "n-any")):
        if key.startswith(prefix):
            return kind
    if "|yob:" in key:
        return "yob"
    return "n|v" if "|v:" in key else "n"


DISTANCES = (50, 100, 200, 500)


def distance_band(
    a: tuple[float | None, float | None], b: tuple[float | None, float | None]
) -> str:
    if a[0] is None or a[1] is None or b[0] is None or b[1] is None:
        return "a fix missing"
    metres = matching.haversine_m(a[0], a[1], b[0], b[1])
    return next((f"<= {limit} m" for limit in DISTANCES if metres <= limit), "> 500 m")


class SharedKeys:
    """After `linking.candidates`, the keys each household candidate shares with the
    record matched, read back from `registry_match_key`, and how far apart their GPS
    fixes are."""

    def __init__(self) -> None:
        self.shared: dict[Any, list[str]] = {}
        self.apart: dict[Any, str] = {}
        found_by = linking.candidates

        def candidates(session: Any, entity: Any, keys: set[str]) -> list[Any]:
            found = found_by(session, entity, keys)
            self.shared = {candidate.id: [] for candidate in found}
            here = linking._gps(entity.properties)
            self.apart = {c.id: distance_band(here, linking._gps(c.properties)) for c in found}
            if entity.list_name == linking.HOUSEHOLDS and found:
                for entity_id, key in session.execute(
                    text(
                        "SELECT entity_id, key FROM registry_match_key WHERE list_name = :list"
                        " AND key = ANY(:keys) AND entity_id = ANY(:ids)"
                    ),
                    {"list": entity.list_name, "keys": sorted(keys), "ids": list(self.shared)},
                ):
                    self.shared[entity_id].append(key)
            return found

        linking.candidates = candidates


def phases(engines: dict[str, Any], probes: dict[str, Any], households: list[Any]) -> None:
    timer = Phases()
    totals: dict[str, collections.defaultdict[str, list[float]]] = {
        name: collections.defaultdict(list) for name in engines
    }
    for number, query in enumerate(households):
        for name in match_growth.in_turn(list(engines), number):
            timer.current = collections.Counter()
            outcome = match_db.match_one(engines[name], probes[name], query)
            spent, timer.current = timer.current, None
            spent["scores, pairs"] = outcome.seconds - sum(spent.values())
            spent["total"] = outcome.seconds
            for label in [*PHASES.values(), "scores, pairs", "total"]:
                totals[name][label].append(spent[label] * 1000)
            totals[name]["candidates"].append(float(outcome.timings.candidates))
    labels = list(totals[next(iter(engines))])
    print(f"1. phases, {len(households)} new families, means (ms; candidates: a count)")
    print(f"{'':>16}" + "".join(f"{label[:19]:>20}" for label in labels))
    for name, spent in totals.items():
        print(f"{name:>16}" + "".join(f"{statistics.mean(spent[label]):20.2f}" for label in labels))


def candidates(engine: Any, probe: Any, queries: list[Any]) -> None:
    shared_keys = SharedKeys()
    by_weight: collections.Counter[tuple[str, str, int]] = collections.Counter()
    at_floor: collections.Counter[tuple[str, str]] = collections.Counter()
    apart: collections.Counter[tuple[str, str]] = collections.Counter()
    missed = 0
    for query in queries:
        outcome = match_db.match_one(engine, probe, query)
        bands = dict(outcome.pairs)
        if query.truth is not None and query.truth not in shared_keys.shared:
            missed += 1
        for candidate_id, keys in shared_keys.shared.items():
            whose = "own record" if candidate_id == query.truth else "another household"
            band = bands.get(candidate_id, "new")
            weight = sum(matching.key_weight(key) for key in keys)
            by_weight[(whose, band, min(weight, 6))] += 1
            if weight == linking.HOUSEHOLD_MIN_SHARED:
                at_floor[(whose, "+".join(sorted(key_kind(key) for key in keys)))] += 1
                apart[(whose, shared_keys.apart[candidate_id])] += 1
    total = sum(by_weight.values())
    print(f"\n2. candidates of {len(queries)} households ({total} in all; the returning")
    print(f"   family's own record not among them for {missed}), by shared weight")
    print(f"{'':>28}" + "".join(f"{w if w < 6 else '>=6':>8}" for w in range(2, 7)) + "     all")
    for whose in ("own record", "another household"):
        for band in ("link", "review", "new"):
            row = [by_weight[(whose, band, weight)] for weight in range(2, 7)]
            print(f"{whose + ', ' + band:>28}" + "".join(f"{n:8}" for n in row) + f"{sum(row):8}")
    print(f"   at the floor ({linking.HOUSEHOLD_MIN_SHARED}), the kinds of keys shared:")
    for (whose, kinds), count in at_floor.most_common():
        print(f"{whose:>28}  {kinds:<12}{count:8}")
    bands = [f"<= {limit} m" for limit in DISTANCES] + ["> 500 m", "a fix missing"]
    print("   at the floor, how far the GPS fixes are apart:")
    print(f"{'':>28}" + "".join(f"{band:>15}" for band in bands))
    for whose in ("own record", "another household"):
        print(f"{whose:>28}" + "".join(f"{apart[(whose, band)]:15}" for band in bands))


def main() -> None:
    args = match_growth.arguments(__doc__.split("\n\n")[0], new_families=300)
    prepared = match_growth.prepare(args)
    if prepared is None:
        return
    engines, probes, chosen = prepared
    new_families = [query for query in chosen if query.truth is None][: args.new_families]
    phases(engines, probes, new_families)
    candidates(engines[args.large], probes[args.large], chosen)


if __name__ == "__main__":
    main()
