"""Supervisor pages for submissions — dashboard, queue, one submission read as its form,
edits, bulk approval — and the same actions as JSON under /api/v1/review."""

from __future__ import annotations

import datetime as dt
import mimetypes
from typing import Any

import marshmallow as ma
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.views import MethodView

from server.accounts.auth import current_user, login_required
from server.accounts.service import can, require
from server.api import api_blueprint
from server.blobs import blob_store
from server.catalog import service as catalog
from server.db import db, utcnow
from server.errors import Conflict, DiiwaanError, NotFound, ValidationFailed
from server.i18n import _, ngettext
from server.intake import files
from server.intake.models import Submission
from server.review import rendering, service
from server.review.schemas import (
    ReviewBulkApproveSchema,
    ReviewBulkResultSchema,
    ReviewCommentInSchema,
    ReviewCommentSchema,
    ReviewDashboardSchema,
    ReviewDecisionResultSchema,
    ReviewDecisionSchema,
    ReviewQueuePageSchema,
    ReviewQueueQuerySchema,
    ReviewSchema,
    SubmissionEditInSchema,
    SubmissionEditSchema,
    SubmissionEditWithDataSchema,
)

pages = Blueprint("review", __name__, url_prefix="/review")
api_bp = api_blueprint("review_api", __name__, "/review", "Supervisor review of submissions")

IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def _store() -> Any:
    return blob_store(current_app.config["DIIWAAN"].data_dir)


def _load(schema: ma.Schema, values: Any) -> dict[str, Any]:
    """Parse page arguments; an empty select ("any") means no filter."""
    cleaned = {key: value for key, value in values.items() if value not in ("", None)}
    try:
        return schema.load(cleaned, unknown=ma.EXCLUDE)  # type: ignore[no-any-return]
    except ma.ValidationError as error:
        raise ValidationFailed(_("some filters are not valid"), error.messages) from None


def _filter_from(values: Any) -> service.QueueFilter:
    return service.QueueFilter(**_load(ReviewQueueQuerySchema(), values))


# --------------------------------------------------------------------------- pages


@pages.get("")
@login_required
def dashboard() -> Any:
    require(g.user, "submissions.read")
    board = service.dashboard(db.session, g.user)
    return render_template(
        "review/dashboard.html",
        board=board,
        chart=rendering.bar_chart(board.per_day),
        states=service.STATE_LABELS,
        waiting_states=service.WAITING,
    )


@pages.get("/submissions")
@login_required
def queue() -> Any:
    filters = _filter_from(request.args)
    page = service.queue(db.session, g.user, filters)
    return render_template(
        "review/queue.html",
        page=page,
        filters=filters,
        args=filters.query_args(),
        forms=service.forms_for(db.session, g.user),
        districts=service.districts_for(db.session, g.user),
        enumerators=service.enumerators_for(db.session, g.user),
        states=service.STATE_LABELS,
        can_review=can(g.user, "submissions.review"),
    )


def _file_url(submission: Submission) -> Any:
    available = files.readable_names(submission)

    def url(name: str) -> str | None:
        if name not in available:
            return None
        return url_for("review.submission_file", submission_id=submission.id, name=name)

    return url


def _submission_page(submission: Submission, *, problem: DiiwaanError | None = None) -> Any:
    review = service.review_of(db.session, g.user, submission)
    languages, language = rendering.choose_language(review.definition, request.args.get("lang"))
    shown = review.data_version(request.args.get("version", type=int))
    latest = review.edits[-1] if review.edits else None
    data = shown.data if shown is not None else submission.data
    changed = (shown or latest).changed_fields if (shown or latest) else {}
    rendered = rendering.render_submission(
        review.definition,
        data,
        language,
        file_choices=service.attached_choices(_store(), submission.form_version),
        file_url=_file_url(submission),
        changed=set(changed),
    )
    edited_paths = sorted({path for edit in review.edits for path in edit.changed_fields})
    body = render_template(
        "review/submission.html",
        labels=rendering.answer_labels(review.definition, edited_paths, language),
        review=review,
        submission=submission,
        rendered=rendered,
        shown=shown,
        latest=latest,
        languages=languages,
        language=language,
        activity=service.activity(review),
        states=service.STATE_LABELS,
        decisions=service.DECISIONS,
        can_review=can(g.user, "submissions.review"),
        can_decide=can(g.user, "registry.decide"),
        problem=problem,
        back=request.args.get("back", ""),
    )
    return body, problem.status if problem else 200


@pages.get("/submissions/<uuid:submission_id>")
@login_required
def submission(submission_id: Any) -> Any:
    return _submission_page(service.get_submission(db.session, g.user, submission_id))


