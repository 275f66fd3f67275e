"""Batch sync against OpenRosa one-by-one, over the same simulated 2G link, in one run.

    .venv/bin/python bench/sync.py [--items 200] [--rate-kbit 50] [--latency-ms 150]

A real server (gunicorn, its own SQLite database in a temporary directory) sits behind
tests/support/faultproxy.py, which throttles each direction to --rate-kbit and delays
every byte by --latency-ms. One enumerator's day: --items household registrations (three
members each, a --photo-kb dwelling photo), encrypted with the form's managed key.

1. Batch sync: `diiwaan-sync push` of the whole outbox (hello, open session, frames, close).
2. OpenRosa: HEAD /submission, then one multipart POST per submission, as ODK Collect sends
   them, over a kept-alive connection — the same number of submissions, the same sizes.
3. Drops: another --drop-items pushed while the link drops twice, once halfway through a
   frames request and once halfway through its answer; counts the payload bytes sent again.

Figures: bytes through the proxy (both directions) ÷ payload bytes (the manifest and `.enc`
files the server must receive), and wall-clock time.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sync import crypto  # noqa: E402
from sync.client import SyncClient  # noqa: E402
from sync.pack import read_pack  # noqa: E402
from tests.support.faultproxy import FaultProxy  # noqa: E402
from tests.support.liveserver import sync_server  # noqa: E402
from tests.support.submissions import Attachment, encode_multipart  # noqa: E402
from tests.support.xlsforms import (  # noqa: E402
    HOUSEHOLD_FORM_ID,
    HOUSEHOLD_FORM_VERSION,
    household_instance_xml,
)

FIRST_NAMES = ["Faadumo", "Xaawo", "Cawo", "Sahra", "Ubax", "Maryan", "Hodan", "Ayaan"]
FATHER_NAMES = ["Cali", "Jaamac", "Warsame", "Nuur", "Galaal", "Yuusuf", "Maxamed"]
PUBLISH_HOUSEHOLD = """
from server.accounts import service as accounts
from server.blobs import blob_store
from server.catalog import service as catalog
from tests.support.xlsforms import household_registration_xlsx, villages_csv
settings = app.config["DIIWAAN"]
with db.job_session() as session:
    hodan = accounts.get_district_by_code(session, "SO-BN-HOD")
    catalog.upload_form(
        session, None, data=household_registration_xlsx(),
        filename="household_registration.xlsx", store=blob_store(settings.data_dir),
        key_encryption_key=settings.key_encryption_key, max_bytes=settings.max_form_bytes,
        district_ids=[hodan.id], attachments=[("villages.csv", villages_csv())])
