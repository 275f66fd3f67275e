"""The real application in a subprocess (gunicorn) on a fixed free port with its own
database and data directory, that tests can kill and start again on the same port.

With DIIWAAN_DATABASE_URL set (PostgreSQL), the server gets its own database next to the
test database (never the test database itself); otherwise a SQLite file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.databases import free_port, recreate_database

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin").exists() else Path(sys.executable).parent
LOCATIONS_CSV = ROOT / "docs" / "examples" / "somalia_locations.csv"
PASSWORD = "live server passphrase"


class LiveServer:
    def __init__(self, data_dir: Path, database_url: str, *, threads: int = 8) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.threads = threads
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"
        self.environment = {k: v for k, v in os.environ.items() if not k.startswith("DIIWAAN_")}
        self.environment.update(
            DIIWAAN_DATABASE_URL=database_url,
            DIIWAAN_DATA_DIR=str(data_dir),
            DIIWAAN_ADMIN_PASSWORD=PASSWORD,
            DIIWAAN_NEW_PASSWORD=PASSWORD,
            DIIWAAN_PASSWORD_HASH_CHEAP="true",
            DIIWAAN_ODK_VALIDATE="false",
        )

    def cli(self, *commands: list[str]) -> list[str]:
        """Run `diiwaan` commands against this server's database, all in one process
        (importing the app costs seconds); returns each command's output."""
        script = (
            "import json, sys\n"
            "from server.app import create_app\n"
            "runner = create_app().test_cli_runner()\n"
            "outputs = []\n"
            "for args in json.loads(sys.argv[1]):\n"
            "    result = runner.invoke(args=args)\n"
            "    if result.exit_code:\n"
            "        sys.exit(f'diiwaan {\" \".join(args)} failed: {result.output}')\n"
            "    outputs.append(result.output)\n"
            "print(json.dumps(outputs))\n"
        )
        result = subprocess.run(
            [str(BIN / "python"), "-c", script, json.dumps([list(c) for c in commands])],
            cwd=ROOT,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{result.stdout}{result.stderr}")
        return list(json.loads(result.stdout.strip().splitlines()[-1]))

    def python(self, code: str) -> str:
        """Run Python with this server's settings inside an app context (`app` and `db`
        are defined); returns what it printed."""
        script = (
            "from server.app import create_app\n"
            "from server.db import db\n"
            "app = create_app()\n"
            "with app.app_context():\n"
            + "".join(f"    {line}\n" for line in code.strip().splitlines())
        )
        result = subprocess.run(
            [str(BIN / "python"), "-c", script],
            cwd=ROOT,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{result.stdout}{result.stderr}")
        return result.stdout

    def start(self) -> None:
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "--worker-class",
                "gthread",
                "--workers",
                "1",
                "--threads",
                str(self.threads),
                "--keep-alive",
                "30",
                "--graceful-timeout",
                "2",
                "--bind",
                f"127.0.0.1:{self.port}",
                "server.app:create_app()",
            ],
            cwd=ROOT,
            env=self.environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill() takes the workers too
        )
        log.close()
        try:
            self._wait_until_serving()
        except BaseException:
            self.kill()  # a server that never answered must not outlive the test run
            raise

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/login", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise RuntimeError(f"the server did not answer within 60 s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """As a power cut would: SIGKILL to the master and its workers, no clean-up."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


def sync_server(
    data_dir: Path, shared_url: str | None, database_name: str
) -> tuple[LiveServer, str]:
    """A live server with one enumerator in Hodan, a published encrypted one-question form
    assigned there, and a device token for the enumerator; returns (server, token).

    With `shared_url` (PostgreSQL) its database is `database_name` beside the test
    database, made afresh and left for the caller to drop; otherwise a SQLite file in
    `data_dir`."""
    from tests.support.xlsforms import minimal_form_xlsx

    if shared_url:
        database_url = recreate_database(shared_url, database_name)
    else:
        database_url = f"sqlite:///{data_dir / 'live.db'}"
    server = LiveServer(data_dir, database_url)
    form = data_dir / "daily_visit.xlsx"
    form.write_bytes(minimal_form_xlsx("daily_visit", "2026112601", title="Daily visit"))
    outputs = server.cli(
        ["init"],
        ["districts", "import", str(LOCATIONS_CSV)],
        ["users", "create", "faadumo", "--role", "enumerator", "--district", "SO-BN-HOD"],
        ["forms", "publish", str(form), "--district", "SO-BN-HOD"],
        ["tokens", "create", "faadumo", "--kind", "device", "--name", "tablet"],
    )
    token = outputs[-1].strip().rsplit(" ", 1)[-1]
    server.start()
    return server, token
