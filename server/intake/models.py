"""Submissions as received (raw, possibly encrypted) and as processed (typed data), and
the devices and upload sessions of the batch sync API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.accounts.models import District, User
from server.catalog.models import Form, FormVersion
from server.db import Base, utcnow

# Where a submission is in processing (not its review, which supervisors decide):
#   waiting    attachments still to come (multi-POST upload, encrypted files missing)
#   queued     ready for a worker
#   processing leased by a worker until lease_until
#   processed  decrypted, parsed and handed to the registry
#   failed     gave up after retries; an administrator can reprocess it
#   encrypted  self-managed key: stored encrypted, decrypt offline with `diiwaan decrypt`
PROCESSING_STATES = ("waiting", "queued", "processing", "processed", "failed", "encrypted")
REVIEW_STATES = ("received", "has_issues", "edited", "approved", "rejected")
# A supervisor's final decisions: after them a submission is not processed again by itself.
DECIDED_REVIEW_STATES = ("approved", "rejected")


class Submission(Base):
    __tablename__ = "submission"
    __table_args__ = (
        UniqueConstraint("form_pk", "instance_id"),
        Index("ix_submission_queue", "processing_state", "next_attempt_at"),
        Index("ix_submission_district_received", "district_id", "received_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    form_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("form.id"))
    form_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("form_version.id"), index=True)
    instance_id: Mapped[str] = mapped_column(String(255))
    instance_name: Mapped[str | None] = mapped_column(String(500))
    # Edits: the instance this one replaces, and whether this is the newest of its chain.
    deprecated_id: Mapped[str | None] = mapped_column(String(255))
    current: Mapped[bool] = mapped_column(default=True)
    submitter_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), index=True
    )
    device_id: Mapped[str | None] = mapped_column(String(255))
    district_id: Mapped[int | None] = mapped_column(ForeignKey("district.id"))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    # The xml_submission_file exactly as received (the encrypted manifest if encrypted).
    xml_sha256: Mapped[str] = mapped_column(String(64))
    xml_size: Mapped[int]
    encrypted: Mapped[bool] = mapped_column(default=False)
    complete: Mapped[bool] = mapped_column(default=True)

    processing_state: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[dt.datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[dt.datetime | None]

    data: Mapped[dict[str, Any] | None]
    parse_problems: Mapped[list[Any]] = mapped_column(default=list)
    review_state: Mapped[str] = mapped_column(String(20), default="received", index=True)

    form: Mapped[Form] = relationship()
    form_version: Mapped[FormVersion] = relationship()
    submitter: Mapped[User | None] = relationship()
    district: Mapped[District | None] = relationship()
    attachments: Mapped[list[SubmissionAttachment]] = relationship(
        back_populates="submission",
        order_by="SubmissionAttachment.position",
        cascade="all, delete-orphan",
    )


class SubmissionAttachment(Base):
    """A file sent with a submission; `sha256` is None until its bytes have arrived."""

    __tablename__ = "submission_attachment"
    __table_args__ = (UniqueConstraint("submission_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    submission_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("submission.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    position: Mapped[int] = mapped_column(default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None]
    content_type: Mapped[str | None] = mapped_column(String(100))
    received_at: Mapped[dt.datetime | None]
    # Encrypted submissions: the media file's plain name and the sha256 of its plaintext,
    # once a worker has decrypted and verified it. Only the encrypted file is stored: it
    # is decrypted again whenever it is read (server/intake/files.py).
    plain_name: Mapped[str | None] = mapped_column(String(255))
    plain_sha256: Mapped[str | None] = mapped_column(String(64))

    submission: Mapped[Submission] = relationship(back_populates="attachments")


# ------------------------------------------------------------------ batch sync (devices)


class Device(Base):
    """A tablet running a batch-sync client (docs/sync-protocol.md), enrolled with its
    owner's device token. The id is chosen by the device, so enrolling twice over a bad
    link is harmless."""

    __tablename__ = "sync_device"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    token_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("token.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200), default="")
    app_version: Mapped[str] = mapped_column(String(100), default="")
    protocol: Mapped[int] = mapped_column(default=1)
    enrolled_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The registry change-feed position the device has confirmed applying.
    last_cursor: Mapped[int] = mapped_column(BigInteger, default=0)

    user: Mapped[User] = relationship()


class SyncSession(Base):
    """One upload session: the items a device listed, and what became of each."""

    __tablename__ = "sync_session"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sync_device.id", ondelete="CASCADE"), index=True
    )
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_activity_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[dt.datetime | None]
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)

    device: Mapped[Device] = relationship()
    items: Mapped[list[SyncItem]] = relationship(
        back_populates="session", order_by="SyncItem.position", cascade="all, delete-orphan"
    )


# What the server says about a listed item:
#   needed   send it (from `offset`, the bytes of an earlier attempt are kept)
#   stored   durably stored (created, duplicate, ...): the device may forget it
#   refused  decided and not stored (conflict, unknown form, ...): `outcome` says why
SYNC_ITEM_STATES = ("needed", "stored", "refused")


class SyncItem(Base):
    __tablename__ = "sync_item"
    __table_args__ = (
        UniqueConstraint("session_id", "position"),
        Index("ix_sync_item_instance_sha256", "instance_id", "sha256"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sync_session.id", ondelete="CASCADE"))
    position: Mapped[int]
    instance_id: Mapped[str] = mapped_column(String(255))
    form_id: Mapped[str] = mapped_column(String(255))
    form_version: Mapped[str] = mapped_column(String(255))
    # Of the whole pack (docs/sync-protocol.md), as the device declared it.
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(20), default="needed")
    outcome: Mapped[str | None] = mapped_column(String(30))
    status: Mapped[int | None]
    message: Mapped[str | None] = mapped_column(Text)
    submission_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("submission.id", ondelete="SET NULL")
    )
    decided_at: Mapped[dt.datetime | None]

    session: Mapped[SyncSession] = relationship(back_populates="items")
