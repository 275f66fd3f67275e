"""`diiwaan forms ...` and `diiwaan keys ...`."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from server.accounts import service as accounts
from server.blobs import blob_store
from server.catalog import service
from server.catalog.models import Form
from server.db import db
from server.errors import DiiwaanError

forms_group = click.Group("forms", help="Questionnaires (XLSForms).")
keys_group = click.Group("keys", help="The server's encryption keys.")


def _fail(error: DiiwaanError) -> None:
    from server.cli import fail

    fail(error)


@forms_group.command("publish")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--draft", is_flag=True, help="Keep the new version as a draft.")
@click.option(
    "--district", "district_codes", multiple=True, help="Assign to district (repeatable)."
)
@with_appcontext
def forms_publish(file: Path, draft: bool, district_codes: tuple[str, ...]) -> None:
    """Upload an XLSForm as a new version and publish it (unless --draft)."""
    settings = current_app.config["DIIWAAN"]
    try:
        with db.job_session() as session:
            district_ids = (
                [accounts.get_district_by_code(session, c).id for c in district_codes]
                if district_codes
                else None
            )
            result = service.upload_form(
                session,
                None,
                data=file.read_bytes(),
                filename=file.name,
                store=blob_store(settings.data_dir),
                key_encryption_key=settings.key_encryption_key,
                max_bytes=settings.max_form_bytes,
                publish=not draft,
                district_ids=district_ids,
            )
            verb = "uploaded" if result.created else "unchanged:"
            click.echo(
                f"{verb} {result.form.form_id} version {result.version.version} "
                f"({result.version.state}, encryption {result.version.encryption})"
            )
            for warning in result.version.warnings:
                click.echo(f"warning: {service.describe_problem(warning)}")
            missing = service.missing_attachments(result.version)
            if missing:
                click.echo(f"still needs files: {', '.join(missing)}")
    except DiiwaanError as error:
        problems = (
            (error.details or {}).get("problems") if isinstance(error.details, dict) else None
        )
        if problems:
            lines = "\n".join(f"  {service.describe_problem(p)}" for p in problems)
            raise click.ClickException(f"{error.message}\n{lines}") from None
        _fail(error)


@forms_group.command("list")
@with_appcontext
def forms_list() -> None:
    """List forms and their versions."""
    with db.job_session() as session:
        for form in session.scalars(select(Form).order_by(Form.form_id)):
            districts = ",".join(d.code for d in form.districts) or "-"
            versions = " ".join(f"{v.version}:{v.state}" for v in form.versions)
            click.echo(f"{form.form_id:32} {districts:20} {versions}")


@keys_group.command("rotate")
@with_appcontext
def keys_rotate() -> None:
    """Make a new key pair for form versions uploaded from now on."""
    with db.job_session() as session:
        key = service.rotate_key(session, None, current_app.config["DIIWAAN"].key_encryption_key)
        click.echo(f"new active key {key.fingerprint}")


COMMANDS = (forms_group, keys_group)
