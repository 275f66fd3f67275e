"""`diiwaan worker`, `diiwaan scheduler`, `diiwaan submissions ...`, `diiwaan decrypt`."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from server.blobs import blob_store
from server.db import db
from server.intake import files, processing
from server.intake.models import Submission


def worker_context() -> processing.WorkerContext:
    settings = current_app.config["DIIWAAN"]
    return processing.WorkerContext(
        database=db,
        store=blob_store(settings.data_dir),
        key_encryption_key=settings.key_encryption_key,
        lease_seconds=settings.worker_lease_seconds,
    )


@click.command("worker")
@click.option("--drain", is_flag=True, help="Process until the queue is empty, then stop.")
@click.option(
    "--poll", default=2.0, show_default=True, help="Seconds between looks at an empty queue."
)
@click.option(
    "--batch",
    default=processing.BATCH_SIZE,
    show_default=True,
    type=click.IntRange(1, 500),
    help="Submissions per transaction (1: one commit each).",
)
@with_appcontext
def worker_command(drain: bool, poll: float, batch: int) -> None:
    """Process received submissions (decrypt, parse, hand to the registry)."""
    context = worker_context()
    stopping = {"flag": False}

    def _stop(*_: Any) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if drain:
        with db.job_session() as session:
            waiting = (
                session.scalar(
                    select(func.count())
                    .select_from(Submission)
                    .where(Submission.processing_state.in_(["queued", "processing"]))
                )
                or 0
            )
        with click.progressbar(length=waiting, label="processing submissions") as bar:
            shown = {"done": 0}

            def _progress(done: int) -> None:
                bar.update(done - shown["done"])
                shown["done"] = done

            done = processing.run(
                context,
                drain=True,
                batch=batch,
                progress=_progress,
                should_stop=lambda: stopping["flag"],
            )
    else:
        click.echo(f"worker {context.worker_id} started")
        done = processing.run(
            context, poll_seconds=poll, batch=batch, should_stop=lambda: stopping["flag"]
        )
    click.echo(f"processed {done} submission(s)")


@click.command("scheduler")
@with_appcontext
def scheduler_command() -> None:
    """Run the periodic jobs (run exactly one of these per deployment)."""
    from server.jobs import JOBS, build_scheduler

    for job in JOBS:
        click.echo(f"{job.id}: every {job.minutes:g} min — {job.description}")
    build_scheduler(current_app._get_current_object()).start()  # type: ignore[attr-defined]


submissions_group = click.Group("submissions", help="Received submissions.")


@submissions_group.command("reprocess")
@click.option("--failed", is_flag=True, help="Requeue every failed submission.")
@click.argument("submission_ids", nargs=-1)
@with_appcontext
def submissions_reprocess(failed: bool, submission_ids: tuple[str, ...]) -> None:
    """Put failed (or the named) submissions back in the processing queue."""
    if not failed and not submission_ids:
        raise click.UsageError("name submission ids or use --failed")
    try:
        ids = [uuid.UUID(value) for value in submission_ids]
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    with db.job_session() as session:
        count = processing.reprocess(session, failed_only=failed and not ids, submission_ids=ids)
    click.echo(f"requeued {count} submission(s)")


@submissions_group.command("forget-decrypted-copies")
@with_appcontext
def submissions_forget_decrypted_copies() -> None:
    """Delete decrypted copies of encrypted media, which earlier Diiwaan stored.

    Every read now decrypts the file the device sent, so the copies are no longer used;
    run once after upgrading. A copy whose bytes are also a form's or a plain
    submission's file is kept.
    """
    store = blob_store(current_app.config["DIIWAAN"].data_dir)
    with db.job_session() as session:

        def progress(chunks: Any) -> Any:
            with click.progressbar(chunks, label="decrypted copies") as bar:
                yield from bar

        deleted, kept = files.forget_decrypted_copies(session, store, progress=progress)
    click.echo(f"deleted {deleted} decrypted cop{'y' if deleted == 1 else 'ies'}; {kept} kept")


@submissions_group.command("stats")
@with_appcontext
def submissions_stats() -> None:
    """Count submissions by processing state."""
    with db.job_session() as session:
        for state, count in session.execute(
            select(Submission.processing_state, func.count()).group_by(Submission.processing_state)
        ):
            click.echo(f"{state:12} {count}")


@click.command("decrypt")
@click.option(
    "--key",
    "key_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="PEM private key of a self-managed form.",
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--form", "form_id", default=None, help="Only this form ID.")
@click.option("--password", default=None, help="Passphrase of the key, if it has one.")
@with_appcontext
def decrypt_command(
    key_file: Path, out_dir: Path, form_id: str | None, password: str | None
) -> None:
    """Decrypt submissions of self-managed forms offline, into OUT/<instance>/."""
    from forms.instance import read_envelope
    from server.catalog.models import Form
    from sync import crypto

    store = blob_store(current_app.config["DIIWAAN"].data_dir)
    private = crypto.load_private_key_pem(
        key_file.read_bytes(), password.encode() if password else None
    )
    written = failed = 0
    with db.job_session() as session:
        statement = select(Submission).where(Submission.encrypted.is_(True))
        if form_id:
            statement = statement.join(Submission.form).where(Form.form_id == form_id)
        rows = list(session.scalars(statement))
        with click.progressbar(rows, label="decrypting") as bar:
            for submission in bar:
                envelope = read_envelope(store.read(submission.xml_sha256))
                try:
                    plain = crypto.decrypt_submission(
                        form_id=envelope.form_id,
                        form_version=envelope.version,
                        instance_id=envelope.instance_id,
                        base64_encrypted_key=envelope.base64_encrypted_key or "",
                        base64_signature=envelope.base64_encrypted_element_signature,
                        encrypted_files=[
                            (a.name, store.read(a.sha256))
                            for a in submission.attachments
                            if a.sha256
                        ],
                        encrypted_xml_file=envelope.encrypted_xml_file or "",
                        private_key=private,
                    )
                except crypto.CryptoError as error:
                    failed += 1
                    click.echo(f"\n{submission.instance_id}: {error}", err=True)
                    continue
                target = out_dir / submission.instance_id.replace(":", "_")
                target.mkdir(parents=True, exist_ok=True)
                (target / "submission.xml").write_bytes(plain.xml)
                for name, content in plain.media:
                    (target / name).write_bytes(content)
                written += 1
    click.echo(f"decrypted {written} submission(s) into {out_dir}; {failed} could not be decrypted")


COMMANDS = (worker_command, scheduler_command, submissions_group, decrypt_command)
