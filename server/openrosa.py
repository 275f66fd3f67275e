"""What every OpenRosa endpoint shares: the headers, the response envelope, XML errors
and the Basic challenge (see ../shared/protocols/openrosa.md)."""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

from flask import Blueprint, Response, current_app, g, request, url_for

OPENROSA_VERSION = "1.0"
BASIC_CHALLENGE = 'Basic realm="Diiwaan", charset="UTF-8"'


def openrosa_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint whose errors answer in the OpenRosa envelope with OpenRosa headers."""
    blueprint = Blueprint(name, import_name)

    @blueprint.url_value_preprocessor
    def _mark(_endpoint: str | None, _values: dict[str, Any] | None) -> None:
        # Runs before the app's before_request, so even an authentication failure is
        # answered the way ODK Collect understands.
        g.openrosa = True

    @blueprint.after_request
    def _headers(response: Response) -> Response:
        response.headers["X-OpenRosa-Version"] = OPENROSA_VERSION
        response.headers["Date"] = formatdate(usegmt=True)
        # Wrong Basic credentials are refused before any view runs; Collect prompts for
        # new ones only when the 401 carries the challenge. A device token in the URL is
        # not something a person can retype, so its 401 goes without.
        if (
            response.status_code == 401
            and "WWW-Authenticate" not in response.headers
            and not request.environ.get("diiwaan.url_token")
        ):
            response.headers["WWW-Authenticate"] = BASIC_CHALLENGE
        return response

    return blueprint


def xml_response(body: str, status: int = 200, **headers: str) -> Response:
    response = Response(
        '<?xml version="1.0" encoding="UTF-8"?>\n' + body,
        status=status,
        mimetype="text/xml",
    )
    response.charset = "utf-8"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute URL for a device; keeps a /key/<token>/ prefix the request came with."""
    base = current_app.config["DIIWAAN"].base_url
    if base:
        return base + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)
