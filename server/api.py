"""The flask-smorest Api under /api/v1, answering errors in our one shape."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import render_template
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint as SmorestBlueprint
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


def api_blueprint(
    name: str, import_name: str, url_prefix: str, description: str
) -> SmorestBlueprint:
    return SmorestBlueprint(
        name, import_name, url_prefix=f"/api/v1{url_prefix}", description=description
    )


def register_docs_page(app: Any) -> None:
    """A server-rendered page of the OpenAPI document: no CDN scripts, works on 2G."""

    @app.get("/api/v1/docs")
    def api_docs() -> str:
        spec = api.spec.to_dict()
        return render_template("api_docs.html", spec=spec)
