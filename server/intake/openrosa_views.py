"""OpenRosa submission endpoint: HEAD/GET /submission and POST /submission."""

from __future__ import annotations

import logging

from flask import Response, current_app, request

from server.accounts.auth import current_user
from server.blobs import blob_store
from server.db import db
from server.errors import BadRequest, PayloadTooLarge, openrosa_envelope
from server.intake import multipart, receiving, service
from server.openrosa import openrosa_blueprint, xml_response

log = logging.getLogger("diiwaan.intake")
devices = openrosa_blueprint("openrosa_submissions", __name__)


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
    body = multipart.read_submission_body(
        request.stream,
        request.content_type or "",
        store=blob_store(current_app.config["DIIWAAN"].data_dir),
        limit=limit,
    )
    return service.IncomingSubmission(
        xml=body.xml,
        xml_blob=body.xml_blob,
        files=[service.IncomingFile(f.name, f.blob, f.content_type) for f in body.files],
        incomplete=body.fields.get("*isIncomplete*", "").strip().lower() == "yes",
        device_id=request.args.get("deviceID") or request.headers.get("X-OpenRosa-Device-Id"),
    )


@devices.post("/submission")
def submission_post() -> Response:
    current_user()
    limit = current_app.config["DIIWAAN"].max_submission_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the submission is larger than {limit} bytes")
    # The body may take minutes to arrive over 2G: hold no transaction meanwhile. On
    # SQLite, authenticating began one that holds the write lock (BEGIN IMMEDIATE), and
    # every other device would wait for this upload, then fail with "database is locked".
    db.session.commit()
    decision = receiving.receive_and_commit(db.session, current_user(), read_incoming(limit))
    if not decision.stored:
        log.warning("submission refused: %s (%s)", decision.outcome.value, decision.message)
    nature = "" if decision.stored else "error"
    return xml_response(openrosa_envelope(decision.message, nature), status=decision.status)
