"""A real Diiwaan for the concurrency and crash tests: its own committed database, the
household form published, an enumerator with a device token, and gunicorn on 127.0.0.1.

A live server needs committed data, so it cannot share the rolled-back test transaction:
on PostgreSQL it gets a database of its own named after DIIWAAN_DATABASE_URL's with
`_live` appended (dropped afterwards); otherwise a temporary SQLite file.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, make_url, text
from sqlalchemy.orm import Session

from server.accounts import service as accounts
from server.accounts.models import District, Region
from server.blobs import blob_store
from server.catalog import service as catalog
from server.cli import upgrade_database
from server.db import make_engine
from tests.support.databases import drop_database, free_port, recreate_database
from tests.support.submissions import Attachment, encode_multipart
from tests.support.xlsforms import household_registration_xlsx, villages_csv

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
KEY_ENCRYPTION_KEY = "live-test-key-encryption-key-0123456789"


@dataclass
class LiveSite:
    database_url: str
    data_dir: Path
    device_token: str
    public_key: str
    engine: Engine
    environment: dict[str, str] = field(default_factory=dict)
    url: str = ""

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def post(
        self, xml: bytes, attachments: Sequence[Attachment] = (), *, timeout: float = 30
    ) -> tuple[int, bytes]:
        """One submission over a fresh connection, as a tablet sends it."""
        body, content_type = encode_multipart(xml, attachments)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(
                "POST",
                f"/key/{self.device_token}/submission",
                body=body,
                headers={"Content-Type": content_type, "X-OpenRosa-Version": "1.0"},
            )
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def scalar(self, sql: str, **params: object) -> object:
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: object) -> list[object]:
        with self.engine.connect() as connection:
            return list(connection.execute(text(sql), params))


def _seed(database_url: str, data_dir: Path) -> tuple[str, str]:
    """Districts, the household form, an enumerator and their device token."""
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
            assert result.version.state == "published" and result.version.key is not None
            enumerator = accounts.create_user(
                session,
                None,
                username="amina",
                display_name="Amina",
                password="amina's long passphrase",
                role="enumerator",
                district_ids=[hodan.id],
            )
            _token, secret = accounts.issue_token(session, None, enumerator, kind="device")
            return secret, result.version.key.public_key
    finally:
        engine.dispose()


@contextmanager
def live_database(tmp_path: Path) -> Iterator[LiveSite]:
    """A migrated, seeded database and data directory of its own."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    shared_url = os.environ.get("DIIWAAN_DATABASE_URL")
    if shared_url:
        live_name = f"{make_url(shared_url).database}_live"
        database_url = recreate_database(shared_url, live_name)
    else:
        database_url = f"sqlite:///{tmp_path / 'live.db'}"
    engine = make_engine(database_url)
    try:
        upgrade_database(database_url)
        device_token, public_key = _seed(database_url, data_dir)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DIIWAAN_")}
        environment.update(
            DIIWAAN_DATABASE_URL=database_url,
            DIIWAAN_DATA_DIR=str(data_dir),
            DIIWAAN_SECRET_KEY="live-test-secret-key-0123456789",
            DIIWAAN_KEY_ENCRYPTION_KEY=KEY_ENCRYPTION_KEY,
            DIIWAAN_PASSWORD_HASH_CHEAP="true",
            DIIWAAN_WORKER_LEASE_SECONDS="5",
            PYTHONPATH=str(ROOT),
        )
        yield LiveSite(database_url, data_dir, device_token, public_key, engine, environment)
    finally:
        engine.dispose()
        if shared_url:
            drop_database(shared_url, live_name)


@contextmanager
def gunicorn(site: LiveSite, *, workers: int = 2, threads: int = 4) -> Iterator[LiveSite]:
    """Serve `site` with gunicorn on a free 127.0.0.1 port until the block ends."""
    port = free_port()
    log_path = site.data_dir / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "--workers",
                str(workers),
                "--worker-class",
                "gthread",
                "--threads",
                str(threads),
                # Each test's arbiter would share ~/.gunicorn/gunicorn.ctl otherwise.
                "--no-control-socket",
                "--bind",
                f"127.0.0.1:{port}",
                "server.app:create_app()",
            ],
            cwd=ROOT,
            env=site.environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: see the end of this block
        )
    site.url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(site, process, log_path)
        yield site
    finally:
        process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        # A worker that did not exit with its arbiter would outlive the test run. Seen
        # once (gunicorn 27.0.1): SIGINT landed while a gthread worker was inside
        # ThreadPoolExecutor.submit, and its quit handler's shutdown() waited for the
        # lock submit held, for ever.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_until_serving(site: LiveSite, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=2)
        try:
            connection.request("HEAD", f"/key/{site.device_token}/submission")
            if connection.getresponse().status == 204:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    raise AssertionError(f"gunicorn did not answer within 30 s:\n{log.read_text()}")
