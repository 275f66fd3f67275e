"""Ingest benchmark: encrypted household submissions posted to gunicorn on PostgreSQL,
then decrypted, parsed and handed to the registry by `diiwaan worker --drain`.

    .venv/bin/python bench/ingest.py [--submissions 5000] [--servers gthread:2x8 sync:4]
                                     [--clients 4] [--client-threads 4] [--photo-kb 8]
                                     [--drain-workers 1 2] [--worker-batch 50]

What it does, all on 127.0.0.1 and bounded (it stops by itself):
1. drops and creates the PostgreSQL database `bench_ingest` (next to --database-url's
   server), runs `diiwaan init`, publishes the household registration form (managed key)
   and creates enumerators, each with a device token: QR-provisioned ODK Collect posts to
   /key/<token>/submission, so no request pays for a password hash;
2. for each --servers entry (`sync:<workers>` or `gthread:<workers>x<threads>`) starts
   gunicorn, has --clients processes (--client-threads keep-alive connections each)
   encrypt --submissions households with the server's public key as Collect does, then
   post them all at once, and prints acknowledged submissions/s with p50/p99 latency;
   (`floor-gthread:2x8` serves `bench/ingest_floor.py` instead: the least a Python
   intake can do with the same durability, the ceiling for Diiwaan's on this machine);
3. after each round drains the queue with 1, then 2, `diiwaan worker --drain` processes
   in parallel, and prints processed/s (from the submissions' processed_at, so process
   start-up is not counted; the wall time including it is printed too).

The clients run on the same machine as gunicorn and PostgreSQL and take CPU from them;
their CPU seconds are printed so the figures can be read honestly. Results and the
command go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, make_url, text  # noqa: E402

from tests.support.submissions import encode_multipart, encrypted_household  # noqa: E402
from tests.support.xlsforms import MemberAnswers  # noqa: E402

BIN = Path(sys.executable).parent
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_ingest"
BENCH_DATABASE = "bench_ingest"

FIRST_NAMES = {
    "female": [
        "Faadumo",
        "Hodan",
        "Xaliimo",
        "Ayaan",
        "Caasha",
        "Sahra",
        "Maryan",
        "Hibo",
        "Nasra",
        "Ubax",
        "Deeqa",
        "Ifrah",
        "Khadra",
        "Naciimo",
        "Sagal",
        "Ruqiya",
        "Hawo",
        "Shukri",
        "Zamzam",
        "Leyla",
    ],
    "male": [
        "Maxamed",
        "Axmed",
        "Cali",
        "Cabdi",
        "Xasan",
        "Xuseen",
        "Cumar",
        "Cabdullaahi",
        "Ibraahim",
        "Yuusuf",
        "Cismaan",
        "Aadan",
        "Nuur",
        "Faarax",
        "Jaamac",
        "Bashiir",
        "Guuleed",
        "Mahad",
        "Muuse",
        "Warsame",
    ],
}
FATHER_NAMES = [*FIRST_NAMES["male"], "Xirsi", "Saciid", "Dahir", "Salaad", "Idiris", "Khaalid"]


@dataclass(frozen=True)
class Job:
    token: str
    seed: int


def household_answers(seed: int) -> dict[str, Any]:
    """A plausible, varied household (names, IDs, phones, members) for one seed."""
    rng = random.Random(seed)
    head_sex = rng.choice(["female", "male"])
    head = rng.choice(FIRST_NAMES[head_sex])
    father, grandfather = rng.choice(FATHER_NAMES), rng.choice(FATHER_NAMES)
    spouse_sex = "male" if head_sex == "female" else "female"
    members = [
        MemberAnswers(f"{head} {father} {grandfather}", head_sex, "1985-04-12", "head", "no"),
        MemberAnswers(
            f"{rng.choice(FIRST_NAMES[spouse_sex])} {rng.choice(FATHER_NAMES)}",
            spouse_sex,
            f"19{rng.randint(70, 99)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "spouse",
            "no",
        ),
    ]
    for _child in range(rng.randint(0, 5)):
        sex = rng.choice(["female", "male"])
        members.append(
            MemberAnswers(
                f"{rng.choice(FIRST_NAMES[sex])} {head if head_sex == 'male' else father}",
                sex,
                f"20{rng.randint(5, 24):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "child",
                rng.choice(["no", "no", "no", "yes"]),
            )
        )
    return {
        "head_first_name": head,
        "head_father_name": father,
        "head_grandfather_name": grandfather,
        "national_id": str(rng.randint(10**8, 10**9 - 1)),
        "phone": f"061{rng.randint(0, 9_999_999):07d}",
        "members": members,
        "gps": (2.0 + rng.random() / 10, 45.3 + rng.random() / 10, 12.0, 4.5),
        "monthly_income_usd": round(rng.uniform(0, 400), 2),
    }


# --------------------------------------------------------------------------- set-up


def recreate_database(url: str) -> str:
    """Drop and create `bench_ingest` on the server of `url`; its URL."""
    engine = create_engine(
        make_url(url).set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{BENCH_DATABASE}"'))
        version = connection.execute(text("SHOW server_version")).scalar()
    engine.dispose()
    print(f"PostgreSQL {version}: database {BENCH_DATABASE} created afresh")
    return make_url(url).set(database=BENCH_DATABASE).render_as_string(hide_password=False)


def cli(environment: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "diiwaan"), *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"diiwaan {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def seed(enumerators: int) -> tuple[list[str], str]:
    """Publish the household form and make enumerators with device tokens, in-process
    through the same services the CLI and the admin pages use."""
    from server.accounts import service as accounts
    from server.accounts.models import District, Region
    from server.app import create_app
    from server.blobs import blob_store
    from server.catalog import service as catalog
    from server.db import db
    from tests.support.xlsforms import household_registration_xlsx, villages_csv

    app = create_app()
    settings = app.config["DIIWAAN"]
    accounts.configure_password_hashing(True)  # set-up only; devices use tokens
    with app.app_context(), db.job_session() as session:
        region = Region(code="banadir", name="Banadir")
        hodan = District(code="hodan", name="Hodan", region=region)
        session.add_all([region, hodan])
        session.flush()
        result = catalog.upload_form(
            session,
            None,
            data=household_registration_xlsx(),
            filename="household_registration.xlsx",
            store=blob_store(settings.data_dir),
            key_encryption_key=settings.key_encryption_key,
            max_bytes=settings.max_form_bytes,
            district_ids=[hodan.id],
            attachments=[("villages.csv", villages_csv())],
        )
        assert result.version.state == "published" and result.version.key is not None
        public_key = result.version.key.public_key
        tokens = []
        for number in range(enumerators):
            user = accounts.create_user(
                session,
                None,
                username=f"enumerator{number:03d}",
                display_name=f"Enumerator {number}",
                password=f"bench passphrase {number}",
                role="enumerator",
                district_ids=[hodan.id],
            )
            _token, secret = accounts.issue_token(session, None, user, kind="device")
            tokens.append(secret)
    assert db.engine is not None
    db.engine.dispose()
    return tokens, public_key


# ------------------------------------------------------------------------ processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children, from /proc."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    with_children = Path(f"/proc/{pid}/task/{pid}/children")
    if with_children.exists():
        pids += [int(child) for child in with_children.read_text().split()]
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def postgres_cpu_seconds() -> float:
    """CPU of the PostgreSQL backends serving the benchmark's database (not other users'
    databases on the same server, nor the shared WAL writer and checkpointer)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for process in Path("/proc").glob("[0-9]*"):
        try:
            if f" {BENCH_DATABASE} ".encode() not in (process / "cmdline").read_bytes():
                continue
            fields = (process / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def gunicorn(spec: str, environment: dict[str, str], token: str) -> Iterator[tuple[int, int]]:
    """Serve with gunicorn as `spec` says (sync:4, gthread:4x4; floor-gthread:2x8 serves
    `bench/ingest_floor.py` instead of Diiwaan); yields (port, pid)."""
    floor, kind, size = _server_spec(spec)
    workers, _, threads = size.partition("x")
    command = [str(BIN / "gunicorn"), "--workers", workers, "--worker-class", kind]
    if kind == "gthread":
        command += ["--threads", threads or "4"]
    port = free_port()
    command += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    if floor:
        command += ["--pythonpath", str(ROOT / "bench"), "ingest_floor:app"]
    else:
        command.append("server.app:create_app()")
    log = tempfile.TemporaryFile()  # noqa: SIM115 (read back after the server stops)
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"gunicorn did not start:\n{log.read().decode()}")
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("HEAD", f"/key/{token}/submission")
                if connection.getresponse().status == 204:
                    break
            except OSError:
                time.sleep(0.2)
            finally:
                connection.close()
        yield port, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.seek(0)
        errors = [line for line in log.read().decode().splitlines() if "ERROR" in line]
        log.close()
        if errors:
            print(f"  gunicorn logged {len(errors)} error line(s), e.g. {errors[0]}")


