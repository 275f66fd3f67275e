"""Accounts pages (login, users, districts, audit log) and their JSON API."""

from __future__ import annotations

import datetime as dt
from typing import Any

import marshmallow as ma
from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.views import MethodView

from server.accounts import service
from server.accounts.auth import (
    current_user,
    end_session,
    login_required,
    safe_next,
    session_fingerprint,
    start_session,
)
from server.accounts.models import ROLES
from server.accounts.schemas import (
    AuditPageSchema,
    AuditQuerySchema,
    DeviceTokenRequestSchema,
    DistrictSchema,
    IssuedTokenSchema,
    TokenRequestSchema,
    TokenSchema,
    UserCreateSchema,
    UserSchema,
    UserUpdateSchema,
)
from server.api import api_blueprint
from server.db import db
from server.errors import DiiwaanError, TooManyRequests, Unauthorized, ValidationFailed

pages = Blueprint("accounts", __name__, template_folder="../templates")
api_bp = api_blueprint("accounts_api", __name__, "", "Authentication, users, districts, audit log")


def _settings() -> Any:
    return current_app.config["DIIWAAN"]


def _load(schema: ma.Schema, data: Any) -> dict[str, Any]:
    try:
        return schema.load(data)  # type: ignore[no-any-return]
    except ma.ValidationError as error:
        raise ValidationFailed("some fields are not valid", error.messages) from None


# --------------------------------------------------------------------------- pages


@pages.route("/login", methods=["GET", "POST"])
def login() -> Any:
    next_url = safe_next(request.values.get("next"))
    if g.get("user") is not None and request.method == "GET":
        return redirect(next_url)
    error, status, headers = None, 200, {}
    if request.method == "POST":
        settings = _settings()
        try:
            user = service.authenticate(
                db.session,
                request.form.get("username", ""),
                request.form.get("password", ""),
                max_failures=settings.login_max_failures,
                lockout_minutes=settings.login_lockout_minutes,
            )
        except (Unauthorized, TooManyRequests) as failure:
            error, status, headers = failure.message, failure.status, failure.headers
        else:
            start_session(user)
            return redirect(next_url)
    # After a failure the username stays filled in; only the password is typed again.
    username = request.form.get("username", "") if request.method == "POST" else ""
    return (
        render_template("accounts/login.html", error=error, next=next_url, username=username),
        status,
        headers,
    )


@pages.post("/logout")
def logout() -> Any:
    user = g.get("user")
    if user is not None:
        service.audit(db.session, user, "logout", user)
    end_session()
    return redirect(url_for("accounts.login"))


def _user_form_values(form: Any) -> dict[str, Any]:
    return {
        "username": form.get("username", ""),
        "display_name": form.get("display_name", ""),
        "role": form.get("role", ""),
        "password": form.get("password", ""),
        "district_ids": [int(v) for v in form.getlist("district_ids") if v.isdigit()],
    }


@pages.get("/users")
@login_required
def users() -> Any:
    return render_template("accounts/users.html", users=service.list_users(db.session, g.user))


@pages.route("/users/new", methods=["GET", "POST"])
@login_required
def user_new() -> Any:
    service.require(g.user, "users.manage")
    values: dict[str, Any] = {"role": "enumerator", "district_ids": []}
    problems: Any = None
    if request.method == "POST":
        values = _user_form_values(request.form)
        try:
            user = service.create_user(db.session, g.user, **_load(UserCreateSchema(), values))
        except DiiwaanError as failure:
            problems = {"message": failure.message, "details": failure.details}
        else:
            flash(f"User {user.username} created.")
            return redirect(url_for("accounts.user_edit", user_id=user.id))
    return render_template(
        "accounts/user_form.html",
        user=None,
        values=values,
        roles=ROLES,
        districts=service.list_districts(db.session),
        problems=problems,
    ), (400 if problems else 200)


