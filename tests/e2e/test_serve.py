"""`make run` serves with `diiwaan serve`: it must answer with the login page."""

from __future__ import annotations

import subprocess
import urllib.request

from tests.e2e.conftest import BIN, ROOT, _wait_until_serving
from tests.support.databases import free_port


def test_diiwaan_serve_answers_with_the_login_page(live_server, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(BIN / "diiwaan"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=live_server.environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_serving(url, process, log)
        with urllib.request.urlopen(f"{url}/", timeout=5) as response:
            page = response.read().decode()
            assert response.url == f"{url}/login?next=/"
        assert "<h1>Sign in</h1>" in page
        assert 'name="csrf_token"' in page
    finally:
        process.terminate()
        process.wait(timeout=15)
