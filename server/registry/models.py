"""The central registry: entities (households, members) with append-only versions,
pending changes waiting for approval, stale-update conflicts, the change feed,
blocking keys and match candidates, merges."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.accounts.models import District
from server.db import Base, BigIntPK, utcnow

HOUSEHOLDS = "households"
MEMBERS = "members"


class Entity(Base):
    """A household or member (or another entity list's item). The id is the entity UUID the
    form gave it; `version` counts applied versions; a merged entity points at its survivor."""

    __tablename__ = "registry_entity"
    __table_args__ = (Index("ix_registry_entity_list_district", "list_name", "district_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    list_name: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(500), default="")
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(default=1)
    district_id: Mapped[int | None] = mapped_column(ForeignKey("district.id"))
    household_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("registry_entity.id"), index=True
    )
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("registry_entity.id"))
    deleted: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_submission_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("submission.id"))
    enumerator_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )

    district: Mapped[District | None] = relationship()
    versions: Mapped[list[EntityVersion]] = relationship(
        back_populates="entity", order_by="EntityVersion.version", cascade="all, delete-orphan"
    )

    @property
    def active(self) -> bool:
        return self.merged_into_id is None and not self.deleted


class EntityVersion(Base):
    """One state of an entity: full snapshot, what changed, and where it came from."""

    __tablename__ = "registry_entity_version"
    __table_args__ = (UniqueConstraint("entity_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    entity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("registry_entity.id"))
    version: Mapped[int]
    label: Mapped[str] = mapped_column(String(500), default="")
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # submission | review | merge | unmerge | conflict | import
    source: Mapped[str] = mapped_column(String(20))
    submission_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("submission.id"), index=True)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    base_version: Mapped[int | None]
    branch_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    entity: Mapped[Entity] = relationship(back_populates="versions")


class PendingChange(Base):
    """An entity operation from a submission, waiting for approval (or held back until its
    predecessor in an offline branch arrives)."""

    __tablename__ = "registry_pending_change"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    submission_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("submission.id"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    list_name: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[uuid.UUID] = mapped_column(index=True)
    create: Mapped[bool] = mapped_column(default=False)
    update: Mapped[bool] = mapped_column(default=False)
    label: Mapped[str | None] = mapped_column(String(500))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    base_version: Mapped[int | None]
    trunk_version: Mapped[int | None]
    branch_id: Mapped[str | None] = mapped_column(String(64))
    parent_entity_id: Mapped[uuid.UUID | None]
    district_id: Mapped[int | None]
    # pending (awaiting approval) | held (predecessor missing) | applied | discarded | failed
    state: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EntityConflict(Base):
    """An offline update made on a stale version that touched properties changed since:
    those properties wait for a supervisor; the rest was applied."""

    __tablename__ = "registry_conflict"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    entity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("registry_entity.id"), index=True)
    submission_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("submission.id"), index=True)
    base_version: Mapped[int]
    server_version: Mapped[int]
    # {property: {"base": …, "server": …, "submitted": …}}
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(20), default="open", index=True)
    resolution: Mapped[dict[str, Any] | None]
    resolved_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    resolved_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    entity: Mapped[Entity] = relationship()


class RegistryChange(Base):
    """The change feed: every registry change, in commit order, with a monotonic sequence."""

    __tablename__ = "registry_change"
    __table_args__ = (Index("ix_registry_change_district_seq", "district_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    entity_id: Mapped[uuid.UUID] = mapped_column(index=True)
    list_name: Mapped[str] = mapped_column(String(64))
    # create | update | merge | unmerge | delete
    operation: Mapped[str] = mapped_column(String(20))
    version: Mapped[int]
    district_id: Mapped[int | None]
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MatchKey(Base):
    """Blocking keys: candidates for a new record are the entities sharing any key."""

    __tablename__ = "registry_match_key"
    # entity_id in the lookup index: candidates are ranked from the index alone.
    __table_args__ = (Index("ix_registry_match_key_lookup", "list_name", "key", "entity_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    list_name: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    entity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("registry_entity.id", ondelete="CASCADE"), index=True
    )


class MatchCandidate(Base):
    """A suspected duplicate pair with its score and why."""

    __tablename__ = "registry_match_candidate"
    __table_args__ = (UniqueConstraint("entity_id", "candidate_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    list_name: Mapped[str] = mapped_column(String(64))
    # `entity_id` is the newer record, `candidate_id` the one already in the registry.
    entity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("registry_entity.id"), index=True)
    candidate_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("registry_entity.id"), index=True)
    weight: Mapped[float]
    probability: Mapped[float]
    contributions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    band: Mapped[str] = mapped_column(String(10))
    # open | merged | separate | undone
    state: Mapped[str] = mapped_column(String(20), default="open", index=True)
    district_id: Mapped[int | None] = mapped_column(index=True)
    decided_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    decided_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    entity: Mapped[Entity] = relationship(foreign_keys=[entity_id])
    candidate: Mapped[Entity] = relationship(foreign_keys=[candidate_id])


class Merge(Base):
    """`merged_id` was folded into `survivor_id`; undone merges keep their row."""

    __tablename__ = "registry_merge"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    survivor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("registry_entity.id"), index=True)
    merged_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("registry_entity.id"), index=True)
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("registry_match_candidate.id"))
    automatic: Mapped[bool] = mapped_column(default=False)
    # Member merges made because their households merged; undone with the household's.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("registry_merge.id"), index=True)
    # Members moved from the merged household to the survivor, to move back on unmerge.
    moved_member_ids: Mapped[list[Any]] = mapped_column(default=list)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    undone_at: Mapped[dt.datetime | None]
    undone_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )


class MatchModel(Base):
    """The fitted Fellegi–Sunter parameters per entity list (re-estimated by relink)."""

    __tablename__ = "registry_match_model"

    list_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fitted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    pairs: Mapped[int] = mapped_column(default=0)
