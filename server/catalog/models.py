"""Forms, their versions and attachments, district assignment, and the server's keys."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Column, ForeignKey, LargeBinary, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.accounts.models import District, User
from server.db import Base, utcnow

FORM_STATES = ("draft", "published", "closed")

form_district = Table(
    "form_district",
    Base.metadata,
    Column("form_id", ForeignKey("form.id", ondelete="CASCADE"), primary_key=True),
    Column("district_id", ForeignKey("district.id", ondelete="CASCADE"), primary_key=True),
)


class ServerKey(Base):
    """One RSA key pair of the deployment (managed encryption). Rotation adds a new
    active key; old ones stay to decrypt what was sent under them."""

    __tablename__ = "server_key"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    public_key: Mapped[str] = mapped_column(Text)  # base64 DER, as forms carry it
    sealed_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[dt.datetime | None]


class Form(Base):
    __tablename__ = "form"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    form_id: Mapped[str] = mapped_column(String(255), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    # When registry changes from this form's submissions take effect: "approval" (a
    # supervisor approves first) or "receipt".
    registry_mode: Mapped[str] = mapped_column(String(20), default="approval")

    versions: Mapped[list[FormVersion]] = relationship(
        back_populates="form", order_by="FormVersion.uploaded_at", cascade="all, delete-orphan"
    )
    districts: Mapped[list[District]] = relationship(
        secondary=form_district, order_by="District.name"
    )
    created_by: Mapped[User | None] = relationship()

    @property
    def district_ids(self) -> set[int]:
        return {district.id for district in self.districts}


class FormVersion(Base):
    __tablename__ = "form_version"
    __table_args__ = (UniqueConstraint("form_pk", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    form_pk: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("form.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(20), default="draft")
    source_filename: Mapped[str] = mapped_column(String(255))
    source_sha256: Mapped[str] = mapped_column(String(64))
    xform_xml: Mapped[bytes] = mapped_column(LargeBinary)
    xform_md5: Mapped[str] = mapped_column(String(32))
    definition: Mapped[dict[str, Any]]
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    # "managed" (server key `key_id`), "self-managed" (the form's own key) or "none".
    encryption: Mapped[str] = mapped_column(String(20), default="none")
    key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("server_key.id"))
    uploaded_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    uploaded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]

    form: Mapped[Form] = relationship(back_populates="versions")
    key: Mapped[ServerKey | None] = relationship()
    attachments: Mapped[list[FormAttachment]] = relationship(
        back_populates="form_version",
        order_by="FormAttachment.filename",
        cascade="all, delete-orphan",
    )


class FormAttachment(Base):
    """A media or data file the form needs, stored by content hash in the blob store."""

    __tablename__ = "form_attachment"
    __table_args__ = (UniqueConstraint("form_version_id", "filename"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    form_version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("form_version.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    md5: Mapped[str] = mapped_column(String(32))
    size: Mapped[int]
    content_type: Mapped[str] = mapped_column(String(100))
    uploaded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    form_version: Mapped[FormVersion] = relationship(back_populates="attachments")
