"""A real worker process for test_crash.py: `diiwaan worker --drain` with one extra
registry hook that records each submission in `crash_marker` — inside the worker's own
transaction, like any registry write — then touches a file saying it got that far, then
sleeps CRASH_HOOK_SLEEP seconds, so the test can SIGKILL it mid-item.

Run as `python tests/server/intake/crash_worker.py` with the DIIWAAN_* environment of the
site and CRASH_STARTED_DIR, CRASH_HOOK_SLEEP and CRASH_BATCH (submissions per transaction).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from server.app import create_app
from server.intake import hooks, processing
from server.intake.cli import worker_context


def main() -> None:
    started_dir = Path(os.environ["CRASH_STARTED_DIR"])
    pause = float(os.environ.get("CRASH_HOOK_SLEEP", "0"))

    @hooks.on_processed
    def mark_and_sleep(session: Any, submission: Any, _parsed: Any, _definition: Any) -> None:
        session.execute(
            text("INSERT INTO crash_marker (instance_id, pid) VALUES (:instance_id, :pid)"),
            {"instance_id": submission.instance_id, "pid": os.getpid()},
        )
        session.flush()
        (started_dir / f"{os.getpid()}-{submission.instance_id.replace(':', '_')}").touch()
        time.sleep(pause)

    app = create_app()
    with app.app_context():
        batch = int(os.environ.get("CRASH_BATCH", processing.BATCH_SIZE))
        done = processing.run(worker_context(), drain=True, batch=batch)
    print(f"processed {done}", flush=True)


if __name__ == "__main__":
    main()
