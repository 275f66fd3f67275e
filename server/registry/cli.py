"""`diiwaan registry relink`."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select

from server.db import db
from server.registry import linking
from server.registry.models import HOUSEHOLDS, MEMBERS, Entity

registry_group = click.Group("registry", help="The household registry.")


@registry_group.command("relink")
@click.option(
    "--list",
    "list_names",
    multiple=True,
    type=click.Choice([HOUSEHOLDS, MEMBERS]),
    help="Only this entity list (default: both).",
)
@click.option("--no-refit", is_flag=True, help="Keep the current model; only re-score.")
@with_appcontext
def relink(list_names: tuple[str, ...], no_refit: bool) -> None:
    """Re-match the whole registry (after threshold changes or bulk imports)."""
    for list_name in list_names or (HOUSEHOLDS, MEMBERS):
        with db.job_session() as session:
            total = (
                session.scalar(
                    select(func.count())
                    .select_from(Entity)
                    .where(
                        Entity.list_name == list_name,
                        Entity.merged_into_id.is_(None),
                        Entity.deleted.is_(False),
                    )
                )
                or 0
            )
        # Three passes over the records with a refit (keys, the model, the pairs), two without.
        passes = 2 if no_refit else 3
        with click.progressbar(length=passes * total, label=f"relinking {list_name}") as bar:
            counts = linking.relink(
                db.job_session, list_name, refit=not no_refit, progress=bar.update
            )
        click.echo(
            f"{list_name}: {counts['records']} records, {counts['pairs']} candidate pairs, "
            f"{counts['review']} for review, {counts['link']} strong links sent for review"
        )
        if counts["refitted"]:
            click.echo(f"  model refitted with EM on {counts['refitted']} pairs")
        elif "refused" in counts:
            click.echo(f"  model kept: EM's fit on the pairs was refused, as {counts['refused']}")
        elif not no_refit:
            click.echo(
                f"  model kept: {counts['likely']} likely duplicates among the pairs, and a "
                f"refit needs {linking.REFIT_MIN_LIKELY} to learn what duplicates look like"
            )


COMMANDS = (registry_group,)
