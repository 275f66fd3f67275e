"""The flask-smorest Api under /api/v1, answering errors in our one shape."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import render_template
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint as SmorestBlueprint
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from server import errors


class ErrorBodySchema(ma.Schema):
    code = ma.fields.String(metadata={"description": "machine-readable error code"})
    message = ma.fields.String(metadata={"description": "what is wrong, in plain words"})
    details = ma.fields.Raw(allow_none=True, metadata={"description": "per-field problems"})


class ErrorSchema(ma.Schema):
    error = ma.fields.Nested(ErrorBodySchema)


class Api(SmorestApi):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Any:
        return errors.handle_http_exception(error)


api = Api()

API_SETTINGS = {
    "API_TITLE": "Diiwaan API",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api/v1",
    "OPENAPI_JSON_PATH": "openapi.json",
    "API_SPEC_OPTIONS": {
        "info": {
            "description": "Household registry, questionnaires and submissions. "
            "Authenticate with `POST /api/v1/auth/token`, then send "
            "`Authorization: Bearer <token>`."
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    },
}


class RequestParser(FlaskParser):
    """webargs' parser, refusing two JSON bodies it would pass on: nesting deep enough to
    exhaust Python's recursion (a 500 otherwise), and text with NUL characters, which
    PostgreSQL cannot store and SQLite would store silently."""

    def _raw_load_json(self, req: Any) -> Any:
        try:
            document = super()._raw_load_json(req)
        except RecursionError:
            raise errors.BadRequest("the JSON body is nested too deeply") from None
        where = _nul_path(document)
        if where is not None:
            raise errors.ValidationFailed(
                f"{where or 'the body'}: text may not contain NUL (\\u0000) characters",
                {where or "_schema": ["contains a NUL character"]},
            )
        return document


def _nul_path(value: Any, path: str = "") -> str | None:
    """Where in a JSON document a string holds a NUL character (None: nowhere)."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return f"{path}.{key!r}".lstrip(".")
        found = _nul_path(item, f"{path}.{key}".lstrip(".") if path else str(key))
        if found is not None:
            return found
    return None


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = RequestParser()


def api_blueprint(name: str, import_name: str, url_prefix: str, description: str) -> Blueprint:
    return Blueprint(name, import_name, url_prefix=f"/api/v1{url_prefix}", description=description)


def register_docs_page(app: Any) -> None:
    """A server-rendered page of the OpenAPI document: no CDN scripts, works on 2G."""

    @app.get("/api/v1/docs")
    def api_docs() -> str:
        spec = api.spec.to_dict()
        return render_template("api_docs.html", spec=spec)
