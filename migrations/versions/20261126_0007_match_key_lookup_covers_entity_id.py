"""registry: the match-key lookup index covers entity_id

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 17:30:00.000000

Ranking candidates reads only (list_name, key, entity_id): with entity_id in the index the
postings of a blocking key are read from the index alone (an index-only scan), not
fetched one by one from the table.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("registry_match_key", schema=None) as batch_op:
        batch_op.drop_index("ix_registry_match_key_lookup")
        batch_op.create_index(
            "ix_registry_match_key_lookup", ["list_name", "key", "entity_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("registry_match_key", schema=None) as batch_op:
        batch_op.drop_index("ix_registry_match_key_lookup")
        batch_op.create_index("ix_registry_match_key_lookup", ["list_name", "key"], unique=False)