def _server_spec(spec: str) -> tuple[bool, str, str]:
    """(floor?, worker class, size) of `floor-gthread:2x8`, `sync:4`, ..."""
    floor = spec.startswith("floor-")
    kind, _, size = spec.removeprefix("floor-").partition(":")
    return floor, kind, size


def prepare_floor(environment: dict[str, str], database_url: str, data_dir: Path) -> None:
    """Fresh tables and a scratch directory for `bench/ingest_floor.py`."""
    from ingest_floor import TABLES

    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS floor_file, floor_submission"))
        for statement in TABLES:
            connection.execute(text(statement))
    engine.dispose()
    shutil.rmtree(data_dir / "floor", ignore_errors=True)
    environment.update(
        FLOOR_DIR=str(data_dir / "floor"),
        FLOOR_DB=make_url(database_url).set(drivername="postgresql").render_as_string(False),
    )


# -------------------------------------------------------------------------- clients


def client_process(
    port: int,
    jobs: list[Job],
    public_key: str,
    photo: bytes,
    threads: int,
    ready: Any,
    results: Any,
) -> None:
    """Encrypt this client's share, wait for the others, then post it all."""
    bodies = []
    for job in jobs:
        submission = encrypted_household(public_key, photo=photo, **household_answers(job.seed))
        body, content_type = encode_multipart(submission.manifest, submission.attachments)
        bodies.append((f"/key/{job.token}/submission", body, content_type))
    ready.wait()
    next_body = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    def connection_loop() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine: list[float] = []
        seen: Counter[int] = Counter()
        while True:
            with lock:
                index = next(next_body)
            if index >= len(bodies):
                break
            path, body, content_type = bodies[index]
            started = time.perf_counter()
            connection.request(
                "POST",
                path,
                body=body,
                headers={"Content-Type": content_type, "X-OpenRosa-Version": "1.0"},
            )
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            seen[response.status] += 1
        connection.close()
        with lock:
            latencies.extend(mine)
            statuses.update(seen)

    cpu = time.process_time()
    started = time.monotonic()
    workers = [threading.Thread(target=connection_loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(
        {
            "latencies": latencies,
            "statuses": dict(statuses),
            "start": started,
            "end": time.monotonic(),
            "cpu": time.process_time() - cpu,
        }
    )


@dataclass
class AckResult:
    spec: str
    posted: int
    statuses: Counter[int]
    seconds: float
    p50_ms: float
    p99_ms: float
    client_cpu: float
    server_cpu: float
    postgres_cpu: float

    @property
    def per_second(self) -> float:
        return self.statuses[201] / self.seconds


def post_round(
    spec: str,
    environment: dict[str, str],
    tokens: list[str],
    public_key: str,
    args: argparse.Namespace,
    first_seed: int,
) -> AckResult:
    jobs = [Job(tokens[n % len(tokens)], first_seed + n) for n in range(args.submissions)]
    photo = random.Random(first_seed).randbytes(args.photo_kb * 1024)
    context = multiprocessing.get_context("spawn")
    with gunicorn(spec, environment, tokens[0]) as (port, pid):
        ready = context.Barrier(args.clients + 1)
        results = context.Queue()
        clients = [
            context.Process(
                target=client_process,
                args=(
                    port,
                    jobs[index :: args.clients],
                    public_key,
                    photo,
                    args.client_threads,
                    ready,
                    results,
                ),
            )
            for index in range(args.clients)
        ]
        for client in clients:
            client.start()
        ready.wait(timeout=600)  # every client has encrypted its share
        server_cpu, postgres_cpu = cpu_seconds(pid), postgres_cpu_seconds()
        reports = [results.get(timeout=1800) for _ in clients]
        server_cpu, postgres_cpu = (
            cpu_seconds(pid) - server_cpu,
            postgres_cpu_seconds() - postgres_cpu,
        )
        for client in clients:
            client.join(timeout=60)
    latencies = sorted(latency for report in reports for latency in report["latencies"])
    statuses: Counter[int] = Counter()
    for report in reports:
        statuses.update({int(k): v for k, v in report["statuses"].items()})
    seconds = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    return AckResult(
        spec=spec,
        posted=len(jobs),
        statuses=statuses,
        seconds=seconds,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        client_cpu=sum(r["cpu"] for r in reports),
        server_cpu=server_cpu,
        postgres_cpu=postgres_cpu,
    )


# -------------------------------------------------------------------------- workers


@dataclass
class DrainResult:
    workers: int
    processed: int
    failed: int
    wall_seconds: float
    steady_seconds: float

    @property
    def per_second(self) -> float:
        return self.processed / self.steady_seconds if self.steady_seconds else 0.0


def drain(environment: dict[str, str], workers: int, database_url: str, batch: int) -> DrainResult:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        since = connection.execute(text("SELECT now()")).scalar()
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            [str(BIN / "diiwaan"), "worker", "--drain", "--batch", str(batch)],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(workers)
    ]
    outputs = [process.communicate(timeout=3600)[0] for process in processes]
    wall = time.monotonic() - started
    for process, output in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"diiwaan worker --drain failed:\n{output}")
    with engine.connect() as connection:
        processed, first, last = connection.execute(
            text(
                "SELECT count(*), min(processed_at), max(processed_at) FROM submission"
                " WHERE processing_state = 'processed' AND processed_at >= :since"
            ),
            {"since": since},
        ).one()
        failed = connection.execute(
            text("SELECT count(*) FROM submission WHERE processing_state = 'failed'")
        ).scalar()
        waiting = connection.execute(
            text("SELECT count(*) FROM submission WHERE processing_state <> 'processed'")
        ).scalar()
    engine.dispose()
    if waiting and waiting != failed:
        print(f"  note: {waiting} submission(s) not processed after the drain")
    steady = (last - first).total_seconds() if processed > 1 else 0.0
    # The first item's own processing time is not inside [first, last]; add one mean item.
    steady = steady * processed / (processed - 1) if processed > 1 else wall
    return DrainResult(workers, processed, int(failed or 0), wall, steady)