@pages.route("/users/<user_id>", methods=["GET", "POST"])
@login_required
def user_edit(user_id: str) -> Any:
    service.require(g.user, "users.manage")
    user = service.get_user(db.session, user_id)
    problems: Any = None
    if request.method == "POST":
        values = _user_form_values(request.form)
        try:
            service.update_user(
                db.session,
                g.user,
                user,
                display_name=values["display_name"],
                role=values["role"] or None,
                active=request.form.get("active") == "on",
                district_ids=values["district_ids"],
                expected_version=int(request.form.get("row_version", "0") or 0),
            )
            if values["password"]:
                service.set_password(db.session, g.user, user, values["password"])
                if user.id == g.user.id:
                    # A new password signs every other browser out; this one stays in.
                    session["fp"] = session_fingerprint(user)
        except DiiwaanError as failure:
            db.session.rollback()
            user = service.get_user(db.session, user_id)
            problems = {"message": failure.message, "details": failure.details}
        else:
            flash(f"Saved {user.username}.")
            return redirect(url_for("accounts.user_edit", user_id=user.id))
    return render_template(
        "accounts/user_form.html",
        user=user,
        values={
            "display_name": user.display_name,
            "role": user.role,
            "district_ids": sorted(user.district_ids),
        },
        roles=ROLES,
        districts=service.list_districts(db.session),
        problems=problems,
        tokens=service.list_tokens(db.session, g.user, user),
        new_token=session.pop("new_token", None),
        sign_ins=service.web_sessions_of(db.session, g.user, user),
    ), (400 if problems else 200)


@pages.post("/users/<user_id>/sign-out")
@login_required
def user_sign_out(user_id: str) -> Any:
    user = service.get_user(db.session, user_id)
    ended = service.end_web_sessions(db.session, g.user, user)
    flash(f"Signed {user.username} out of {ended} browser(s).")
    return redirect(url_for("accounts.user_edit", user_id=user.id))


@pages.post("/users/<user_id>/tokens")
@login_required
def user_token_new(user_id: str) -> Any:
    user = service.get_user(db.session, user_id)
    kind = "device" if user.role == "enumerator" else "api"
    token, secret = service.issue_token(
        db.session,
        g.user,
        user,
        kind=kind,
        name=request.form.get("name", "")[:200],
        lifetime=None if kind == "device" else dt.timedelta(hours=_settings().api_token_hours),
    )
    # Shown once on the next page and never stored in the clear.
    session["new_token"] = {"id": str(token.id), "secret": secret, "kind": kind}
    return redirect(url_for("accounts.user_edit", user_id=user.id))


@pages.post("/tokens/<token_id>/revoke")
@login_required
def token_revoke(token_id: str) -> Any:
    token = service.get_token(db.session, token_id)
    service.revoke_token(db.session, g.user, token)
    flash("Token revoked.")
    return redirect(url_for("accounts.user_edit", user_id=token.user_id))


@pages.route("/districts", methods=["GET", "POST"])
@login_required
def districts() -> Any:
    problems: Any = None
    if request.method == "POST":
        service.require(g.user, "districts.manage")
        upload = request.files.get("file")
        try:
            if upload is None or not upload.filename:
                raise ValidationFailed("choose a CSV file to import")
            text = upload.read(5 * 1024 * 1024 + 1)
            if len(text) > 5 * 1024 * 1024:
                raise ValidationFailed("the file is larger than 5 MB")
            try:
                decoded = text.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValidationFailed(f"the file is not UTF-8 text (byte {error.start})") from None
            result = service.import_locations(db.session, g.user, decoded)
        except DiiwaanError as failure:
            problems = {"message": failure.message, "details": failure.details}
        else:
            flash(
                f"Imported {result.regions} regions, {result.districts} districts, "
                f"{result.villages} villages."
            )
            return redirect(url_for("accounts.districts"))
    return render_template(
        "accounts/districts.html",
        districts=service.list_districts(db.session),
        problems=problems,
        can_manage=service.can(g.user, "districts.manage"),
    ), (400 if problems else 200)


