"""Questionnaire pages for administrators (and read-only for supervisors) and the API."""

from __future__ import annotations

import io
import json
from typing import Any

from flask import (
    Blueprint,
    Response,
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

from server.accounts import service as accounts
from server.accounts.auth import current_user, login_required
from server.api import api_blueprint
from server.blobs import blob_store
from server.catalog import service
from server.catalog.schemas import (
    AssignmentSchema,
    AttachmentFilesSchema,
    FormSchema,
    FormUploadFieldsSchema,
    FormUploadFilesSchema,
    FormVersionSchema,
    KeySchema,
    RegistryModeSchema,
    UploadResultSchema,
)
from server.db import db
from server.errors import DiiwaanError, ValidationFailed
from server.openrosa import external_url

pages = Blueprint("catalog", __name__)
api_bp = api_blueprint("forms_api", __name__, "", "Questionnaires, versions, keys")


def _settings() -> Any:
    return current_app.config["DIIWAAN"]


def _store() -> Any:
    return blob_store(_settings().data_dir)


def _read_upload(upload: Any, limit: int) -> bytes:
    if upload is None or not upload.filename:
        raise ValidationFailed("choose a file to upload", {"file": ["required"]})
    data: bytes = upload.read(limit + 1)
    return data


def _upload(
    upload: Any,
    *,
    publish: bool,
    district_ids: list[int] | None,
    media: list[Any] | None = None,
) -> service.UploadResult:
    settings = _settings()
    # A file input left empty still sends a part, without a file name.
    attachments = [
        (item.filename, _read_upload(item, service.MAX_ATTACHMENT_BYTES))
        for item in media or []
        if item.filename
    ]
    return service.upload_form(
        db.session,
        g.user,
        data=_read_upload(upload, settings.max_form_bytes),
        filename=upload.filename,
        store=_store(),
        key_encryption_key=settings.key_encryption_key,
        max_bytes=settings.max_form_bytes,
        publish=publish,
        district_ids=district_ids,
        attachments=attachments,
    )


# --------------------------------------------------------------------------- pages


@pages.get("/forms")
@login_required
def forms() -> Any:
    return render_template(
        "catalog/forms.html",
        forms=service.list_forms(db.session, g.user),
        can_manage=accounts.can(g.user, "forms.manage"),
    )


@pages.route("/forms/upload", methods=["GET", "POST"])
@login_required
def upload() -> Any:
    accounts.require(g.user, "forms.manage")
    problems: Any = None
    if request.method == "POST":
        try:
            result = _upload(
                request.files.get("file"),
                publish=request.form.get("publish") == "on",
                district_ids=[int(v) for v in request.form.getlist("district_ids") if v.isdigit()],
                media=request.files.getlist("media"),
            )
        except DiiwaanError as failure:
            db.session.rollback()
            problems = {"message": failure.message, "details": failure.details}
        else:
            verb = "uploaded" if result.created else "already had"
            flash(
                f"Form {result.form.form_id}: {verb} version {result.version.version} "
                f"({result.version.state})."
            )
            return redirect(url_for("catalog.form_detail", form_id=result.form.form_id))
    return render_template(
        "catalog/upload.html",
        problems=problems,
        districts=accounts.list_districts(db.session),
    ), (problems and 400) or 200


@pages.get("/forms/<form_id>")
@login_required
def form_detail(form_id: str) -> Any:
    form = service.get_form(db.session, form_id)
    service.require_form_access(g.user, form)
    latest = form.versions[-1] if form.versions else None
    return render_template(
        "catalog/form.html",
        form=form,
        latest=latest,
        missing=service.missing_attachments(latest) if latest else [],
        dynamic=service.dynamic_attachment_names(latest) if latest else set(),
        districts=accounts.list_districts(db.session),
        can_manage=accounts.can(g.user, "forms.manage"),
    )


@pages.post("/forms/<form_id>/districts")
@login_required
def form_districts(form_id: str) -> Any:
    form = service.get_form(db.session, form_id)
    service.set_form_districts(
        db.session,
        g.user,
        form,
        [int(v) for v in request.form.getlist("district_ids") if v.isdigit()],
    )
    service.set_registry_mode(
        db.session, g.user, form, request.form.get("registry_mode", "approval")
    )
    flash("Assignment saved.")
    return redirect(url_for("catalog.form_detail", form_id=form_id))


@pages.post("/forms/<form_id>/<version>/<action>")
@login_required
def version_action(form_id: str, version: str, action: str) -> Any:
    form_version = service.get_version(db.session, form_id, version)
    if action == "publish":
        service.publish_version(db.session, g.user, form_version)
    elif action == "close":
        service.close_version(db.session, g.user, form_version)
    elif action == "attachments":
        upload_file = request.files.get("file")
        data = _read_upload(upload_file, service.MAX_ATTACHMENT_BYTES)
        service.add_attachment(
            db.session,
            g.user,
            form_version,
            filename=upload_file.filename,
            data=data,
            store=_store(),
        )
    else:
        raise ValidationFailed(f"unknown action {action!r}")
    flash(f"Version {version}: {action} done.")
    return redirect(url_for("catalog.form_detail", form_id=form_id))


@pages.get("/forms/<form_id>/<version>/source")
@login_required
def version_source(form_id: str, version: str) -> Any:
    accounts.require(g.user, "forms.manage")
    form_version = service.get_version(db.session, form_id, version)
    return send_file(
        io.BytesIO(_store().read(form_version.source_sha256)),
        download_name=form_version.source_filename,
        as_attachment=True,
    )


@pages.get("/forms/<form_id>/<version>/preview")
@login_required
def version_preview(form_id: str, version: str) -> Any:
    form_version = service.get_version(db.session, form_id, version)
    service.require_form_access(g.user, form_version.form)
    definition = service.definition_of(form_version)
    languages = definition.languages or ["default"]
    language = request.args.get("lang")
    if language not in languages:
        language = definition.settings.default_language or languages[0]
        if language not in languages:
            language = languages[0]
    return render_template(
        "catalog/preview.html",
        version=form_version,
        definition=definition,
        languages=languages,
        language=language,
    )


@pages.get("/keys")
@login_required
def keys() -> Any:
    return render_template("catalog/keys.html", keys=service.list_keys(db.session, g.user))


@pages.post("/keys/rotate")
@login_required
def keys_rotate() -> Any:
    key = service.rotate_key(db.session, g.user, _settings().key_encryption_key)
    flash(f"New key {key.fingerprint[:16]}… is used for versions uploaded from now on.")
    return redirect(url_for("catalog.keys"))


@pages.post("/users/<user_id>/collect")
@login_required
def collect_qr(user_id: str) -> Any:
    """Issue a device token for an enumerator and show the QR code ODK Collect scans."""
    import qrcode
    import qrcode.image.svg

    user = accounts.get_user(db.session, user_id)
    _token, secret = accounts.issue_token(
        db.session,
        g.user,
        user,
        kind="device",
        name=request.form.get("name", "") or "ODK Collect",
    )
    server_url = (_settings().base_url or request.host_url.rstrip("/")) + f"/key/{secret}"
    settings = service.collect_settings(server_url)
    image = qrcode.make(
        service.collect_qr_payload(settings),
        image_factory=qrcode.image.svg.SvgPathImage,
        box_size=8,
    )
    return render_template(
        "catalog/collect_qr.html",
        user=user,
        server_url=server_url,
        qr_svg=image.to_string(encoding="unicode"),
        settings_json=json.dumps(settings, indent=2),
    )


# ----------------------------------------------------------------------------- API


@api_bp.route("/forms")
class Forms(MethodView):
    @api_bp.response(200, FormSchema(many=True))
    def get(self) -> Any:
        """Forms you may see (administrators: all; others: assigned to your districts)."""
        return service.list_forms(db.session, current_user())

    @api_bp.arguments(FormUploadFilesSchema, location="files")
    @api_bp.arguments(FormUploadFieldsSchema, location="form")
    @api_bp.response(201, UploadResultSchema)
    @api_bp.alt_response(200, schema=UploadResultSchema, description="that version already exists")
    def post(self, files: dict[str, Any], fields: dict[str, Any]) -> Any:
        """Upload an XLSForm; it becomes a new version (published unless `draft`).

        Problems are answered with 400 and `details.problems`, each naming the sheet,
        row and column."""
        current_user()
        result = _upload(
            files["file"], publish=not fields["draft"], district_ids=fields["district_ids"]
        )
        body = UploadResultSchema().dump(
            {"created": result.created, "form": result.form, "version": result.version}
        )
        return Response(
            json.dumps(body), status=201 if result.created else 200, mimetype="application/json"
        )


@api_bp.route("/forms/<form_id>")
class FormItem(MethodView):
    @api_bp.response(200, FormSchema)
    def get(self, form_id: str) -> Any:
        """One form with its versions."""
        form = service.get_form(db.session, form_id)
        service.require_form_access(current_user(), form)
        return form


@api_bp.route("/forms/<form_id>/districts")
class FormDistricts(MethodView):
    @api_bp.arguments(AssignmentSchema)
    @api_bp.response(200, FormSchema)
    def put(self, body: dict[str, Any], form_id: str) -> Any:
        """Assign the form to districts (their enumerators get it)."""
        form = service.get_form(db.session, form_id)
        return service.set_form_districts(db.session, current_user(), form, body["district_ids"])


@api_bp.route("/forms/<form_id>/registry-mode")
class FormRegistryMode(MethodView):
    @api_bp.arguments(RegistryModeSchema)
    @api_bp.response(200, FormSchema)
    def put(self, body: dict[str, Any], form_id: str) -> Any:
        """When this form's registry changes apply: on approval (default) or on receipt."""
        form = service.get_form(db.session, form_id)
        return service.set_registry_mode(db.session, current_user(), form, body["registry_mode"])


@api_bp.route("/forms/<form_id>/versions/<version>/publish")
class VersionPublish(MethodView):
    @api_bp.response(200, FormVersionSchema)
    def post(self, form_id: str, version: str) -> Any:
        """Publish a draft version: devices get it in their form list."""
        form_version = service.get_version(db.session, form_id, version)
        return service.publish_version(db.session, current_user(), form_version)


@api_bp.route("/forms/<form_id>/versions/<version>/close")
class VersionClose(MethodView):
    @api_bp.response(200, FormVersionSchema)
    def post(self, form_id: str, version: str) -> Any:
        """Close a version: it accepts no more submissions."""
        form_version = service.get_version(db.session, form_id, version)
        return service.close_version(db.session, current_user(), form_version)


@api_bp.route("/forms/<form_id>/versions/<version>/definition")
class VersionDefinition(MethodView):
    @api_bp.response(200)
    def get(self, form_id: str, version: str) -> Any:
        """The form definition: questions, choices, groups, repeats, entity lists."""
        form_version = service.get_version(db.session, form_id, version)
        service.require_form_access(current_user(), form_version.form)
        return form_version.definition


@api_bp.route("/forms/<form_id>/versions/<version>/attachments")
class VersionAttachments(MethodView):
    @api_bp.arguments(AttachmentFilesSchema, location="files")
    @api_bp.response(201, FormVersionSchema)
    def post(self, files: dict[str, Any], form_id: str, version: str) -> Any:
        """Upload a media or data file the form refers to (by its file name)."""
        form_version = service.get_version(db.session, form_id, version)
        upload_file = files["file"]
        service.add_attachment(
            db.session,
            current_user(),
            form_version,
            filename=upload_file.filename,
            data=_read_upload(upload_file, service.MAX_ATTACHMENT_BYTES),
            store=_store(),
        )
        return form_version


@api_bp.route("/keys")
class Keys(MethodView):
    @api_bp.response(200, KeySchema(many=True))
    def get(self) -> Any:
        """The server's encryption keys (public parts only)."""
        return service.list_keys(db.session, current_user())


@api_bp.route("/keys/rotate")
class KeyRotate(MethodView):
    @api_bp.response(201, KeySchema)
    def post(self) -> Any:
        """Make a new key for form versions uploaded from now on."""
        return service.rotate_key(db.session, current_user(), _settings().key_encryption_key)


__all__ = ["api_bp", "external_url", "pages"]