@pages.post("/submissions/<uuid:submission_id>/decision")
@login_required
def decide(submission_id: Any) -> Any:
    submission = service.get_submission(db.session, g.user, submission_id)
    try:
        decision = service.set_review_state(
            db.session,
            g.user,
            submission,
            request.form.get("state", ""),
            expected_version=request.form.get("expected_version", type=int),
            comment=request.form.get("comment", ""),
        )
    except (Conflict, ValidationFailed) as refused:
        db.session.rollback()
        return _submission_page(
            service.get_submission(db.session, g.user, submission_id), problem=refused
        )
    state = decision.submission.review_state
    if state == "approved":
        flash(
            ngettext(
                "Approved. %(num)d registry change applied.",
                "Approved. %(num)d registry changes applied.",
                decision.registry_changes,
            )
        )
    elif state == "rejected":
        flash(
            ngettext(
                "Rejected. %(num)d registry change discarded.",
                "Rejected. %(num)d registry changes discarded.",
                decision.registry_changes,
            )
        )
    else:
        flash(_("Marked as %(state)s.", state=service.state_label(state)))
    return redirect(url_for("review.submission", submission_id=submission_id))


@pages.post("/submissions/<uuid:submission_id>/comments")
@login_required
def comment(submission_id: Any) -> Any:
    submission = service.get_submission(db.session, g.user, submission_id)
    try:
        service.add_comment(db.session, g.user, submission, request.form.get("body", ""))
    except ValidationFailed as refused:
        db.session.rollback()
        return _submission_page(
            service.get_submission(db.session, g.user, submission_id), problem=refused
        )
    flash(_("Comment added."))
    return redirect(url_for("review.submission", submission_id=submission_id) + "#activity")


@pages.route("/submissions/<uuid:submission_id>/edit", methods=["GET", "POST"])
@login_required
def edit(submission_id: Any) -> Any:
    submission = service.get_submission(db.session, g.user, submission_id)
    require(g.user, "submissions.review")
    definition = catalog.definition_of(submission.form_version)
    languages, language = rendering.choose_language(definition, request.values.get("lang"))
    sections = rendering.edit_sections(
        definition,
        submission.data or {},
        language,
        file_choices=service.attached_choices(_store(), submission.form_version),
    )
    problem: DiiwaanError | None = None
    version = service.review_version(db.session, submission)
    if request.method == "POST":
        changes: dict[str, Any] = {}
        for section in sections:
            for field in section.fields:
                key = f"answer:{field.path}"
                if field.multiple:
                    picked = request.form.getlist(key)
                    if sorted(picked) != sorted(field.selected):
                        changes[field.path] = picked
                elif key in request.form and request.form[key].strip() != field.value:
                    changes[field.path] = request.form[key]
        try:
            edit = service.edit_submission(
                db.session,
                g.user,
                submission,
                changes,
                expected_version=request.form.get("expected_version", type=int),
            )
        except (Conflict, ValidationFailed) as refused:
            db.session.rollback()
            problem = refused
            submission = service.get_submission(db.session, g.user, submission_id)
            version = service.review_version(db.session, submission)
        else:
            if edit is None:
                flash(_("Nothing was changed."))
            else:
                flash(
                    ngettext(
                        "Saved as version %(version)d (%(num)d answer changed).",
                        "Saved as version %(version)d (%(num)d answers changed).",
                        len(edit.changed_fields),
                        version=edit.version,
                    )
                )
            return redirect(
                url_for("review.submission", submission_id=submission_id, lang=language)
            )
    return render_template(
        "review/edit.html",
        submission=submission,
        sections=sections,
        version=version,
        language=language,
        languages=languages,
        problem=problem,
        submitted=request.form if request.method == "POST" else None,
    ), (problem.status if problem else 200)


@pages.get("/submissions/<uuid:submission_id>/files/<name>")
@login_required
def submission_file(submission_id: Any, name: str) -> Any:
    """A photo or file of a submission, to people who may read the submission; an
    encrypted submission's files are decrypted as they are read."""
    submission = service.get_submission(db.session, g.user, submission_id)
    found = files.read(
        db.session,
        submission,
        name,
        store=_store(),
        key_encryption_key=current_app.config["DIIWAAN"].key_encryption_key,
        as_received=False,
    )
    if found is not None:
        extension = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
        mimetype = IMAGE_TYPES.get(extension)
        response = found.send(
            mimetype=mimetype or mimetypes.types_map.get(extension, "application/octet-stream"),
            as_attachment=mimetype is None,
            download_name=name,
            max_age=0,
        )
        # Whatever the file holds, it is never run as a page of this site.
        response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response.headers["Cache-Control"] = "private, no-store"
        return response
    raise NotFound(_("this submission has no file %(name)s", name=name[:100]))


@pages.route("/bulk-approve", methods=["GET", "POST"])
@login_required
def bulk_approve() -> Any:
    require(g.user, "submissions.review")
    source = request.form if request.method == "POST" else request.args
    filters = service.approvable_filter(_filter_from(source))
    if request.method == "POST":
        cutoff_text = request.form.get("cutoff", "")
        try:
            cutoff = dt.datetime.fromisoformat(cutoff_text) if cutoff_text else None
        except ValueError:
            raise ValidationFailed(_("the confirmation is not valid; start again")) from None
        result = service.bulk_approve(db.session, g.user, filters, cutoff=cutoff)
        message = ngettext(
            "Approved %(num)d submission.", "Approved %(num)d submissions.", result.approved
        )
        if result.skipped:
            message += " " + ngettext(
                "%(num)d was skipped (someone else decided it meanwhile).",
                "%(num)d were skipped (someone else decided them meanwhile).",
                result.skipped,
            )
        flash(message)
        return redirect(url_for("review.queue", **filters.query_args()))
    cutoff = utcnow()
    return render_template(
        "review/bulk_approve.html",
        filters=filters,
        args=filters.query_args(),
        number=service.count_approvable(db.session, g.user, filters, cutoff),
        waiting=service.count_queue(db.session, g.user, filters),
        limit=service.BULK_LIMIT,
        cutoff=cutoff.isoformat(),
        summary=service.describe_filter(db.session, filters),
    )


