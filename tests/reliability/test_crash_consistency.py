"""Crash consistency: tablets keep posting while the web server and the worker are killed
with SIGKILL at random moments, cycle after cycle; afterwards every acknowledged
submission is stored exactly once and processed exactly once, and the registry holds
each household and member exactly once, with one version per submission, whatever was
replayed.

The load: two OpenRosa tablets (encrypted households, each retried with the same bytes
until acknowledged, some replayed after their acknowledgement) and one batch-sync tablet
(sessions of three items, reopened after any failure). An acknowledgement is what the
client saw: 201/202 from /submission, `stored` for a sync item.

The faults: each cycle kills the web server (gunicorn's whole process group), the worker,
or both, after a random 0.05-0.6 s, and starts them again. DIIWAAN_CRASH_CYCLES sets the
number of cycles (default 100 on PostgreSQL, 40 on SQLite); the test takes about two
minutes. The site has a database of its own: `<name>_crash` beside DIIWAAN_DATABASE_URL's,
or a temporary SQLite file.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, make_url, select
from sqlalchemy.orm import Session

from server.accounts import service as accounts
from server.accounts.models import District, Region
from server.blobs import blob_store
from server.catalog import service as catalog
from server.cli import upgrade_database
from server.db import as_utc, make_engine, utcnow
from server.intake.models import Submission
from server.registry.models import (
    HOUSEHOLDS,
    MEMBERS,
    Entity,
    EntityVersion,
    PendingChange,
    RegistryChange,
)
from sync import crypto
from sync.pack import frame_header, pack
from tests.support.databases import drop_database, free_port, recreate_database
from tests.support.submissions import PHOTO, PHOTO_NAME, Attachment, encode_multipart
from tests.support.xlsforms import (
    HOUSEHOLD_FORM_ID,
    HOUSEHOLD_FORM_VERSION,
    MemberAnswers,
    household_instance_xml,
    household_registration_xlsx,
    villages_csv,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "tests" / "reliability" / "launcher.py"
KEY_ENCRYPTION_KEY = "crash-test-key-encryption-key-0123456789"
LEASE_SECONDS = 5  # the shortest DIIWAAN_WORKER_LEASE_SECONDS allows
FIRST_NAMES = [
    "Faadumo",
    "Xaliimo",
    "Cabdi",
    "Maxamed",
    "Hodan",
    "Nimco",
    "Axmed",
    "Sahra",
    "Ayaan",
    "Bashiir",
    "Deeqa",
    "Guuleed",
    "Idil",
    "Jaamac",
    "Khadar",
    "Layla",
]


def _cycles(postgres: bool) -> int:
    return int(os.environ.get("DIIWAAN_CRASH_CYCLES", "100" if postgres else "40"))


# ------------------------------------------------------------------- the site


@dataclass
class Site:
    database_url: str
    data_dir: Path
    engine: Engine
    device_token: str
    public_key: str
    environment: dict[str, str]
    port: int = 0


def _own_database(tmp_path: Path) -> tuple[str, str | None]:
    shared = os.environ.get("DIIWAAN_DATABASE_URL")
    if not shared:
        return f"sqlite:///{tmp_path / 'crash.db'}", None
    name = f"{make_url(shared).database}_crash"
    return recreate_database(shared, name), name


def _seed(database_url: str, data_dir: Path) -> tuple[str, str]:
    """The household form (registry changes applied on receipt), an enumerator in Hodan
    and their tablet's token; returns (token, the form's public key)."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            banadir = Region(code="banadir", name="Banadir")
            hodan = District(code="hodan", name="Hodan", region=banadir)
            session.add_all([banadir, hodan])
            session.flush()
            result = catalog.upload_form(
                session,
                None,
                data=household_registration_xlsx(),
                filename="household_registration.xlsx",
                store=blob_store(data_dir),
                key_encryption_key=KEY_ENCRYPTION_KEY,
                max_bytes=10 * 1024 * 1024,
                district_ids=[hodan.id],
                attachments=[("villages.csv", villages_csv())],
            )
            result.form.registry_mode = "receipt"
            enumerator = accounts.create_user(
                session,
                None,
                username="crash.enumerator",
                display_name="Crash",
                password="a long crash passphrase",
                role="enumerator",
                district_ids=[hodan.id],
            )
            _token, secret = accounts.issue_token(session, None, enumerator, kind="device")
            assert result.version.key is not None
            return secret, result.version.key.public_key
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp_path = tmp_path_factory.mktemp("crash")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database_url, postgres_name = _own_database(tmp_path)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIIWAAN_")}
    environment.update(
        DIIWAAN_DATABASE_URL=database_url,
        DIIWAAN_DATA_DIR=str(data_dir),
        DIIWAAN_SECRET_KEY="crash-test-secret-key-0123456789",
        DIIWAAN_KEY_ENCRYPTION_KEY=KEY_ENCRYPTION_KEY,
        DIIWAAN_PASSWORD_HASH_CHEAP="true",
        DIIWAAN_WORKER_LEASE_SECONDS=str(LEASE_SECONDS),
        DIIWAAN_ODK_VALIDATE="false",
        PYTHONPATH=str(ROOT),
    )
    engine = make_engine(database_url)
    try:
        upgrade_database(database_url)
        catalog.configure(odk_validate=False)
        token, public_key = _seed(database_url, data_dir)
        yield Site(database_url, data_dir, engine, token, public_key, environment, free_port())
    finally:
        engine.dispose()
        shared = os.environ.get("DIIWAAN_DATABASE_URL")
        if shared and postgres_name:
            drop_database(shared, postgres_name)