"""


@dataclass
class Run:
    name: str
    items: int
    payload: int
    wire: int
    seconds: float
    requests: int

    @property
    def ratio(self) -> float:
        return self.wire / self.payload


def day_of_households(folder: Path, count: int, photo_kb: int, rng: random.Random) -> list:
    """Plain submissions as Collect writes them, with their photos, on disk."""
    made = []
    for number in range(count):
        instance_id = f"uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        photo_name = f"dwelling-{number}.jpg"
        xml = household_instance_xml(
            instance_id=instance_id,
            head_first_name=rng.choice(FIRST_NAMES),
            head_father_name=rng.choice(FATHER_NAMES),
            national_id=str(rng.randrange(10**8, 10**9)),
            phone=f"061{rng.randrange(10**7):07d}",
            dwelling_photo=photo_name if photo_kb else None,
        )
        xml_path = folder / f"household-{number}.xml"
        xml_path.write_bytes(xml)
        attachments = []
        if photo_kb:
            photo = folder / photo_name
            photo.write_bytes(rng.randbytes(photo_kb * 1024))  # a JPEG does not compress
            attachments.append(photo)
        made.append((xml_path, attachments))
    return made


def payload_bytes(client: SyncClient) -> int:
    """What the server must receive at the very least: manifest + .enc files, unframed."""
    total = 0
    for item in client.store.queued():
        body = client.store.read_pack(item.instance_id, 0, item.size)
        for entry in read_pack(io.BytesIO(body)):
            total += entry.size
    return total


def bytes_received(server) -> int:
    """Pack bytes the server wrote for all sessions so far."""
    from sqlalchemy import create_engine, func, select

    from server.intake.models import SyncSession

    engine = create_engine(server.database_url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.sum(SyncSession.bytes_received))) or 0)
    finally:
        engine.dispose()


def push_with_sync(client: SyncClient, proxy: FaultProxy, payload: int) -> Run:
    items = len(client.store.queued())
    proxy.reset_counters()
    requests_before = client.wire.requests
    started = time.monotonic()
    summary = client.push()
    seconds = time.monotonic() - started
    assert summary.acknowledged == items, summary
    return Run(
        "batch sync",
        items,
        payload,
        proxy.wire_bytes,
        seconds,
        client.wire.requests - requests_before,
    )


def post_with_openrosa(proxy: FaultProxy, token: str, public_key: str, households: list) -> Run:
    """One POST per submission, as Collect does (encrypted the same way)."""
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "X-OpenRosa-Version": "1.0"}
    bodies, payload = [], 0
    key = crypto.load_public_key(public_key)
    for xml_path, attachments in households:
        xml = xml_path.read_bytes()
        instance_id = xml.split(b"<instanceID>")[1].split(b"</instanceID>")[0].decode()
        encrypted = crypto.encrypt_submission(
            xml=xml,
            media=[(path.name, path.read_bytes()) for path in attachments],
            instance_id=instance_id,
            form_id=HOUSEHOLD_FORM_ID,
            form_version=HOUSEHOLD_FORM_VERSION,
            public_key=key,
        )
        payload += len(encrypted.manifest_xml) + sum(len(c) for _n, c in encrypted.files)
        bodies.append(
            encode_multipart(
                encrypted.manifest_xml,
                [Attachment(name, content) for name, content in encrypted.files],
            )
        )
    proxy.reset_counters()
    started = time.monotonic()
    connection.request("HEAD", "/submission", headers=headers)
    connection.getresponse().read()
    for body, content_type in bodies:
        connection.request(
            "POST", "/submission", body=body, headers={**headers, "Content-Type": content_type}
        )
        response = connection.getresponse()
        response.read()
        assert response.status == 201, response.status
    seconds = time.monotonic() - started
    connection.close()
    return Run(
        "OpenRosa one by one", len(bodies), payload, proxy.wire_bytes, seconds, len(bodies) + 1
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--rate-kbit", type=float, default=50.0)
    parser.add_argument("--latency-ms", type=float, default=150.0, help="one way")
    parser.add_argument("--photo-kb", type=int, default=2)
    parser.add_argument("--drop-items", type=int, default=40)
    parser.add_argument("--seed", type=int, default=20261126)
    arguments = parser.parse_args()
    rng = random.Random(arguments.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    print(f"setting up a server in {work} ...", flush=True)
    (work / "server").mkdir()
    server, token = sync_server(work / "server", None, "unused")
    server.python(PUBLISH_HOUSEHOLD)
    try:
        with FaultProxy(
            server.port,
            rate_bps=arguments.rate_kbit * 1000 / 8,
            latency=arguments.latency_ms / 1000,
            seed=arguments.seed,
        ) as proxy:
            client = SyncClient(work / "tablet", timeout=120)
            client.enroll(proxy.url, token, name="bench tablet")
            client.pull()
            form = client.store.form(HOUSEHOLD_FORM_ID, HOUSEHOLD_FORM_VERSION)
            assert form is not None and form.public_key
            (work / "day").mkdir()
            households = day_of_households(work / "day", arguments.items, arguments.photo_kb, rng)
            for xml_path, attachments in households:
                client.queue(xml_path, attachments)
            payload = payload_bytes(client)
            print(
                f"{arguments.items} households, {payload / arguments.items / 1024:.1f} KB of "
                f"payload each, link {arguments.rate_kbit:g} kbit/s each way, "
                f"{arguments.latency_ms:g} ms one-way latency\n",
                flush=True,
            )
            synced = push_with_sync(client, proxy, payload)
            (work / "openrosa").mkdir()
            others = day_of_households(work / "openrosa", arguments.items, arguments.photo_kb, rng)
            posted = post_with_openrosa(proxy, token, form.public_key, others)
            print(
                f"{'':22} {'items':>6} {'payload KB':>11} {'wire KB':>9} {'wire/payload':>13}"
                f" {'requests':>9} {'seconds':>8}"
            )
            for run in (synced, posted):
                print(
                    f"{run.name:22} {run.items:6d} {run.payload / 1024:11.1f} "
                    f"{run.wire / 1024:9.1f} {run.ratio:13.3f} {run.requests:9d} "
                    f"{run.seconds:8.1f}"
                )
            print(f"\nbatch sync took {synced.seconds / posted.seconds:.0%} of OpenRosa's time")

            (work / "drops").mkdir()
            for xml_path, attachments in day_of_households(
                work / "drops", arguments.drop_items, arguments.photo_kb, rng
            ):
                client.queue(xml_path, attachments)
            chunk = client.hello()["limits"]["chunk_bytes"]
            received_before = bytes_received(server)
            # Exchanges of a push: hello, open session, then frames requests.
            proxy.reset_counters()
            proxy.cut_exchange(3, "up", 0.5)  # the first frames request, halfway through
            proxy.cut_exchange(6, "down", 0.5)  # a later answer, halfway through
            summary = client.push()
            assert summary.remaining == 0
            twice = bytes_received(server) - received_before - summary.payload_bytes
            print(
                f"\ndrops: {arguments.drop_items} more households, {proxy.cuts} cuts (one "
                f"halfway through a frames request, one halfway through an answer): "
                f"{summary.payload_bytes / 1024:.1f} KB of payload;\n"
                f"  sent again by the device: {summary.resent_bytes} bytes "
                f"({summary.resent_bytes / chunk:.2f} of a {chunk // 1024} KB chunk: what was "
                f"still in flight when the link dropped)\n"
                f"  received twice by the server: {twice} bytes"
            )
            digest = hashlib.sha256(str(arguments).encode()).hexdigest()[:8]
            print(f"(run {digest}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
            client.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