# ----------------------------------------------------------------------------- main


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()},"
        f" load average before start: {load}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--submissions", type=int, default=5000, help="per round")
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["gthread:2x8", "sync:4"],
        help="gunicorn set-ups, one round each: sync:<workers> or gthread:<workers>x<threads>;"
        " floor-<set-up> serves bench/ingest_floor.py (the least durable intake) instead",
    )
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--client-threads", type=int, default=4, help="connections per client")
    parser.add_argument("--enumerators", type=int, default=20)
    parser.add_argument("--photo-kb", type=int, default=8, help="dwelling photo size")
    parser.add_argument(
        "--drain-workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="worker processes for the drain after each round (cycled; 0: no drain)",
    )
    parser.add_argument(
        "--worker-batch",
        type=int,
        default=50,
        help="submissions per worker transaction (diiwaan worker --batch)",
    )
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the blob directory afterwards"
    )
    args = parser.parse_args()
    if not 1 <= args.submissions <= 200_000:
        raise SystemExit("--submissions must be between 1 and 200000")
    if make_url(args.database_url).host not in ("127.0.0.1", "localhost"):
        raise SystemExit("this benchmark only talks to a PostgreSQL on 127.0.0.1")

    print(f"machine: {machine()}")
    database_url = recreate_database(args.database_url)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIIWAAN_")}
    environment.update(
        DIIWAAN_DATABASE_URL=database_url,
        DIIWAAN_DATA_DIR=str(data_dir),
        DIIWAAN_SECRET_KEY="bench-secret-key-0123456789abcdef",
        DIIWAAN_KEY_ENCRYPTION_KEY="bench-key-encryption-key-0123456789abcdef",
        DIIWAAN_ADMIN_PASSWORD="bench admin passphrase",
        PYTHONPATH=str(ROOT),
    )
    os.environ.update(environment)
    cli(environment, "init")
    tokens, public_key = seed(args.enumerators)
    print(
        f"set up: household form published (managed key), {len(tokens)} enumerators with"
        f" device tokens; data in {data_dir}"
    )
    print(
        f"clients: {args.clients} processes x {args.client_threads} keep-alive connections,"
        f" {args.submissions} encrypted submissions per round"
        f" (household XML + {args.photo_kb} KB photo, 2 .enc files each)"
    )

    acks: list[AckResult] = []
    drains: list[DrainResult] = []
    for number, spec in enumerate(args.servers):
        floor = _server_spec(spec)[0]
        if floor:
            prepare_floor(environment, database_url, data_dir)
        result = post_round(
            spec, environment, tokens, public_key, args, first_seed=number * 1_000_000
        )
        acks.append(result)
        others = {s: c for s, c in result.statuses.items() if s != 201}
        print(
            f"\n[{spec}] acknowledged {result.statuses[201]}/{result.posted} in"
            f" {result.seconds:.1f} s: {result.per_second:.0f} ack/s,"
            f" p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms"
            + (f", other statuses {others}" if others else "")
        )
        print(
            f"  CPU seconds during the round: gunicorn {result.server_cpu:.1f},"
            f" PostgreSQL {result.postgres_cpu:.1f}, clients {result.client_cpu:.1f}"
            f" (of {result.seconds * (os.cpu_count() or 1):.1f} available)"
        )
        workers = args.drain_workers[number % len(args.drain_workers)]
        if workers == 0 or floor:  # the floor stores nothing for a worker
            continue
        drained = drain(environment, workers, database_url, args.worker_batch)
        drains.append(drained)
        print(
            f"  {workers} worker(s), --batch {args.worker_batch}: processed"
            f" {drained.processed} ({drained.failed} failed)"
            f" at {drained.per_second:.0f}/s ({drained.per_second / workers:.0f}/s per"
            f" worker); wall {drained.wall_seconds:.1f} s including start-up"
        )

    best = max(
        (result for result in acks if not _server_spec(result.spec)[0]),
        key=lambda result: result.per_second,
        default=None,
    )
    if best is not None:
        print(f"\nbest gunicorn set-up here: {best.spec} ({best.per_second:.0f} ack/s)")
    if args.keep_data:
        print(f"kept {data_dir} and the database {BENCH_DATABASE}")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
