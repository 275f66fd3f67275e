"""Who is calling: session cookie (pages), Bearer token (API, devices), HTTP Basic
(OpenRosa devices) or a device token in the URL prefix /key/<token>/ (QR-provisioned
ODK Collect). The result is `g.user`; what that user may do is decided in the services.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, redirect, request, session, url_for
from werkzeug.wrappers import Response

from server.accounts import service
from server.accounts.models import User
from server.db import db
from server.errors import Unauthorized

F = TypeVar("F", bound=Callable[..., Any])

_KEY_PREFIX = re.compile(r"^/key/([A-Za-z0-9_-]{16,128})(/.*)?$")


class DeviceKeyPrefix:
    """WSGI middleware: `/key/<token>/formList` is served as `/formList` for that device.

    The token moves from the path into the environ and into SCRIPT_NAME, so every URL the
    app builds for the device (download URLs, manifests) keeps the prefix, as ODK Collect
    expects after QR provisioning.
    """

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        match = _KEY_PREFIX.match(environ.get("PATH_INFO", ""))
        if match:
            token, rest = match.group(1), match.group(2) or "/"
            environ["diiwaan.url_token"] = token
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + f"/key/{token}"
            environ["PATH_INFO"] = rest
        return self.wsgi_app(environ, start_response)


def session_fingerprint(user: User) -> str:
    """Changes when the password does, which signs the user out of every browser."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def start_session(user: User) -> None:
    # A fresh session on every sign-in: nothing chosen before login survives it.
    session.clear()
    session["sid"] = service.open_web_session(
        db.session, user, current_app.permanent_session_lifetime
    )
    session["fp"] = session_fingerprint(user)
    session.permanent = True


def end_session() -> None:
    """Sign this browser out: its sign-in is forgotten on the server too, so the cookie
    stops working wherever a copy of it is."""
    if isinstance(session.get("sid"), str):
        service.close_web_session(db.session, session["sid"])
    session.clear()


def _basic_credentials() -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except ValueError:
        # binascii.Error, UnicodeDecodeError, and the ValueError b64decode raises for a
        # header carrying non-ASCII characters: all a malformed header, none a 500.
        raise Unauthorized("malformed Basic authorization header") from None
    username, _, password = decoded.partition(":")
    return username, password


def load_identity() -> None:
    """before_request: set g.user (or None) and g.auth_method."""
    g.user = None
    g.auth_method = None
    url_token = request.environ.get("diiwaan.url_token")
    header = request.headers.get("Authorization", "")
    sess = db.session
    if url_token:
        g.user, g.token = service.user_for_token(sess, url_token, kind="device")
        g.auth_method = "url_token"
    elif header.lower().startswith("bearer "):
        g.user, g.token = service.user_for_token(sess, header[7:].strip())
        g.auth_method = "token"
    elif (credentials := _basic_credentials()) is not None:
        settings = current_app.config["DIIWAAN"]
        g.user = service.authenticate(
            sess,
            credentials[0],
            credentials[1],
            max_failures=settings.login_max_failures,
            lockout_minutes=settings.login_lockout_minutes,
            record_success=False,
        )
        g.auth_method = "basic"
    elif "sid" in session and _session_cookie_honoured():
        secret = session["sid"]
        user = service.web_session_user(sess, secret) if isinstance(secret, str) else None
        if user is None or not user.active or session.get("fp") != session_fingerprint(user):
            session.clear()
        else:
            g.user = user
            g.auth_method = "session"


def _session_cookie_honoured() -> bool:
    # The API is CSRF-exempt, so a browser's cookie must not work there; its documentation
    # page is an ordinary read-only page that shows the signed-in header like any other.
    return not request.path.startswith("/api/") or request.endpoint == "api_docs"


def current_user() -> User:
    """The signed-in user, or 401 (with a Basic challenge for devices)."""
    user: User | None = g.get("user")
    if user is None:
        raise Unauthorized(
            "authentication required",
            headers={"WWW-Authenticate": 'Basic realm="Diiwaan", charset="UTF-8"'}
            if g.get("openrosa")
            else {},
        )
    return user


def login_required(view: F) -> F:
    """Pages: send anonymous visitors to the login page and back afterwards."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("user") is None:
            return redirect(url_for("accounts.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login (no open redirect).

    Browsers drop tabs and newlines from URLs, so `/<TAB>/evil.example` would become
    `//evil.example`; any whitespace or control character disqualifies the target.
    """
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in target)
    ):
        return target
    return url_for("home.index")


__all__ = [
    "DeviceKeyPrefix",
    "Response",
    "current_user",
    "end_session",
    "load_identity",
    "login_required",
    "safe_next",
    "start_session",
]
