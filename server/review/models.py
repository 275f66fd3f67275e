"""What supervisors add to a submission: state changes, comments and edited versions of
its data. (The current review state itself is `Submission.review_state`.)"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, BigIntPK, utcnow
from server.intake.models import Submission


class ReviewTransition(Base):
    """One change of a submission's review state (an edit counts: it sets "edited").

    `seq` numbers them per submission; it is the version a review page was drawn from,
    and the unique constraint means two supervisors acting on the same version cannot
    both succeed: the second is told to reload (409).
    """

    __tablename__ = "review_transition"
    __table_args__ = (UniqueConstraint("submission_id", "seq"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    submission_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("submission.id", ondelete="CASCADE")
    )
    seq: Mapped[int]
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    actor_name: Mapped[str] = mapped_column(String(80), default="")
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SubmissionComment(Base):
    """One message in a submission's comment thread."""

    __tablename__ = "review_comment"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    submission_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("submission.id", ondelete="CASCADE"), index=True
    )
    author_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    author_name: Mapped[str] = mapped_column(String(80), default="")
    body: Mapped[str] = mapped_column(Text)
    # The state change this comment was written with ("rejected because …"), if any.
    transition_id: Mapped[int | None] = mapped_column(
        ForeignKey("review_transition.id", ondelete="SET NULL")
    )
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    transition: Mapped[ReviewTransition | None] = relationship()


class SubmissionEdit(Base):
    """One version of a submission's data. Version 1 is the data as received (stored when
    the first edit is made); each supervisor edit adds the next version."""

    __tablename__ = "review_edit"
    __table_args__ = (UniqueConstraint("submission_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    submission_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("submission.id", ondelete="CASCADE")
    )
    version: Mapped[int]
    data: Mapped[dict[str, Any]]
    # {answer path: [before, after]}
    changed_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    editor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    editor_name: Mapped[str] = mapped_column(String(80), default="")
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# The review queue and the dashboard read `submission` within the caller's districts,
# narrowed by review state, newest (or oldest) first, and count what they show. One
# partial index over current submissions covers those reads (counts and group-bys become
# index-only scans on PostgreSQL); the enumerator filter has its own. They live here,
# with the queries that need them (bench/review_queue.py has the figures).
Index(
    "ix_submission_review_queue",
    Submission.review_state,
    Submission.district_id,
    Submission.received_at,
    postgresql_include=["submitter_id", "form_pk", "processing_state"],
    postgresql_where=text("current"),
    sqlite_where=text("current"),
)
Index("ix_submission_submitter_received", Submission.submitter_id, Submission.received_at)
