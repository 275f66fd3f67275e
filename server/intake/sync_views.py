"""Batch sync API under /api/v1/sync (docs/sync-protocol.md): JSON, device tokens, gzip
both ways, resumable uploads of many submissions per session. Parse, call sync_service,
render."""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

import marshmallow as ma
from flask import Response, current_app, g, jsonify, request

from server.accounts.auth import current_user
from server.accounts.models import User
from server.api import api_blueprint
from server.blobs import blob_store
from server.db import db, utcnow
from server.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from server.intake import sync_service
from server.intake.models import Device, SyncSession
from server.intake.sync_schemas import EnrollSchema, OpenSessionSchema, StatusQuerySchema
from server.openrosa import external_url
from sync.pack import FrameError, parse_content_range

sync_bp = api_blueprint(
    "sync_api",
    __name__,
    "/sync",
    "Batch sync for devices: resumable uploads of many submissions, forms and registry "
    "deltas (docs/sync-protocol.md)",
)

FRAMES_MEDIA_TYPE = "application/vnd.diiwaan.frames"
PACK_MEDIA_TYPE = "application/vnd.diiwaan.pack"
GZIP_RESPONSE_MIN_BYTES = 512


# ------------------------------------------------------------------------- plumbing


def _limits() -> sync_service.Limits:
    settings = current_app.config["DIIWAAN"]
    return sync_service.Limits(
        max_item_bytes=settings.max_submission_bytes, **settings.extra.get("SYNC_LIMITS", {})
    )


def _caller() -> User:
    user = current_user()
    sync_service.require_device_token(user, g.get("token"))
    return user


def _body(limit: int) -> sync_service.BodyReader:
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r}: send gzip or identity")
    # A gzip body may be a little larger than its content when that does not compress.
    allowed = limit + 64 * 1024 if encoding == "gzip" else limit
    if request.content_length is not None and request.content_length > allowed:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    return sync_service.BodyReader(request.stream, limit=limit, gzip=encoding == "gzip")


def _json(schema: ma.Schema) -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            f"send the body as application/json, not {request.mimetype or 'nothing'}"
        )
    raw = _body(_limits().max_json_bytes).read()
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"the body is not JSON: {error}") from None
    except RecursionError:
        raise BadRequest("the body is not JSON a device sends: it is nested too deeply") from None
    try:
        return schema.load(document)  # type: ignore[no-any-return]
    except ma.ValidationError as error:
        raise ValidationFailed(
            "the request does not match the expected shape", error.messages
        ) from None


def _context(device: Device) -> sync_service.SyncContext:
    settings = current_app.config["DIIWAAN"]
    return sync_service.SyncContext(
        session=db.session,
        user=g.user,
        device=device,
        store=blob_store(settings.data_dir),
        uploads=sync_service.PartialUploads(settings.data_dir),
        limits=_limits(),
    )


def _device(device_id: uuid.UUID) -> Device:
    return sync_service.device_for(db.session, _caller(), device_id)


def _session_context(session_id: uuid.UUID) -> tuple[sync_service.SyncContext, SyncSession]:
    user = _caller()
    sync_session = db.session.get(SyncSession, session_id)
    if sync_session is None or sync_session.device.user_id != user.id:
        raise NotFound(f"no upload session {session_id} for this device; open a new one")
    context = _context(sync_service.device_for(db.session, user, sync_session.device_id))
    return context, context.get_session(session_id)


def _created(body: dict[str, Any], status: int = 201) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


@sync_bp.after_request
def _compress(response: Response) -> Response:
    """2G links: gzip JSON answers for clients that accept it; no page-oriented headers."""
    response.headers.setdefault("Content-Security-Policy", "default-src 'none'")
    if (
        response.mimetype == "application/json"
        and "gzip" in (request.headers.get("Accept-Encoding") or "").lower()
        and "Content-Encoding" not in response.headers
        and not response.direct_passthrough
    ):
        data = response.get_data()
        if len(data) >= GZIP_RESPONSE_MIN_BYTES:
            response.set_data(gzip.compress(data, compresslevel=6, mtime=0))
            response.headers["Content-Encoding"] = "gzip"
        response.headers.add("Vary", "Accept-Encoding")
    return response


class _DeviceUrls:
    """Where a device downloads a form's files: the OpenRosa endpoints, with its token."""

    @staticmethod
    def form_xml(form_id: str, version: str) -> str:
        return external_url("openrosa_forms.form_xml", form_id=form_id, version=version)

    @staticmethod
    def form_media(form_id: str, version: str, filename: str) -> str:
        return external_url(
            "openrosa_forms.form_media", form_id=form_id, version=version, filename=filename
        )


# ------------------------------------------------------------------------ endpoints


@sync_bp.route("", methods=["GET"])
def info() -> Response:
    """The protocol versions and limits of this server."""
    _caller()
    return jsonify(
        protocol=sync_service.PROTOCOL,
        protocols=[sync_service.PROTOCOL],
        limits=_limits().to_dict(),
        server_time=utcnow().isoformat(),
    )