@pages.get("/audit")
@login_required
def audit_log() -> Any:
    query = _load(AuditQuerySchema(), {k: v for k, v in request.args.items() if v})
    events, total = service.list_audit(db.session, g.user, service.AuditFilter(**query))
    return render_template(
        "accounts/audit.html",
        events=events,
        total=total,
        query=query,
        pages=max(1, -(-total // query["per_page"])),
    )


# ----------------------------------------------------------------------------- API


@api_bp.route("/auth/token")
class AuthToken(MethodView):
    @api_bp.arguments(TokenRequestSchema)
    @api_bp.response(201, IssuedTokenSchema)
    @api_bp.doc(security=[])
    def post(self, body: dict[str, Any]) -> Any:
        """Exchange a username and password for an API token."""
        settings = _settings()
        user = service.authenticate(
            db.session,
            body["username"],
            body["password"],
            max_failures=settings.login_max_failures,
            lockout_minutes=settings.login_lockout_minutes,
        )
        token, secret = service.issue_token(
            db.session,
            user,
            user,
            kind="api",
            name=body["name"] or "api",
            lifetime=dt.timedelta(hours=body["hours"] or settings.api_token_hours),
        )
        token.token = secret  # type: ignore[attr-defined]
        return token

    @api_bp.response(204)
    def delete(self) -> None:
        """Revoke the token this request was made with."""
        user = current_user()
        token = g.get("token")
        if token is None:
            raise ValidationFailed("this request was not made with a token")
        service.revoke_token(db.session, user, token)


@api_bp.route("/tokens")
class Tokens(MethodView):
    @api_bp.response(200, TokenSchema(many=True))
    def get(self) -> Any:
        """Your tokens (administrators: everyone's)."""
        return service.list_tokens(db.session, current_user())

    @api_bp.arguments(DeviceTokenRequestSchema)
    @api_bp.response(201, IssuedTokenSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Issue a device token (enumerator's tablet) or API token for a user."""
        actor = current_user()
        user = service.get_user(db.session, body["user_id"])
        token, secret = service.issue_token(
            db.session,
            actor,
            user,
            kind=body["kind"],
            name=body["name"],
            lifetime=dt.timedelta(hours=body["hours"]) if body["hours"] else None,
        )
        token.token = secret  # type: ignore[attr-defined]
        return token


@api_bp.route("/tokens/<uuid:token_id>")
class TokenItem(MethodView):
    @api_bp.response(200, TokenSchema)
    def delete(self, token_id: Any) -> Any:
        """Revoke a token; it stops working at once."""
        return service.revoke_token(
            db.session, current_user(), service.get_token(db.session, token_id)
        )


@api_bp.route("/users")
class Users(MethodView):
    @api_bp.response(200, UserSchema(many=True))
    def get(self) -> Any:
        """All users (administrators)."""
        return [_user_out(u) for u in service.list_users(db.session, current_user())]

    @api_bp.arguments(UserCreateSchema)
    @api_bp.response(201, UserSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Create a user."""
        return _user_out(service.create_user(db.session, current_user(), **body))


@api_bp.route("/users/<uuid:user_id>")
class UserItem(MethodView):
    @api_bp.response(200, UserSchema)
    def get(self, user_id: Any) -> Any:
        """One user."""
        service.require(current_user(), "users.manage")
        return _user_out(service.get_user(db.session, user_id))

    @api_bp.arguments(UserUpdateSchema)
    @api_bp.response(200, UserSchema)
    def patch(self, body: dict[str, Any], user_id: Any) -> Any:
        """Change a user's name, role, districts or active flag, or set a password."""
        actor = current_user()
        user = service.get_user(db.session, user_id)
        password = body.pop("password", None)
        expected = body.pop("row_version", None)
        service.update_user(db.session, actor, user, expected_version=expected, **body)
        if password:
            service.set_password(db.session, actor, user, password)
        return _user_out(user)


def _user_out(user: Any) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "active": user.active,
        "district_ids": sorted(user.district_ids),
        "row_version": user.row_version,
        "created_at": user.created_at,
        "last_login_at": user.last_login_at,
    }


@api_bp.route("/districts")
class Districts(MethodView):
    @api_bp.response(200, DistrictSchema(many=True))
    def get(self) -> Any:
        """Regions and districts (any signed-in user)."""
        current_user()
        return service.list_districts(db.session)


@api_bp.route("/audit")
class Audit(MethodView):
    @api_bp.arguments(AuditQuerySchema, location="query")
    @api_bp.response(200, AuditPageSchema)
    def get(self, query: dict[str, Any]) -> Any:
        """The audit log, newest first (administrators)."""
        events, total = service.list_audit(db.session, current_user(), service.AuditFilter(**query))
        return {
            "total": total,
            "page": query["page"],
            "per_page": query["per_page"],
            "events": events,
        }
