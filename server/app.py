"""create_app(config) — the only place the application is assembled."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, g
from flask_wtf.csrf import CSRFProtect
from werkzeug.routing import IntegerConverter
from werkzeug.wrappers import Response

from server import errors, i18n, navigation
from server.config import Settings, load_settings

csrf = CSRFProtect()


def _configure_logging(app: Flask) -> None:
    if not logging.getLogger("diiwaan").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("diiwaan")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


class RecordNumber(IntegerConverter):
    """`<int:...>` in URLs: record numbers fit a 64-bit database integer. A longer number
    names no record (404) instead of overflowing the database driver (500)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:  # noqa: A002
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'",
    )
    if g.get("user") is not None:
        headers.setdefault("Cache-Control", "no-store")
    return response


def _finish_transaction(response: Response) -> Response:
    """The request owns the transaction: commit once when it succeeded."""
    session = g.get("db_session")
    if session is not None:
        keep = session.info.pop("after_rollback", [])
        if response.status_code < 400:
            session.commit()
        else:
            session.rollback()
            if keep:
                for write in keep:
                    write(session)
                session.commit()
    return response


def create_app(config: Mapping[str, Any] | Settings | None = None) -> Flask:
    settings = config if isinstance(config, Settings) else load_settings(overrides=config)
    app = Flask(__name__)
    app.url_map.converters["int"] = RecordNumber
    _configure_logging(app)
    app.config.update(
        DIIWAAN=settings,
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        SESSION_COOKIE_NAME="diiwaan_session",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12),
        MAX_CONTENT_LENGTH=max(settings.max_submission_bytes, settings.max_form_bytes)
        + 1024 * 1024,
        WTF_CSRF_TIME_LIMIT=None,
        TESTING=bool(settings.extra.get("TESTING", False)),
    )
    from server.api import API_SETTINGS, api, register_docs_page

    app.config.update(API_SETTINGS)

    from server.accounts.auth import DeviceKeyPrefix, load_identity
    from server.accounts.service import configure_password_hashing
    from server.db import db

    db.init_app(app, settings.database_url)
    configure_password_hashing(settings.password_hash_cheap)
    csrf.init_app(app)
    api.init_app(app)
    errors.register_error_handlers(app)
    register_docs_page(app)
    navigation.init_app(app)
    i18n.init_app(app)

    from server.accounts import views as accounts_views
    from server.catalog import openrosa_views as catalog_devices
    from server.catalog import service as catalog_service
    from server.catalog import views as catalog_views
    from server.cli import register_commands
    from server.home import views as home_views
    from server.intake import openrosa_views as intake_devices
    from server.intake import sync_views as intake_sync
    from server.intake import views as intake_views
    from server.registry import integration as registry_integration
    from server.registry import views as registry_views
    from server.review import registry_views as review_registry
    from server.review import views as review_views

    for blueprint in (
        accounts_views.pages,
        home_views.pages,
        catalog_views.pages,
        intake_views.pages,
        review_views.pages,
        review_registry.pages,
    ):
        app.register_blueprint(blueprint)
    # Devices and API clients authenticate every request with a token or Basic auth,
    # never with the session cookie, so CSRF does not apply to them.
    for blueprint in (catalog_devices.devices, intake_devices.devices):
        app.register_blueprint(blueprint)
        csrf.exempt(blueprint)
    for blueprint in (
        accounts_views.api_bp,
        catalog_views.api_bp,
        intake_views.api_bp,
        registry_views.api_bp,
        intake_sync.sync_bp,
        review_views.api_bp,
    ):
        api.register_blueprint(blueprint)
        csrf.exempt(blueprint)

    registry_integration.init_app(app)
    catalog_service.configure(odk_validate=settings.odk_validate)
    app.before_request(load_identity)
    app.after_request(_finish_transaction)
    app.after_request(_security_headers)
    app.wsgi_app = DeviceKeyPrefix(app.wsgi_app)  # type: ignore[method-assign]
    register_commands(app)
    return app
