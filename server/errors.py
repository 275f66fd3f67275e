"""The exception hierarchy and its one mapping to HTTP responses.

Services raise these; `register_error_handlers` turns them (and Werkzeug's own HTTP
errors) into `{"error": {"code", "message", "details"}}` for API clients, the OpenRosa
response envelope for devices, and an error page for browsers.
"""

from __future__ import annotations

import logging
from typing import Any
from xml.sax.saxutils import escape

from flask import Flask, Response, g, jsonify, render_template, request
from sqlalchemy.exc import DataError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("diiwaan.errors")


class DiiwaanError(Exception):
    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        details: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class BadRequest(DiiwaanError):
    status = 400
    code = "bad_request"


class ValidationFailed(BadRequest):
    code = "validation_failed"


class Unauthorized(DiiwaanError):
    status = 401
    code = "unauthorized"


class Forbidden(DiiwaanError):
    status = 403
    code = "forbidden"


class NotFound(DiiwaanError):
    status = 404
    code = "not_found"


class Conflict(DiiwaanError):
    status = 409
    code = "conflict"


class PayloadTooLarge(DiiwaanError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(DiiwaanError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(DiiwaanError):
    status = 429
    code = "too_many_requests"


# Werkzeug's names for statuses we do not raise ourselves.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
    500: "internal_error",
}


def wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def openrosa_envelope(message: str, nature: str = "") -> str:
    return (
        '<OpenRosaResponse xmlns="http://openrosa.org/http/response" items="0">'
        f'<message nature="{escape(nature)}">{escape(message)}</message>'
        "</OpenRosaResponse>"
    )


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response:
    if status >= 500:
        log.error("%s %s -> %s %s", request.method, request.path, status, message)
    else:
        log.warning("%s %s -> %s %s: %s", request.method, request.path, status, code, message)
    if g.get("openrosa"):
        response = Response(openrosa_envelope(message, "error"), status=status, mimetype="text/xml")
    elif wants_json():
        response = jsonify({"error": {"code": code, "message": message, "details": details}})
        response.status_code = status
    else:
        html = render_template(
            "errors/error.html", status=status, code=code, message=message, details=details
        )
        response = Response(html, status=status, mimetype="text/html")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def handle_diiwaan_error(error: DiiwaanError) -> Response:
    return error_response(error.status, error.code, error.message, error.details, error.headers)


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    details = data.get("errors") or data.get("messages")
    message = data.get("message") or error.description or error.name
    code = _HTTP_CODES.get(status, "error")
    if isinstance(details, dict) and set(details) <= {"json", "query", "form", "files"}:
        # webargs files problems by where it found them; give the one flat
        # {field: [problems]} shape every other error has.
        flat: dict[str, Any] = {}
        for problems in details.values():
            flat.update(problems if isinstance(problems, dict) else {"_schema": problems})
        details = flat
        status, code = 400, "validation_failed"
        message = "some fields are not valid: " + ", ".join(sorted(flat))
    headers = dict(data.get("headers") or {})
    if status == 405 and error.get_headers():
        headers.update({k: v for k, v in error.get_headers() if k == "Allow"})
    return error_response(status, code, message, details, headers)


def handle_stale_data(_error: StaleDataError) -> Response:
    # Optimistic locking (version_id_col): two saves read the same version and this one
    # lost the race. The loser is told to reload; nothing was overwritten.
    return error_response(
        409, "conflict", "someone else saved this record at the same time; reload and retry"
    )


def handle_unstorable_value(error: Exception) -> Response:
    # A value in the request that the database cannot hold or compare: a number beyond 64
    # bits (SQLite's driver raises OverflowError), text with a NUL byte or longer than its
    # column (PostgreSQL's DataError). Input, not a fault of the server: 400, naming it.
    if isinstance(error, OverflowError) and "SQLite" not in str(error):
        return handle_unexpected(error)  # arithmetic gone wrong is ours, not the caller's
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0][:200]
    return error_response(
        400, "bad_request", f"a value in the request cannot be stored or compared: {reason}"
    )


def handle_unexpected(error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "an internal error occurred; it has been logged")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(DiiwaanError, handle_diiwaan_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(StaleDataError, handle_stale_data)
    app.register_error_handler(DataError, handle_unstorable_value)
    app.register_error_handler(OverflowError, handle_unstorable_value)
    app.register_error_handler(Exception, handle_unexpected)
