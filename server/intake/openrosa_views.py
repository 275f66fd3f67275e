"""OpenRosa submission endpoint: HEAD/GET /submission and POST /submission."""

from __future__ import annotations

import logging

from flask import Response, current_app, request
from sqlalchemy.exc import IntegrityError

from server.accounts.auth import current_user
from server.blobs import BlobTooLarge, blob_store
from server.db import db
from server.errors import BadRequest, PayloadTooLarge, openrosa_envelope
from server.intake import service
from server.openrosa import openrosa_blueprint, xml_response

log = logging.getLogger("diiwaan.intake")
devices = openrosa_blueprint("openrosa_submissions", __name__)

MAX_XML_BYTES = 10 * 1024 * 1024


@devices.route("/submission", methods=["HEAD", "GET"])
def submission_head() -> Response:
    current_user()
    response = Response(status=204)
    response.headers["X-OpenRosa-Accept-Content-Length"] = str(
        current_app.config["DIIWAAN"].max_submission_bytes
    )
    return response


def read_incoming(limit: int) -> service.IncomingSubmission:
    """Stream every part of the multipart body into the blob store (never all in memory)."""
    if request.mimetype != "multipart/form-data":
        raise BadRequest(
            f"a submission is multipart/form-data with an xml_submission_file part, "
            f"not {request.mimetype or 'an empty body'}"
        )
    request.max_content_length = limit
    store = blob_store(current_app.config["DIIWAAN"].data_dir)
    xml_part = request.files.get("xml_submission_file")
    if xml_part is None:
        raise BadRequest("the body has no xml_submission_file part")
    xml = xml_part.read(MAX_XML_BYTES + 1)
    if len(xml) > MAX_XML_BYTES:
        raise PayloadTooLarge(f"xml_submission_file is larger than {MAX_XML_BYTES} bytes")
    incoming = service.IncomingSubmission(
        xml=xml,
        xml_blob=store.put_bytes(xml),
        incomplete=request.form.get("*isIncomplete*", "").strip().lower() == "yes",
        device_id=request.args.get("deviceID") or request.headers.get("X-OpenRosa-Device-Id"),
    )
    for part_name, part in request.files.items(multi=True):
        if part_name == "xml_submission_file":
            continue
        name = part.filename or part_name
        if not service.is_safe_attachment_name(name):
            raise BadRequest(f"attachment name {name[:80]!r} is not a plain file name")
        try:
            blob = store.put_stream(part.stream, limit=limit)
        except BlobTooLarge:
            raise PayloadTooLarge(f"attachment {name!r} is larger than {limit} bytes") from None
        incoming.files.append(service.IncomingFile(name, blob, part.mimetype))
    return incoming


def receive_and_commit(incoming: service.IncomingSubmission) -> service.Decision:
    """Decide and store; two retries racing on one instance ID store exactly one."""
    user = current_user()
    session = db.session
    for attempt in range(3):
        decision = service.receive(session, user, incoming)
        try:
            if decision.stored:
                session.commit()
            else:
                session.rollback()
            return decision
        except IntegrityError:
            session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@devices.post("/submission")
def submission_post() -> Response:
    current_user()
    limit = current_app.config["DIIWAAN"].max_submission_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the submission is larger than {limit} bytes")
    decision = receive_and_commit(read_incoming(limit))
    if not decision.stored:
        log.warning("submission refused: %s (%s)", decision.outcome.value, decision.message)
    nature = "" if decision.stored else "error"
    return xml_response(openrosa_envelope(decision.message, nature), status=decision.status)