@sync_bp.route("/devices/<uuid:device_id>", methods=["PUT"])
def enroll(device_id: uuid.UUID) -> Response:
    """Enrol the device (or say hello again): app version, name, confirmed cursor."""
    user = _caller()
    body = _json(EnrollSchema())
    device, created = sync_service.enroll(db.session, user, g.token, device_id, **body)
    return _created(
        {
            "protocol": sync_service.PROTOCOL,
            "limits": _limits().to_dict(),
            "device": sync_service.describe_device(device),
        },
        201 if created else 200,
    )


@sync_bp.route("/devices/<uuid:device_id>", methods=["GET"])
def device_record(device_id: uuid.UUID) -> Response:
    """The server's record of this device."""
    return jsonify(device=sync_service.describe_device(_device(device_id)))


@sync_bp.route("/devices/<uuid:device_id>/sessions", methods=["POST"])
def open_session(device_id: uuid.UUID) -> Response:
    """List the items to upload; the server answers per item: stored, refused, or needed
    from byte N."""
    device = _device(device_id)
    body = _json(OpenSessionSchema())
    context = _context(device)
    listings = [sync_service.Listing(**item) for item in body["items"]]
    sync_session, reports = context.open_session(listings)
    return _created(
        {
            "session_id": str(sync_session.id),
            "limits": context.limits.to_dict(),
            "items": [report.to_dict() for report in reports],
        }
    )


@sync_bp.route("/sessions/<uuid:session_id>", methods=["GET"])
def session_state(session_id: uuid.UUID) -> Response:
    """Every item's state now, with the offset to resume needed items from."""
    context, sync_session = _session_context(session_id)
    reports = context.states(sync_session)
    db.session.commit()
    return jsonify(
        session_id=str(sync_session.id),
        closed=sync_session.closed_at is not None,
        items=[report.to_dict() for report in reports],
    )


@sync_bp.route("/sessions/<uuid:session_id>/frames", methods=["POST"])
def upload_frames(session_id: uuid.UUID) -> Response:
    """Ranges of one or more items, each framed `<index> <first>-<last>/<total>\\n`."""
    context, sync_session = _session_context(session_id)
    if request.mimetype != FRAMES_MEDIA_TYPE:
        raise UnsupportedMediaType(f"send frames as {FRAMES_MEDIA_TYPE}")
    reports = context.receive_frames(sync_session, _body(context.limits.max_request_bytes))
    return jsonify(session_id=str(sync_session.id), items=[report.to_dict() for report in reports])


@sync_bp.route("/sessions/<uuid:session_id>/items/<int:index>", methods=["PUT"])
def upload_item(session_id: uuid.UUID, index: int) -> Response:
    """One range of one item, with `Content-Range: bytes <first>-<last>/<total>`."""
    context, sync_session = _session_context(session_id)
    item = next((i for i in sync_session.items if i.position == index), None)
    if item is None:
        raise NotFound(f"upload session {session_id} has no item {index}")
    header = request.headers.get("Content-Range")
    if not header:
        raise BadRequest("send Content-Range: bytes <first>-<last>/<total> with the bytes")
    try:
        frame = parse_content_range(index, header)
    except FrameError as error:
        raise BadRequest(str(error)) from None
    body = _body(min(context.limits.max_request_bytes, frame.length))
    report = context.receive_range(sync_session, item, frame, body)
    return jsonify(session_id=str(sync_session.id), item=report.to_dict())


@sync_bp.route("/sessions/<uuid:session_id>/close", methods=["POST"])
def close_session(session_id: uuid.UUID) -> Response:
    """Close the session and summarise it."""
    context, sync_session = _session_context(session_id)
    return jsonify(context.close(sync_session))


@sync_bp.route("/devices/<uuid:device_id>/forms", methods=["GET"])
def forms(device_id: uuid.UUID) -> Response:
    """Forms the device should hold (`?have=form_id:md5,...` → only changes carry XForms)."""
    _device(device_id)
    have = sync_service.parse_have(request.args.get("have", ""))
    return jsonify(sync_service.forms_for(db.session, g.user, have, _DeviceUrls()))


@sync_bp.route("/devices/<uuid:device_id>/entities", methods=["GET"])
def entities(device_id: uuid.UUID) -> Response:
    """Registry changes in the device's districts after `since`, `limit` at a time."""
    device = _device(device_id)
    try:
        since = int(request.args.get("since", "0"))
        limit = int(request.args.get("limit", "500"))
    except ValueError:
        raise BadRequest("since and limit are whole numbers") from None
    if since < 0 or not 1 <= limit <= _limits().max_page:
        raise BadRequest(f"since >= 0 and 1 <= limit <= {_limits().max_page}")
    return jsonify(sync_service.entity_page(db.session, g.user, device, since=since, limit=limit))


@sync_bp.route("/devices/<uuid:device_id>/status", methods=["POST"])
def status(device_id: uuid.UUID) -> Response:
    """Review outcomes and registry conflicts of the device's acknowledged submissions."""
    _device(device_id)
    body = _json(StatusQuerySchema())
    return jsonify(sync_service.submission_status(db.session, g.user, body["instance_ids"]))
