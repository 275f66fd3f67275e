"""Browser end-to-end harness: the real application in a subprocess (gunicorn), driven by
Debian's Chromium through Playwright.

The server gets its own database: a fresh `<name>_e2e` database next to the one named in
DIIWAAN_DATABASE_URL (PostgreSQL), otherwise a temporary SQLite file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.support.databases import drop_database, free_port, recreate_database

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin").exists() else Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
ADMIN_PASSWORD = "e2e admin passphrase"
E2E_SUFFIX = "_e2e"


@dataclass
class LiveServer:
    url: str
    environment: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `diiwaan ...` against the live server's database."""
        return subprocess.run(
            [str(BIN / "diiwaan"), *args],
            cwd=ROOT,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/login", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    pytest.fail(f"the server did not answer on {url} within 30 s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("e2e")
    shared_url = os.environ.get("DIIWAAN_DATABASE_URL")
    # Named after the test database (test_review → test_review_e2e), so runs of different
    # suites on one PostgreSQL server never drop each other's live database.
    e2e_database = f"{make_url(shared_url).database}{E2E_SUFFIX}" if shared_url else ""
    if shared_url:
        database_url = recreate_database(shared_url, e2e_database)
    else:
        database_url = f"sqlite:///{data_dir / 'diiwaan.db'}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIIWAAN_")}
    environment.update(
        DIIWAAN_DATABASE_URL=database_url,
        DIIWAAN_DATA_DIR=str(data_dir),
        DIIWAAN_ADMIN_PASSWORD=ADMIN_PASSWORD,
        DIIWAAN_PASSWORD_HASH_CHEAP="true",
        DIIWAAN_ODK_VALIDATE="false",
    )
    port = free_port()
    server = LiveServer(url=f"http://127.0.0.1:{port}", environment=environment)
    try:
        init = server.cli("init")
        assert init.returncode == 0, init.stdout + init.stderr
        log = data_dir / "server.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    str(BIN / "gunicorn"),
                    "-w",
                    "2",
                    "-b",
                    f"127.0.0.1:{port}",
                    "server.app:create_app()",
                ],
                cwd=ROOT,
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_until_serving(server.url, process, log)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        if shared_url:
            drop_database(shared_url, e2e_database)


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    # Missing Chromium is a failure, not a skip: CI installs it with `make browser`.
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; install Debian's chromium (`make browser`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: object, live_server: LiveServer) -> Iterator[object]:
    context = chromium.new_context(  # type: ignore[attr-defined]
        base_url=live_server.url, viewport={"width": 1280, "height": 800}
    )
    context.set_default_timeout(10_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def screenshot(page: object, request: pytest.FixtureRequest):
    """`screenshot("step")` saves tests/artifacts/<test>-<step>.png for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)

    def save(step: str, *, full_page: bool = True) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{step}.png"
        page.screenshot(path=str(path), full_page=full_page)  # type: ignore[attr-defined]
        return path

    return save