# --------------------------------------------------------------- the processes


class Launcher:
    """tests/reliability/launcher.py: forks gunicorn and workers on demand."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.logs = site.data_dir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, str(LAUNCHER)],
            cwd=ROOT,
            env=site.environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _start(self, command: str) -> int:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        assert answer.isdigit(), f"the launcher said {answer!r}"
        return int(answer)

    def web(self) -> int:
        return self._start(f"web {self.site.port} {self.logs / 'web.log'}")

    def worker(self) -> int:
        return self._start(f"worker {self.logs / 'worker.log'}")

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        if self.process.stdout:
            self.process.stdout.close()
        self.process.wait(timeout=30)


def kill(group: int) -> None:
    """SIGKILL to a whole process group; returns once nothing in it is left."""
    if not group:
        return  # never started
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.005)
    raise AssertionError(f"process group {group} survived SIGKILL")


def wait_until_serving(site: Site, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=2)
        try:
            connection.request("HEAD", f"/key/{site.device_token}/submission")
            if connection.getresponse().status == 204:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.02)
    log = (site.data_dir / "logs" / "web.log").read_text()[-3000:]
    raise AssertionError(f"the web server did not come up:\n{log}")


# ---------------------------------------------------------------------- load


@dataclass
class Sent:
    """What a tablet sent for one submission, and what it was told."""

    instance_id: str
    household_id: str
    member_ids: list[str]
    xml_sha256: str
    acknowledged: bool = False
    channel: str = ""


@dataclass
class Ledger:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: dict[str, Sent] = field(default_factory=dict)
    replays: int = 0
    failures: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, item: Sent) -> None:
        with self.lock:
            self.sent[item.instance_id] = item

    def acknowledge(self, instance_id: str) -> None:
        with self.lock:
            self.sent[instance_id].acknowledged = True

    def saw(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1


def _recording(target: Any) -> Any:
    """Run a tablet, keeping what went wrong for the test to report (a thread's assertion
    would otherwise vanish with it)."""

    def run(site: Site, ledger: Ledger, stop: threading.Event, seed: int) -> None:
        try:
            target(site, ledger, stop, seed)
        except BaseException as error:
            ledger.errors.append(f"{target.__name__}: {type(error).__name__}: {error}")
            stop.set()

    return run


def _household(site: Site, chance: random.Random) -> tuple[Sent, Any]:
    instance_id = f"uuid:{uuid.uuid4()}"
    household_id, member_id = str(uuid.uuid4()), str(uuid.uuid4())
    first, father = chance.sample(FIRST_NAMES, 2)
    serial = chance.randrange(10**8, 10**9)
    plain = household_instance_xml(
        instance_id=instance_id,
        household_entity_id=household_id,
        head_first_name=first,
        head_father_name=father,
        head_grandfather_name=f"X{serial}",
        national_id=str(serial),
        phone=f"061{serial % 10**7:07d}",
        gps=(chance.uniform(-1, 11), chance.uniform(41, 51), 10.0, 5.0),
        members=[
            MemberAnswers(
                f"{first} {father} X{serial}",
                "female",
                f"{chance.randrange(1940, 2005)}-0{chance.randrange(1, 9)}-1{chance.randrange(9)}",
                "head",
                "no",
                entity_id=member_id,
            )
        ],
    )
    encrypted = crypto.encrypt_submission(
        xml=plain,
        media=[(PHOTO_NAME, PHOTO)],
        instance_id=instance_id,
        form_id=HOUSEHOLD_FORM_ID,
        form_version=HOUSEHOLD_FORM_VERSION,
        public_key=crypto.load_public_key(site.public_key),
    )
    sent = Sent(
        instance_id,
        household_id,
        [member_id],
        hashlib.sha256(encrypted.manifest_xml).hexdigest(),
    )
    return sent, encrypted


def _request(
    site: Site, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=15)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    except http.client.HTTPException as error:
        # A server killed between its headers and its body (IncompleteRead): the answer
        # is lost like any dropped connection, and the tablet sends again.
        raise ConnectionError(f"{type(error).__name__}: {error}") from error
    finally:
        connection.close()


def openrosa_tablet(site: Site, ledger: Ledger, stop: threading.Event, seed: int) -> None:
    chance = random.Random(seed)
    acknowledged: list[tuple[bytes, str]] = []
    while not stop.is_set():
        stop.wait(chance.uniform(0.2, 0.6))  # the next household's interview
        sent, encrypted = _household(site, chance)
        sent.channel = "openrosa"
        ledger.add(sent)
        body, content_type = encode_multipart(
            encrypted.manifest_xml,
            [Attachment(name, content) for name, content in encrypted.files],
        )
        headers = {"Content-Type": content_type, "X-OpenRosa-Version": "1.0"}
        while not stop.is_set():  # the same bytes until acknowledged, as Collect does
            try:
                status, _ = _request(
                    site, "POST", f"/key/{site.device_token}/submission", body, headers
                )
            except OSError:
                ledger.failures += 1
                time.sleep(0.05)
                continue
            ledger.saw(status)
            if status in (201, 202):
                ledger.acknowledge(sent.instance_id)
                acknowledged.append((body, content_type))
                break
            assert status >= 500 or status == 429, f"refused: {status}"
            time.sleep(0.05)
        # Now and then a tablet that lost the answer sends an old one again.
        if acknowledged and chance.random() < 0.3:
            old_body, old_type = chance.choice(acknowledged)
            try:
                status, _ = _request(
                    site,
                    "POST",
                    f"/key/{site.device_token}/submission",
                    old_body,
                    {"Content-Type": old_type, "X-OpenRosa-Version": "1.0"},
                )
                ledger.saw(status)
                if status in (201, 202):
                    assert status == 202, "a replay was stored as new"
                    ledger.replays += 1
            except OSError:
                ledger.failures += 1


def sync_tablet(site: Site, ledger: Ledger, stop: threading.Event, seed: int) -> None:
    chance = random.Random(seed)
    device_id = str(uuid.uuid4())
    auth = {"Authorization": f"Bearer {site.device_token}"}
    enrolled = False
    outbox: list[tuple[Sent, bytes]] = []
    while not stop.is_set():
        try:
            if not enrolled:
                status, _ = _request(
                    site,
                    "PUT",
                    f"/api/v1/sync/devices/{device_id}",
                    json.dumps({"name": "crash tablet"}).encode(),
                    {**auth, "Content-Type": "application/json"},
                )
                enrolled = status in (200, 201)
                continue
            if not outbox:
                stop.wait(chance.uniform(0.5, 1.5))
            while len(outbox) < 3:
                sent, encrypted = _household(site, chance)
                sent.channel = "sync"
                ledger.add(sent)
                outbox.append((sent, pack(encrypted.manifest_xml, encrypted.files)))
            listings = [
                {
                    "instance_id": sent.instance_id,
                    "form_id": HOUSEHOLD_FORM_ID,
                    "version": HOUSEHOLD_FORM_VERSION,
                    "sha256": hashlib.sha256(body).hexdigest(),
                    "size": len(body),
                }
                for sent, body in outbox
            ]
            status, answer = _request(
                site,
                "POST",
                f"/api/v1/sync/devices/{device_id}/sessions",
                json.dumps({"items": listings}).encode(),
                {**auth, "Content-Type": "application/json"},
            )
            ledger.saw(status)
            if status != 201:
                time.sleep(0.05)
                continue
            opened = json.loads(answer)
            reports = {item["index"]: item for item in opened["items"]}
            frames = b""
            for index, (_sent, body) in enumerate(outbox):
                if reports[index]["state"] == "needed":
                    offset = reports[index].get("offset", 0)
                    frames += frame_header(index, offset, len(body) - offset, len(body))
                    frames += body[offset:]
            if frames:
                status, answer = _request(
                    site,
                    "POST",
                    f"/api/v1/sync/sessions/{opened['session_id']}/frames",
                    frames,
                    {**auth, "Content-Type": "application/vnd.diiwaan.frames"},
                )
                ledger.saw(status)
                if status != 200:
                    time.sleep(0.05)
                    continue
                reports.update({item["index"]: item for item in json.loads(answer)["items"]})
            keep = []
            for index, (sent, body) in enumerate(outbox):
                state = reports[index]["state"]
                if state == "stored":
                    ledger.acknowledge(sent.instance_id)
                else:
                    assert state == "needed", reports[index]
                    keep.append((sent, body))
            outbox = keep
        except OSError:
            ledger.failures += 1
            time.sleep(0.05)


# ---------------------------------------------------------------------- test


def test_killing_web_and_worker_at_random_loses_and_doubles_nothing(site: Site) -> None:
    postgres = site.database_url.startswith("postgresql")
    cycles = _cycles(postgres)
    chance = random.Random(int(os.environ.get("DIIWAAN_CRASH_SEED", "20261126")))
    launcher = Launcher(site)
    ledger, stop = Ledger(), threading.Event()
    tablets = [
        threading.Thread(target=_recording(openrosa_tablet), args=(site, ledger, stop, seed))
        for seed in (1, 2)
    ] + [
        threading.Thread(target=_recording(sync_tablet), args=(site, ledger, stop, 3)),
    ]
    started = time.monotonic()
    kills = {"web": 0, "worker": 0}
    web = worker = 0
    try:
        web, worker = launcher.web(), launcher.worker()
        wait_until_serving(site)
        for tablet in tablets:
            tablet.start()
        for _cycle in range(cycles):
            if ledger.errors:
                break
            time.sleep(chance.uniform(0.05, 0.6))
            victims = chance.choice([("web",), ("worker",), ("web", "worker")])
            if "web" in victims:
                kill(web)
                kills["web"] += 1
            if "worker" in victims:
                kill(worker)
                kills["worker"] += 1
            if "web" in victims:
                web = launcher.web()
                wait_until_serving(site)
            if "worker" in victims:
                worker = launcher.worker()
        # Let the tablets finish what they were sending to a server that now stays up.
        stop.set()
        for tablet in tablets:
            tablet.join(timeout=60)
            assert not tablet.is_alive(), "a tablet hung"
    finally:
        stop.set()
        kill(web)
        kill(worker)
        if ledger.errors or sys.exc_info()[0] is not None:
            launcher.close()
    chaos_seconds = time.monotonic() - started
    assert not ledger.errors, ledger.errors

    drained = time.monotonic()
    try:
        _drain(site)
    finally:
        launcher.close()
    drain_seconds = time.monotonic() - drained
    acknowledged = [sent for sent in ledger.sent.values() if sent.acknowledged]
    print(
        f"\n{cycles} cycles in {chaos_seconds:.0f} s: killed web {kills['web']}x, worker "
        f"{kills['worker']}x; {len(acknowledged)} of {len(ledger.sent)} submissions "
        f"acknowledged ({sum(s.channel == 'sync' for s in acknowledged)} by sync), "
        f"{ledger.replays} replays answered 202, {ledger.failures} connection failures, "
        f"statuses {dict(sorted(ledger.statuses.items()))}; final drain {drain_seconds:.0f} s"
    )
    assert kills["web"] >= cycles // 4 and kills["worker"] >= cycles // 4
    assert len(acknowledged) >= cycles // 2, "the load generator barely got through"
    _assert_exactly_once(site, ledger)


def _drain(site: Site) -> None:
    """A final clean worker, once the leases of killed workers have run out."""
    with Session(site.engine) as session:
        leases = session.scalars(
            select(Submission.lease_until).where(Submission.processing_state == "processing")
        ).all()
    if leases:
        wait = max(as_utc(lease) for lease in leases if lease) - utcnow()
        time.sleep(max(0.0, wait.total_seconds()) + 0.2)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "diiwaan"), "worker", "--drain"],
        cwd=ROOT,
        env=site.environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _assert_exactly_once(site: Site, ledger: Ledger) -> None:
    store = blob_store(site.data_dir)
    with Session(site.engine) as session:
        rows = session.execute(
            select(
                Submission.instance_id,
                Submission.id,
                Submission.xml_sha256,
                Submission.processing_state,
                Submission.last_error,
            )
        ).all()
        by_instance: dict[str, list[Any]] = {}
        for row in rows:
            by_instance.setdefault(row.instance_id, []).append(row)
        # Stored exactly once, with the bytes the tablet sent, and processed.
        problems = []
        for sent in ledger.sent.values():
            found = by_instance.get(sent.instance_id, [])
            if sent.acknowledged and len(found) != 1:
                problems.append(f"{sent.instance_id}: acknowledged, stored {len(found)} times")
            for row in found:
                if row.xml_sha256 != sent.xml_sha256 or not store.exists(row.xml_sha256):
                    problems.append(f"{sent.instance_id}: stored bytes differ or are missing")
        unknown = set(by_instance) - set(ledger.sent)
        assert not unknown, f"submissions nobody sent: {sorted(unknown)[:5]}"
        not_processed = [
            (r.instance_id, r.processing_state, r.last_error)
            for r in rows
            if r.processing_state != "processed"
        ]
        assert not not_processed, f"not processed exactly once: {not_processed[:5]}"
        assert not problems, "\n".join(problems[:20])

        # Each household and member exactly once, created by its own submission.
        submission_of = {row.instance_id: row.id for row in rows}
        entities = {
            str(entity_id): (list_name, created_by)
            for entity_id, list_name, created_by in session.execute(
                select(Entity.id, Entity.list_name, Entity.created_by_submission_id)
            )
        }
        for instance_id, submission_id in submission_of.items():
            sent = ledger.sent[instance_id]
            expected = [(sent.household_id, HOUSEHOLDS)] + [(m, MEMBERS) for m in sent.member_ids]
            for entity_id, list_name in expected:
                assert entities.get(entity_id) == (list_name, submission_id), (
                    f"{instance_id}: {list_name} {entity_id} is {entities.get(entity_id)}"
                )
        expected_ids = {
            entity_id
            for instance_id in submission_of
            for entity_id in [
                ledger.sent[instance_id].household_id,
                *ledger.sent[instance_id].member_ids,
            ]
        }
        assert set(entities) == expected_ids, "the registry holds entities nobody submitted"

        # One version per (entity, submission), one feed entry per creation, one pending
        # change per entity block: nothing applied twice by a retried worker or a replay.
        def duplicates(statement: Any) -> list[Any]:
            return list(session.execute(statement.having(func.count() > 1)))

        assert not duplicates(
            select(EntityVersion.entity_id, EntityVersion.submission_id, func.count())
            .where(EntityVersion.submission_id.is_not(None))
            .group_by(EntityVersion.entity_id, EntityVersion.submission_id)
        )
        assert not duplicates(
            select(RegistryChange.entity_id, RegistryChange.operation, func.count())
            .where(RegistryChange.operation == "create")
            .group_by(RegistryChange.entity_id, RegistryChange.operation)
        )
        assert not duplicates(
            select(PendingChange.submission_id, PendingChange.entity_id, func.count()).group_by(
                PendingChange.submission_id, PendingChange.entity_id
            )
        )
        versions = session.scalar(
            select(func.count())
            .select_from(EntityVersion)
            .where(EntityVersion.submission_id.is_not(None), EntityVersion.version == 1)
        )
        assert versions == len(expected_ids)
