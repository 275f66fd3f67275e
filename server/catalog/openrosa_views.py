"""OpenRosa form distribution for devices: formList, form XML, manifest, media."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from flask import Response, current_app, g, request

from server.accounts.auth import current_user
from server.blobs import blob_store
from server.catalog import service
from server.catalog.models import FormVersion
from server.db import db
from server.errors import NotFound
from server.openrosa import external_url, openrosa_blueprint, xml_response

devices = openrosa_blueprint("openrosa_forms", __name__)


def _downloadable_version(form_id: str, version: str) -> FormVersion:
    user = current_user()
    form_version = service.get_version(db.session, form_id, version)
    service.require_form_access(user, form_version.form)
    if form_version.state != "published" and not service.can(user, "forms.manage"):
        raise NotFound(f"form {form_id!r} version {version!r} is not published")
    return form_version


def _etag_response(body: bytes, md5: str, mimetype: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.set_etag(md5)
    response.headers["Cache-Control"] = "private, no-cache"
    return response.make_conditional(request)


@devices.get("/formList")
def form_list() -> Response:
    user = current_user()
    verbose = request.args.get("verbose", "").lower() == "true"
    versions = service.fillable_versions(
        db.session,
        user,
        form_id=request.args.get("formID") or None,
        all_versions=request.args.get("listAllVersions", "").lower() == "true",
    )
    items = []
    for version in versions:
        form_id = version.form.form_id
        parts = [
            f"<formID>{escape(form_id)}</formID>",
            f"<name>{escape(version.title)}</name>",
            f"<version>{escape(version.version)}</version>",
            f"<hash>md5:{version.xform_md5}</hash>",
        ]
        if verbose:
            parts.append(f"<descriptionText>{escape(version.title)}</descriptionText>")
        parts.append(
            "<downloadUrl>"
            + escape(
                external_url("openrosa_forms.form_xml", form_id=form_id, version=version.version)
            )
            + "</downloadUrl>"
        )
        if service.has_media(version):
            parts.append(
                "<manifestUrl>"
                + escape(
                    external_url(
                        "openrosa_forms.form_manifest", form_id=form_id, version=version.version
                    )
                )
                + "</manifestUrl>"
            )
        items.append("<xform>" + "".join(parts) + "</xform>")
    return xml_response(
        '<xforms xmlns="http://openrosa.org/xforms/xformsList">' + "".join(items) + "</xforms>"
    )


@devices.get("/forms/<form_id>/<version>/form.xml")
def form_xml(form_id: str, version: str) -> Response:
    form_version = _downloadable_version(form_id, version)
    return _etag_response(form_version.xform_xml, form_version.xform_md5, "text/xml")


@devices.get("/forms/<form_id>/<version>/manifest")
def form_manifest(form_id: str, version: str) -> Response:
    form_version = _downloadable_version(form_id, version)
    entries = service.manifest(db.session, form_version, g.user)
    files = []
    for entry in entries:
        kind = f" type={quoteattr(entry.type)}" if entry.type else ""
        url = external_url(
            "openrosa_forms.form_media", form_id=form_id, version=version, filename=entry.filename
        )
        files.append(
            f"<mediaFile{kind}><filename>{escape(entry.filename)}</filename>"
            f"<hash>md5:{entry.md5}</hash><downloadUrl>{escape(url)}</downloadUrl>"
            + (
                "<integrityUrl>"
                + escape(
                    external_url(
                        "openrosa_forms.form_integrity",
                        form_id=form_id,
                        version=version,
                        filename=entry.filename,
                    )
                )
                + "</integrityUrl>"
                if entry.integrity
                else ""
            )
            + "</mediaFile>"
        )
    return xml_response(
        '<manifest xmlns="http://openrosa.org/xforms/xformsManifest">'
        + "".join(files)
        + "</manifest>"
    )


@devices.get("/forms/<form_id>/<version>/media/<filename>")
def form_media(form_id: str, version: str, filename: str) -> Response:
    form_version = _downloadable_version(form_id, version)
    for entry in service.manifest(db.session, form_version, g.user):
        if entry.filename != filename:
            continue
        if entry.dynamic is not None:
            return _etag_response(entry.dynamic.render(), entry.md5, "text/csv")
        assert entry.attachment is not None
        store = blob_store(current_app.config["DIIWAAN"].data_dir)
        return _etag_response(
            store.read(entry.attachment.sha256), entry.md5, entry.attachment.content_type
        )
    raise NotFound(f"form {form_id!r} has no file {filename!r}")


@devices.get("/forms/<form_id>/<version>/integrity/<filename>")
def form_integrity(form_id: str, version: str, filename: str) -> Response:
    """Which of the device's entities still exist (`?id=a,b,c`); the registry answers."""
    form_version = _downloadable_version(form_id, version)
    ids = [i for i in request.args.get("id", "").split(",") if i][:10000]
    present = service.entity_presence(db.session, form_version, g.user, filename, ids)
    body = "".join(
        f"<entity id={quoteattr(i)}><deleted>{str(not present.get(i)).lower()}</deleted></entity>"
        for i in ids
    )
    return xml_response(f"<data><entities>{body}</entities></data>")
