"""The `diiwaan` command: database, users, districts, tokens, serving."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from server.accounts import service as accounts
from server.db import db
from server.errors import DiiwaanError

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Any:
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade_database(database_url: str) -> None:
    from alembic import command

    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), "head")


def fail(error: DiiwaanError) -> None:
    detail = ""
    if isinstance(error.details, dict):
        for key, problems in error.details.items():
            items = problems if isinstance(problems, list) else [problems]
            detail += "".join(f"\n  {key}: {p}" if key != "rows" else f"\n  {p}" for p in items)
    raise click.ClickException(f"{error.message}{detail}")


# ------------------------------------------------------------------------------ db

db_group = click.Group("db", help="Database schema.")


@db_group.command("upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    upgrade_database(current_app.config["DIIWAAN"].database_url)
    click.echo("database is at the newest schema")


@click.command("init")
@with_appcontext
def init_command() -> None:
    """Migrate, then create a first administrator when there is none (used by `make run`)."""
    upgrade_database(current_app.config["DIIWAAN"].database_url)
    with db.job_session() as session:
        if accounts.count_admins(session):
            return
        password = os.environ.get("DIIWAAN_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        accounts.create_user(
            session,
            None,
            username="admin",
            display_name="Administrator",
            password=password,
            role="admin",
        )
    if os.environ.get("DIIWAAN_ADMIN_PASSWORD"):
        click.echo("created user 'admin' with the password from DIIWAAN_ADMIN_PASSWORD")
    else:
        click.echo(f"created user 'admin' with password: {password}  (shown once; change it)")


# --------------------------------------------------------------------------- users

users_group = click.Group("users", help="People who use Diiwaan.")


@users_group.command("create")
@click.argument("username")
@click.option(
    "--role", type=click.Choice(["admin", "supervisor", "enumerator", "partner"]), required=True
)
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--district", "district_codes", multiple=True, help="District code (repeatable).")
@click.password_option(envvar="DIIWAAN_NEW_PASSWORD")
@with_appcontext
def users_create(
    username: str, role: str, display_name: str, district_codes: tuple[str, ...], password: str
) -> None:
    """Create a user."""
    try:
        with db.job_session() as session:
            district_ids = [accounts.get_district_by_code(session, c).id for c in district_codes]
            user = accounts.create_user(
                session,
                None,
                username=username,
                display_name=display_name,
                password=password,
                role=role,
                district_ids=district_ids,
            )
            click.echo(f"created {user.username} ({user.role})")
    except DiiwaanError as error:
        fail(error)


@users_group.command("list")
@with_appcontext
def users_list() -> None:
    """List users."""
    with db.job_session() as session:
        from sqlalchemy import select

        from server.accounts.models import User

        for user in session.scalars(select(User).order_by(User.username)):
            districts = ",".join(d.code for d in user.districts) or "-"
            state = "active" if user.active else "inactive"
            click.echo(f"{user.username:24} {user.role:11} {state:8} {districts}")


@users_group.command("deactivate")
@click.argument("username")
@with_appcontext
def users_deactivate(username: str) -> None:
    """Deactivate a user and revoke their tokens."""
    try:
        with db.job_session() as session:
            accounts.deactivate_user(
                session, None, accounts.get_user_by_username(session, username)
            )
        click.echo(f"deactivated {username}")
    except DiiwaanError as error:
        fail(error)


@users_group.command("set-password")
@click.argument("username")
@click.password_option(envvar="DIIWAAN_NEW_PASSWORD")
@with_appcontext
def users_set_password(username: str, password: str) -> None:
    """Set a user's password (also lifts a login lockout)."""
    try:
        with db.job_session() as session:
            user = accounts.get_user_by_username(session, username)
            accounts.set_password(session, None, user, password)
        click.echo(f"password set for {username}")
    except DiiwaanError as error:
        fail(error)


# ----------------------------------------------------------------------- districts

districts_group = click.Group("districts", help="Regions, districts and villages.")


@districts_group.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
@with_appcontext
def districts_import(file: Any) -> None:
    """Import a locations CSV (all rows or none)."""
    try:
        with db.job_session() as session:
            result = accounts.import_locations(session, None, file.read())
        click.echo(
            f"imported {result.regions} regions, {result.districts} districts, "
            f"{result.villages} villages"
        )
    except DiiwaanError as error:
        fail(error)
    except UnicodeDecodeError as error:
        raise click.ClickException(f"{file.name} is not UTF-8 text (byte {error.start})") from None


# -------------------------------------------------------------------------- tokens

tokens_group = click.Group("tokens", help="API and device tokens.")


@tokens_group.command("create")
@click.argument("username")
@click.option("--kind", type=click.Choice(["api", "device"]), default="device")
@click.option("--name", default="", help="What the token is for (e.g. the tablet's label).")
@click.option(
    "--hours",
    type=click.IntRange(1, 24 * 3660),
    default=None,
    help="Lifetime; device tokens default to no expiry.",
)
@with_appcontext
def tokens_create(username: str, kind: str, name: str, hours: int | None) -> None:
    """Issue a token and print its secret once."""
    settings = current_app.config["DIIWAAN"]
    if hours is None and kind == "api":
        hours = settings.api_token_hours
    try:
        with db.job_session() as session:
            user = accounts.get_user_by_username(session, username)
            token, secret = accounts.issue_token(
                session,
                None,
                user,
                kind=kind,
                name=name,
                lifetime=dt.timedelta(hours=hours) if hours else None,
            )
            click.echo(f"token {token.id} for {username} ({kind}): {secret}")
    except DiiwaanError as error:
        fail(error)


@tokens_group.command("revoke")
@click.argument("token_id")
@with_appcontext
def tokens_revoke(token_id: str) -> None:
    """Revoke a token by its id."""
    try:
        with db.job_session() as session:
            accounts.revoke_token(session, None, accounts.get_token(session, token_id))
        click.echo(f"revoked {token_id}")
    except DiiwaanError as error:
        fail(error)


# --------------------------------------------------------------------------- serve


@click.command("serve")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
@with_appcontext
def serve(host: str, port: int) -> None:
    """Serve with a threaded development server (production: gunicorn, see README)."""
    from werkzeug.serving import run_simple

    click.echo(f"Diiwaan on http://{host}:{port}/")
    run_simple(
        host,
        port,
        current_app._get_current_object(),
        threaded=True,  # type: ignore[attr-defined]
        use_reloader=False,
        use_debugger=False,
    )


def register_commands(app: Flask) -> None:
    from server.catalog.cli import COMMANDS as catalog_commands
    from server.intake.cli import COMMANDS as intake_commands
    from server.registry.cli import COMMANDS as registry_commands

    for command in (
        db_group,
        init_command,
        users_group,
        districts_group,
        tokens_group,
        serve,
        *catalog_commands,
        *intake_commands,
        *registry_commands,
    ):
        app.cli.add_command(command)


def _create_app() -> Flask:
    from server.app import create_app
    from server.config import ConfigError

    try:
        return create_app()
    except ConfigError as error:
        click.echo(f"configuration error: {error}", err=True)
        sys.exit(2)


main = FlaskGroup(
    create_app=_create_app,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
    help="Diiwaan: field data collection and household registry server.",
)
