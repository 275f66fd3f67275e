"""Submissions API (scoped by role and district) and the processing-failures page."""

from __future__ import annotations

import io
import uuid
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask.views import MethodView

from server.accounts.auth import current_user, login_required
from server.accounts.service import require
from server.api import api_blueprint
from server.blobs import blob_store
from server.db import db
from server.errors import BadRequest, NotFound
from server.intake import files, processing, service
from server.intake.schemas import (
    ReprocessSchema,
    SubmissionDetailSchema,
    SubmissionPageSchema,
    SubmissionQuerySchema,
)

pages = Blueprint("intake", __name__)
api_bp = api_blueprint(
    "submissions_api", __name__, "/submissions", "Submissions as received and processed"
)


def _store() -> Any:
    return blob_store(current_app.config["DIIWAAN"].data_dir)


@api_bp.route("")
class Submissions(MethodView):
    @api_bp.arguments(SubmissionQuerySchema, location="query")
    @api_bp.response(200, SubmissionPageSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Submissions you may see, newest first (filters: form, version, states, district,
        enumerator, received date)."""
        rows, total = service.list_submissions(
            db.session, current_user(), service.SubmissionFilter(**query)
        )
        return {
            "total": total,
            "page": query["page"],
            "per_page": query["per_page"],
            "submissions": rows,
        }


@api_bp.route("/<uuid:submission_id>")
class SubmissionItem(MethodView):
    @api_bp.response(200, SubmissionDetailSchema)
    def get(self, submission_id: Any) -> Any:
        """One submission with its typed data and attachment links."""
        return service.get_submission(db.session, current_user(), submission_id)


@api_bp.route("/<uuid:submission_id>/raw")
class SubmissionRaw(MethodView):
    @api_bp.response(200, content_type="text/xml")
    def get(self, submission_id: Any) -> Any:
        """The submission XML exactly as received (the encrypted manifest if encrypted)."""
        submission = service.get_submission(db.session, current_user(), submission_id)
        return send_file(
            io.BytesIO(_store().read(submission.xml_sha256)),
            mimetype="text/xml",
            download_name=f"{submission.instance_id.replace(':', '_')}.xml",
        )


@api_bp.route("/<uuid:submission_id>/attachments/<name>")
class SubmissionAttachmentItem(MethodView):
    @api_bp.response(200, content_type="application/octet-stream")
    def get(self, submission_id: Any, name: str) -> Any:
        """An attachment: an encrypted submission's media file by its plain name,
        decrypted as it is read (only the encrypted file is stored); any file by the name
        it arrived under, as received."""
        submission = service.get_submission(db.session, current_user(), submission_id)
        settings = current_app.config["DIIWAAN"]
        found = files.read(
            db.session,
            submission,
            name,
            store=_store(),
            key_encryption_key=settings.key_encryption_key,
        )
        if found is not None:
            return found.send(
                download_name=name, mimetype=found.content_type or "application/octet-stream"
            )
        raise NotFound(f"submission {submission_id} has no attachment {name!r}")


@api_bp.route("/reprocess")
class Reprocess(MethodView):
    @api_bp.arguments(ReprocessSchema)
    @api_bp.response(200)
    def post(self, body: dict[str, Any]) -> Any:
        """Put failed (or the named) submissions back in the processing queue."""
        require(current_user(), "submissions.manage")
        if not body["failed"] and not body["submission_ids"]:
            # An empty body must not requeue every processed submission.
            raise BadRequest("name submission_ids, or set failed to requeue every failed one")
        count = processing.reprocess(
            db.session,
            failed_only=body["failed"] and not body["submission_ids"],
            submission_ids=body["submission_ids"] or None,
        )
        return {"requeued": count}


@pages.get("/processing")
@login_required
def failures() -> Any:
    require(g.user, "submissions.manage")
    state = request.args.get("state", "failed")
    rows, total = service.list_submissions(
        db.session,
        g.user,
        service.SubmissionFilter(processing_state=state, current_only=False, per_page=200),
    )
    counts = service.processing_counts(db.session)
    return render_template(
        "intake/failures.html", rows=rows, total=total, state=state, counts=counts
    )


@pages.post("/processing/reprocess")
@login_required
def reprocess() -> Any:
    require(g.user, "submissions.manage")
    try:
        ids = [uuid.UUID(value) for value in request.form.getlist("submission_id")]
    except ValueError:
        raise BadRequest("submission_id must be a submission's id") from None
    count = processing.reprocess(db.session, failed_only=not ids, submission_ids=ids or None)
    flash(f"Requeued {count} submission(s).")
    return redirect(url_for("intake.failures"))
