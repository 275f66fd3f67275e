"""Review queue benchmark: 100,000 submissions on PostgreSQL, then the supervisor's queue
page, its deep pages, filters, the bulk-approval count and the dashboard, timed through
`server.review.service` exactly as the pages call it; and EXPLAIN ANALYZE of the main
queue query.

    .venv/bin/python bench/review_queue.py [--submissions 100000] [--runs 25]
                                           [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

It drops and creates the database `bench_review` on --database-url's server (never the
database named in the URL), migrates it with Alembic, uploads the household form, and
inserts the submissions directly (the queue never reads their XML): 20 districts of
uneven size, 10 enumerators each, 180 days of arrivals, review states in field-like
proportions, and a ~1.5 kB typed `data` document per row so rows have their real width.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert, make_url, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from server.accounts.models import District, Region, User  # noqa: E402
from server.blobs import blob_store  # noqa: E402
from server.catalog import service as catalog  # noqa: E402
from server.cli import upgrade_database  # noqa: E402
from server.db import make_engine  # noqa: E402
from server.intake.models import Submission  # noqa: E402
from server.review import service  # noqa: E402
from server.review.service import QueueFilter  # noqa: E402
from tests.support.xlsforms import household_registration_xlsx, villages_csv  # noqa: E402

DATABASE = "bench_review"
STATES = [("approved", 60), ("received", 25), ("has_issues", 8), ("edited", 2), ("rejected", 5)]


def fresh_database(server_url: str) -> str:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    return make_url(server_url).set(database=DATABASE).render_as_string(hide_password=False)


def household_data(rng: random.Random, n: int) -> dict[str, Any]:
    members = [
        {
            "full_name": f"Member {n}-{m} Cali Xasan",
            "sex": rng.choice(["female", "male"]),
            "date_of_birth": f"{rng.randint(1940, 2024)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
            "relationship": "head" if m == 0 else "child",
            "disability": "no",
            "difficulties": None,
        }
        for m in range(rng.randint(1, 7))
    ]
    return {
        "start": "2026-05-01T09:14:03.120+03:00",
        "end": "2026-05-01T09:31:47.884+03:00",
        "location": {
            "region": "banadir",
            "district": "hodan",
            "village": "taleex",
            "gps": {"latitude": 2.04, "longitude": 45.31, "altitude": 12.0, "accuracy": 4.5},
            "dwelling_photo": "dwelling.jpg",
        },
        "head": {
            "head_first_name": "Faadumo",
            "head_father_name": "Cali",
            "head_grandfather_name": "Xasan",
            "head_name": f"Faadumo Cali Xasan {n}",
            "national_id": f"{100000000 + n}",
            "phone": f"0615{n:06d}",
        },
        "hh_size": len(members),
        "monthly_income_usd": 120.5,
        "member": members,
        "meta": {"instanceID": f"uuid:{uuid.uuid4()}", "instanceName": f"HH {n}"},
    }


def fill(url: str, submissions: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    engine = make_engine(url)
    with Session(engine) as session:
        region = Region(code="banadir", name="Banadir")
        districts = [
            District(code=f"d{n:02d}", name=f"District {n:02d}", region=region) for n in range(20)
        ]
        session.add_all(districts)
        session.flush()
        people = {
            d.id: [
                User(
                    username=f"enum{d.id}-{k}",
                    display_name=f"Enumerator {d.id}-{k}",
                    password_hash="x",
                    role="enumerator",
                    districts=[d],
                )
                for k in range(10)
            ]
            for d in districts
        }
        supervisors = {
            "one district": User(
                username="sup.one",
                display_name="One",
                password_hash="x",
                role="supervisor",
                districts=[districts[0]],
            ),
            "three districts": User(
                username="sup.three",
                display_name="Three",
                password_hash="x",
                role="supervisor",
                districts=districts[3:6],
            ),
            "administrator": User(
                username="admin", display_name="Admin", password_hash="x", role="admin"
            ),
        }
        session.add_all([u for group in people.values() for u in group])
        session.add_all(supervisors.values())
        with tempfile.TemporaryDirectory() as blobs:
            version = catalog.upload_form(
                session,
                None,
                data=household_registration_xlsx(),
                filename="household.xlsx",
                store=blob_store(Path(blobs)),
                key_encryption_key="bench-key-encryption-key-0123456789",
                max_bytes=10 * 1024 * 1024,
                district_ids=[d.id for d in districts],
                attachments=[("villages.csv", villages_csv())],
            ).version
        session.commit()
        weights = [1 + (n % 5) * 3 for n in range(20)]  # uneven districts
        state_names = [name for name, _ in STATES]
        state_weights = [weight for _, weight in STATES]
        now = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        batch: list[dict[str, Any]] = []
        for n in range(submissions):
            district = rng.choices(districts, weights)[0]
            received = now - dt.timedelta(seconds=rng.randint(0, 180 * 86400))
            state = rng.choices(state_names, state_weights)[0]
            batch.append(
                {
                    "id": uuid.uuid4(),
                    "form_pk": version.form_pk,
                    "form_version_id": version.id,
                    "instance_id": f"uuid:{uuid.uuid4()}",
                    "instance_name": f"HH {n}",
                    "current": True,
                    "submitter_id": rng.choice(people[district.id]).id,
                    "district_id": district.id,
                    "received_at": received,
                    "xml_sha256": "0" * 64,
                    "xml_size": 2048,
                    "encrypted": True,
                    "complete": True,
                    "processing_state": "processed" if rng.random() > 0.01 else "failed",
                    "attempts": 1,
                    "next_attempt_at": received,
                    "processed_at": received,
                    "data": household_data(rng, n),
                    "parse_problems": [],
                    "review_state": state,
                }
            )
            if len(batch) == 5000:
                session.execute(insert(Submission), batch)
                session.commit()
                batch = []
        if batch:
            session.execute(insert(Submission), batch)
            session.commit()
        fill_seconds = time.perf_counter() - started
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return {"fill_seconds": fill_seconds, "supervisors": list(supervisors)}


def timed(run: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    run()  # warm the caches once; field laptops repeat the same pages all day
    samples = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = run()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], result


def explain(session: Session, user: User, filters: QueueFilter) -> str:
    statement = (
        service._filtered(session, user, filters)
        .order_by(Submission.received_at.desc(), Submission.id.desc())
        .limit(filters.per_page + 1)
    )
    sql = statement.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
    rows = session.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")).scalars()
    return "\n".join(f"    {line}" for line in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submissions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "DIIWAAN_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    options = parser.parse_args()
    if not options.database_url.startswith("postgresql"):
        sys.exit("this benchmark runs on PostgreSQL (--database-url postgresql+psycopg://…)")
    url = fresh_database(options.database_url)
    upgrade_database(url)
    print(f"filling {options.submissions:,} submissions into {DATABASE} …", flush=True)
    filled = fill(url, options.submissions, options.seed)
    print(f"  inserted in {filled['fill_seconds']:.1f} s (then VACUUM ANALYZE)\n")
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            users = {
                label: session.scalars(select(User).where(User.username == name)).one()
                for label, name in (
                    ("one district", "sup.one"),
                    ("three districts", "sup.three"),
                    ("administrator", "admin"),
                )
            }
            some_enumerator = session.scalars(
                select(User).where(User.username.like("enum%-3"))
            ).first()
            assert some_enumerator is not None
            print(f"{'query':58} {'who':16} {'median ms':>9} {'p95 ms':>8}  result")
            for who, user in users.items():
                first = service.queue(session, user, QueueFilter())
                deep_cursor = first.next_cursor
                for _ in range(40):  # 40 pages in: a cursor ~2,000 rows deep
                    page = service.queue(session, user, QueueFilter(after=deep_cursor))
                    deep_cursor = page.next_cursor or deep_cursor
                cases: list[tuple[str, Callable[[], Any]]] = [
                    (
                        "queue: waiting, newest first, page 1 (+ total)",
                        lambda user=user: service.queue(session, user, QueueFilter()),
                    ),
                    (
                        "queue: waiting, 41st page by cursor",
                        lambda user=user, c=deep_cursor: service.queue(
                            session, user, QueueFilter(after=c)
                        ),
                    ),
                    (
                        "queue: all states, oldest first",
                        lambda user=user: service.queue(
                            session, user, QueueFilter(state="all", order="oldest")
                        ),
                    ),
                    (
                        "queue: one enumerator, all states",
                        lambda user=user: service.queue(
                            session,
                            user,
                            QueueFilter(state="all", submitter_id=some_enumerator.id),
                        ),
                    ),
                    (
                        "queue: form + last 7 days, waiting",
                        lambda user=user: service.queue(
                            session,
                            user,
                            QueueFilter(
                                form_id="household_registration",
                                since=dt.date.today() - dt.timedelta(days=7),
                            ),
                        ),
                    ),
                    (
                        "bulk approval count (waiting, processed)",
                        lambda user=user: service.count_approvable(session, user, QueueFilter()),
                    ),
                    (
                        "dashboard (all counts + 30-day chart)",
                        lambda user=user: service.dashboard(session, user),
                    ),
                ]
                for label, run in cases:
                    median, p95, result = timed(run, options.runs)
                    shown = (
                        f"{len(result.rows)} rows of {result.total:,}"
                        if isinstance(result, service.QueuePage)
                        else (
                            f"{result.total:,} in view"
                            if isinstance(result, service.Dashboard)
                            else f"{result:,}"
                        )
                    )
                    print(f"{label:58} {who:16} {median:9.1f} {p95:8.1f}  {shown}")
                print()
            print("EXPLAIN ANALYZE, main queue query (supervisor of three districts, page 1):")
            print(explain(session, users["three districts"], QueueFilter()))
            print("\nEXPLAIN ANALYZE, main queue query (administrator, page 1):")
            print(explain(session, users["administrator"], QueueFilter()))
    finally:
        engine.dispose()
        if not options.keep:
            admin = create_engine(options.database_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