# ----------------------------------------------------------------------------- API


def _api_submission(submission_id: Any) -> Submission:
    return service.get_submission(db.session, current_user(), submission_id)


@api_bp.route("/submissions")
class Queue(MethodView):
    @api_bp.arguments(ReviewQueueQuerySchema, location="query")
    @api_bp.response(200, ReviewQueuePageSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """The review queue in your districts: filter by form, district, enumerator, state
        and date; page with `after` / `before` cursors."""
        return service.queue(db.session, current_user(), service.QueueFilter(**query))


@api_bp.route("/submissions/<uuid:submission_id>")
class Review(MethodView):
    @api_bp.response(200, ReviewSchema)
    def get(self, submission_id: Any) -> Any:
        """A submission with its review state and version, decisions, comments, edits,
        pending registry changes and suspected duplicates."""
        return service.review_of(db.session, current_user(), _api_submission(submission_id))


@api_bp.route("/submissions/<uuid:submission_id>/decision")
class ReviewDecision(MethodView):
    @api_bp.arguments(ReviewDecisionSchema)
    @api_bp.response(200, ReviewDecisionResultSchema)
    def post(self, body: dict[str, Any], submission_id: Any) -> Any:
        """Set the review state: `has_issues`, `approved` (applies the registry changes)
        or `rejected` (discards them). 409 when `expected_version` is stale."""
        return service.set_review_state(
            db.session,
            current_user(),
            _api_submission(submission_id),
            body["state"],
            expected_version=body["expected_version"],
            comment=body["comment"],
        )


@api_bp.route("/submissions/<uuid:submission_id>/comments")
class Comments(MethodView):
    @api_bp.response(200, ReviewCommentSchema(many=True))
    def get(self, submission_id: Any) -> Any:
        """The submission's comment thread, oldest first."""
        return service.comments_of(db.session, _api_submission(submission_id))

    @api_bp.arguments(ReviewCommentInSchema)
    @api_bp.response(201, ReviewCommentSchema)
    def post(self, body: dict[str, Any], submission_id: Any) -> Any:
        """Add a comment (the review state stays as it is)."""
        return service.add_comment(
            db.session, current_user(), _api_submission(submission_id), body["body"]
        )


@api_bp.route("/submissions/<uuid:submission_id>/edits")
class Edits(MethodView):
    @api_bp.response(200, SubmissionEditWithDataSchema(many=True))
    def get(self, submission_id: Any) -> Any:
        """Every version of the data: 1 as received, then one per edit."""
        return service.edits_of(db.session, _api_submission(submission_id))

    @api_bp.arguments(SubmissionEditInSchema)
    @api_bp.response(201, SubmissionEditSchema)
    @api_bp.alt_response(200, schema=SubmissionEditSchema, description="nothing changed")
    def post(self, body: dict[str, Any], submission_id: Any) -> Any:
        """Correct answers: a new version of the data, state `edited`; the registry changes
        still waiting follow the corrected answers."""
        edit = service.edit_submission(
            db.session,
            current_user(),
            _api_submission(submission_id),
            body["changes"],
            expected_version=body["expected_version"],
        )
        if edit is None:
            return Response(
                '{"version": null, "changed_fields": {}}', status=200, mimetype="application/json"
            )
        return edit


@api_bp.route("/bulk-approve")
class BulkApprove(MethodView):
    @api_bp.arguments(ReviewBulkApproveSchema)
    @api_bp.response(200, ReviewBulkResultSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Approve the processed, waiting submissions a filter selects (oldest first, at
        most 1000 a call); those decided meanwhile are skipped and counted."""
        cutoff = body.pop("cutoff")
        return service.bulk_approve(
            db.session, current_user(), service.QueueFilter(**body), cutoff=cutoff
        )


@api_bp.route("/dashboard")
class DashboardItem(MethodView):
    @api_bp.response(200, ReviewDashboardSchema)
    def get(self) -> Any:
        """Counts by state, district and enumerator, submissions per day (30 days), the
        oldest waiting submission, enumerators with the most rejections."""
        user = current_user()
        require(user, "submissions.read")
        board = service.dashboard(db.session, user)
        return {
            "by_state": board.by_state,
            "by_district": board.by_district,
            "by_enumerator": board.by_enumerator,
            "most_rejected": board.most_rejected,
            "per_day": [{"day": day, "count": number} for day, number in board.per_day],
            "oldest_waiting": board.oldest_waiting,
            "open_candidates": board.open_candidates,
            "open_conflicts": board.open_conflicts,
        }
