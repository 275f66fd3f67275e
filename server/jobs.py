"""The worker loop and the one APScheduler process, with periodic jobs declared as data."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import update

from server.accounts.service import purge_expired_web_sessions
from server.blobs import blob_store
from server.db import Database, db, utcnow
from server.intake.models import Submission
from server.intake.processing import requeue_expired_leases

log = logging.getLogger("diiwaan.jobs")


def purge_incomplete_uploads(database: Database, data_dir: Path, max_age: dt.timedelta) -> int:
    """Delete half-written upload files older than `max_age`, and stop waiting for
    attachments that never came: those submissions go to processing, which records the
    missing files. Acknowledged submissions are never deleted."""
    removed = 0
    cutoff = time.time() - max_age.total_seconds()
    for tmp_dir in (blob_store(data_dir).root / "tmp", Path(data_dir) / "uploads"):
        if not tmp_dir.exists():
            continue
        for path in tmp_dir.rglob("*"):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
    with database.job_session() as session:
        session.execute(
            update(Submission)
            .where(
                Submission.processing_state == "waiting",
                Submission.received_at < utcnow() - max_age,
            )
            .values(processing_state="queued", next_attempt_at=utcnow())
        )
    return removed


@dataclass(frozen=True)
class PeriodicJob:
    id: str
    minutes: float
    run: Callable[[Flask], Any]
    description: str


def _requeue(app: Flask) -> Any:
    return requeue_expired_leases(db)


def _purge_web_sessions(app: Flask) -> Any:
    with db.job_session() as session:
        return purge_expired_web_sessions(session)


def _purge(app: Flask) -> Any:
    settings = app.config["DIIWAAN"]
    return purge_incomplete_uploads(
        db, settings.data_dir, dt.timedelta(days=settings.incomplete_upload_days)
    )


JOBS: tuple[PeriodicJob, ...] = (
    PeriodicJob(
        "requeue-expired-leases",
        1,
        _requeue,
        "give submissions held by dead workers back to the queue",
    ),
    PeriodicJob(
        "purge-incomplete-uploads",
        60,
        _purge,
        "delete stale partial uploads; process submissions whose attachments never came",
    ),
    PeriodicJob(
        "purge-expired-web-sessions",
        60,
        _purge_web_sessions,
        "forget browsers' sign-ins that have expired",
    ),
)


def build_scheduler(app: Flask) -> Any:
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = BlockingScheduler(timezone="UTC")
    for job in JOBS:
        scheduler.add_job(
            _run_in_context,
            "interval",
            minutes=job.minutes,
            args=(app, job),
            id=job.id,
            name=job.description,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
        )
    return scheduler


def _run_in_context(app: Flask, job: PeriodicJob) -> None:
    with app.app_context():
        try:
            result = job.run(app)
            log.info("job %s done: %s", job.id, result)
        except Exception:
            log.exception("job %s failed", job.id)
