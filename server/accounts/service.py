"""Accounts domain logic: users, passwords, login throttling, tokens, roles, districts, audit.

Every later area calls `require`, `visible_district_ids` and `scope_to_districts` from here
so that what a person may read is decided in one place.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import hashlib
import io
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, Select, bindparam, delete, false, func, select
from sqlalchemy.orm import Session, joinedload

from server.accounts.models import (
    ROLES,
    TOKEN_KINDS,
    AuditEvent,
    District,
    Region,
    Token,
    User,
    Village,
    WebSession,
)
from server.db import as_utc, rowcount, utcnow
from server.errors import (
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)

# --------------------------------------------------------------------------- roles

PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            "users.manage",
            "districts.manage",
            "audit.read",
            "forms.manage",
            "forms.read",
            "forms.fill",
            "keys.manage",
            "submissions.read",
            "submissions.review",
            "submissions.manage",
            "registry.read",
            "registry.decide",
            "tokens.own",
        }
    ),
    "supervisor": frozenset(
        {
            "forms.read",
            "submissions.read",
            "submissions.review",
            "registry.read",
            "registry.decide",
            "tokens.own",
        }
    ),
    "enumerator": frozenset({"forms.read", "forms.fill", "registry.read", "tokens.own"}),
    "partner": frozenset({"registry.read", "tokens.own"}),
}


def can(user: User | None, permission: str) -> bool:
    return bool(user and user.active and permission in PERMISSIONS.get(user.role, frozenset()))


def require(user: User | None, permission: str) -> User:
    """Raise unless `user` is active and their role grants `permission`."""
    if user is None:
        raise Unauthorized("sign in first")
    if not can(user, permission):
        raise Forbidden(f"the {user.role} role may not do this ({permission})")
    return user


def visible_district_ids(user: User) -> set[int] | None:
    """The districts whose people `user` may see; None means every district."""
    if user.role == "admin":
        return None
    return user.district_ids


def require_district(user: User, district_id: int | None) -> None:
    allowed = visible_district_ids(user)
    if allowed is None:
        return
    if district_id is None or district_id not in allowed:
        raise Forbidden("this record belongs to a district you are not assigned to")


SelectT = TypeVar("SelectT", bound=Select[Any])


def scope_to_districts(
    statement: SelectT, district_column: ColumnElement[Any], user: User
) -> SelectT:
    """Filter a query returning people's data to the districts `user` may see."""
    allowed = visible_district_ids(user)
    if allowed is None:
        return statement
    if not allowed:
        return statement.where(false())
    return statement.where(district_column.in_(sorted(allowed)))


# ----------------------------------------------------------------------- passwords

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10


def configure_password_hashing(cheap: bool) -> None:
    """Tests use argon2's cheapest profile; deployments keep the RFC 9106 default."""
    global _hasher
    _hasher = PasswordHasher.from_parameters(profiles.CHEAPEST) if cheap else PasswordHasher()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"password must be at least {MIN_PASSWORD_LENGTH} characters",
            {"password": [f"at least {MIN_PASSWORD_LENGTH} characters"]},
        )
    return _hasher.hash(password)


def _password_matches(user: User, password: str) -> bool:
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return True


# ----------------------------------------------------------------------- audit log


def audit(
    session: Session,
    actor: User | None,
    action: str,
    target: Any = None,
    *,
    actor_name: str | None = None,
    flush: bool = True,
    **details: Any,
) -> AuditEvent:
    """Append one event to the audit log (flushed with the caller's transaction; at once,
    unless `flush` is false and the caller flushes it with its own rows)."""
    from flask import has_request_context, request

    target_type, target_id = "", ""
    if target is not None:
        target_type = getattr(target, "__tablename__", type(target).__name__)
        target_id = str(getattr(target, "id", target))
    event = AuditEvent(
        actor_id=actor.id if actor else None,
        actor_name=actor_name if actor_name is not None else (actor.username if actor else ""),
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details,
        remote_addr=(request.remote_addr or "") if has_request_context() else "",
    )
    session.add(event)
    if flush:
        session.flush()
    return event


@dataclass
class AuditFilter:
    action: str | None = None
    actor: str | None = None
    target_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    page: int = 1
    per_page: int = 50


def list_audit(session: Session, actor: User, filters: AuditFilter) -> tuple[list[AuditEvent], int]:
    require(actor, "audit.read")
    statement = select(AuditEvent)
    if filters.action:
        statement = statement.where(AuditEvent.action.startswith(filters.action))
    if filters.actor:
        statement = statement.where(AuditEvent.actor_name == filters.actor)
    if filters.target_id:
        statement = statement.where(AuditEvent.target_id == filters.target_id)
    if filters.since:
        statement = statement.where(AuditEvent.at >= filters.since)
    if filters.until:
        statement = statement.where(AuditEvent.at < filters.until)
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    per_page = max(1, min(filters.per_page, 500))
    rows = session.scalars(
        statement.order_by(AuditEvent.id.desc())
        .limit(per_page)
        .offset((max(filters.page, 1) - 1) * per_page)
    ).all()
    return list(rows), total


# --------------------------------------------------------------------------- users

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,79}$")


def _districts_by_id(session: Session, district_ids: Iterable[int]) -> list[District]:
    wanted = set(district_ids)
    if not wanted:
        return []
    found = session.scalars(select(District).where(District.id.in_(wanted))).all()
    missing = wanted - {d.id for d in found}
    if missing:
        raise ValidationFailed(
            "unknown district",
            {"district_ids": [f"no district with id {i}" for i in sorted(missing)]},
        )
    return list(found)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationFailed(
            f"unknown role {role!r}", {"role": [f"must be one of {', '.join(ROLES)}"]}
        )


def get_user(session: Session, user_id: uuid.UUID | str) -> User:
    try:
        key = user_id if isinstance(user_id, uuid.UUID) else uuid.UUID(str(user_id))
    except ValueError:
        raise NotFound(f"no user with id {user_id}") from None
    user = session.get(User, key)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


def get_user_by_username(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def list_users(session: Session, actor: User) -> list[User]:
    require(actor, "users.manage")
    return list(session.scalars(select(User).order_by(User.username)).all())


def count_admins(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == "admin", User.active.is_(True))
        )
        or 0
    )


def create_user(
    session: Session,
    actor: User | None,
    *,
    username: str,
    display_name: str,
    password: str,
    role: str,
    district_ids: Sequence[int] = (),
) -> User:
    """Create a user. `actor` None is the command line (an operator at the console)."""
    if actor is not None:
        require(actor, "users.manage")
    username = username.strip().lower()
    if not USERNAME_PATTERN.match(username):
        raise ValidationFailed(
            "usernames are 2-80 lower-case letters, digits, '.', '_' or '-'",
            {"username": ["2-80 characters: a-z 0-9 . _ -"]},
        )
    _check_role(role)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"a user named {username!r} already exists")
    user = User(
        username=username,
        display_name=display_name.strip() or username,
        password_hash=hash_password(password),
        role=role,
        districts=_districts_by_id(session, district_ids),
    )
    session.add(user)
    session.flush()
    audit(
        session,
        actor,
        "user.create",
        user,
        username=username,
        role=role,
        districts=sorted(district_ids),
    )
    return user


def update_user(
    session: Session,
    actor: User,
    user: User,
    *,
    display_name: str | None = None,
    role: str | None = None,
    active: bool | None = None,
    district_ids: Sequence[int] | None = None,
    expected_version: int | None = None,
) -> User:
    require(actor, "users.manage")
    if expected_version is not None and expected_version != user.row_version:
        raise Conflict(
            f"{user.username} was changed by someone else since you opened it; reload and retry"
        )
    changes: dict[str, Any] = {}
    if display_name is not None and display_name.strip() != user.display_name:
        user.display_name = display_name.strip()
        changes["display_name"] = user.display_name
    if role is not None and role != user.role:
        _check_role(role)
        if user.role == "admin" and user.active and count_admins(session) <= 1:
            raise Conflict("this is the last active administrator; make another admin first")
        changes["role"] = [user.role, role]
        user.role = role
    if district_ids is not None and set(district_ids) != user.district_ids:
        changes["districts"] = [sorted(user.district_ids), sorted(district_ids)]
        user.districts = _districts_by_id(session, district_ids)
    if active is not None and active != user.active:
        if not active:
            _deactivate(session, user)
        user.active = active
        changes["active"] = active
    if changes:
        user.row_version += 1
        session.flush()
        audit(session, actor, "user.update", user, **changes)
    return user


def _deactivate(session: Session, user: User) -> None:
    if user.role == "admin" and user.active and count_admins(session) <= 1:
        raise Conflict("this is the last active administrator; make another admin first")
    now = utcnow()
    for token in session.scalars(
        select(Token).where(Token.user_id == user.id, Token.revoked_at.is_(None))
    ):
        token.revoked_at = now


def deactivate_user(session: Session, actor: User | None, user: User) -> User:
    if actor is not None:
        require(actor, "users.manage")
    if user.active:
        _deactivate(session, user)
        user.active = False
        user.row_version += 1
        session.flush()
    audit(session, actor, "user.deactivate", user, username=user.username)
    return user


def set_password(session: Session, actor: User | None, user: User, password: str) -> None:
    if actor is not None and actor.id != user.id:
        require(actor, "users.manage")
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    session.flush()
    audit(session, actor, "user.set_password", user, username=user.username)


# ------------------------------------------------------------------ login throttle

_dummy_hashes: dict[int, str] = {}


def _burn_verification(password: str) -> None:
    """Verify against a dummy hash so unknown usernames take as long as known ones."""
    dummy = _dummy_hashes.setdefault(id(_hasher), _hasher.hash("not-a-real-password"))
    with contextlib.suppress(VerificationError):
        _hasher.verify(dummy, password)


def keep_even_if_rolled_back(session: Session, write: Callable[[Session], None]) -> None:
    """Do `write` now, and again in its own transaction if the request fails and rolls back.

    Failed sign-ins must be counted although the request that saw them answers with an
    error; everything else that request did is still rolled back.
    """
    write(session)
    session.info.setdefault("after_rollback", []).append(write)


def _failure_note(
    user_id: uuid.UUID | None, action: str, reason: str, actor_name: str | None = None
) -> Callable[[Session], None]:
    def write(session: Session) -> None:
        user = session.get(User, user_id) if user_id is not None else None
        audit(session, user, action, user, actor_name=actor_name, reason=reason)

    return write


def authenticate(
    session: Session,
    username: str,
    password: str,
    *,
    max_failures: int,
    lockout_minutes: int,
    record_success: bool = True,
) -> User:
    """Check a username and password, counting failures and locking out after too many.

    Devices send HTTP Basic on every request; for them (`record_success=False`) a
    success writes nothing.
    """
    now = utcnow()
    name = username.strip().lower()
    # No username holds a NUL, and PostgreSQL cannot even compare text holding one.
    user = None if "\x00" in name else session.scalar(select(User).where(User.username == name))
    if user is None:
        _burn_verification(password)
        attempted = username.replace("\x00", "")[:80]
        keep_even_if_rolled_back(
            session, _failure_note(None, "login.failed", "unknown user", actor_name=attempted)
        )
        raise Unauthorized("wrong username or password")
    user_id = user.id
    if user.locked_until is not None and as_utc(user.locked_until) > now:
        wait = int((as_utc(user.locked_until) - now).total_seconds()) + 1
        keep_even_if_rolled_back(session, _failure_note(user_id, "login.locked", "account locked"))
        raise TooManyRequests(
            f"too many failed sign-ins; try again in {max(1, wait // 60)} minute(s)",
            headers={"Retry-After": str(wait)},
        )
    if not _password_matches(user, password):
        outcome: dict[str, bool] = {}

        def count_failure(s: Session) -> None:
            failing = s.get(User, user_id)
            assert failing is not None
            failing.failed_logins += 1
            outcome["locked"] = failing.failed_logins >= max_failures
            if outcome["locked"]:
                failing.locked_until = utcnow() + dt.timedelta(minutes=lockout_minutes)
                failing.failed_logins = 0
            s.flush()
            audit(
                s,
                failing,
                "login.failed",
                failing,
                reason="wrong password",
                locked=outcome["locked"],
            )

        keep_even_if_rolled_back(session, count_failure)
        raise Unauthorized("wrong username or password")
    if not user.active:
        keep_even_if_rolled_back(session, _failure_note(user_id, "login.failed", "inactive"))
        raise Unauthorized("this account is deactivated")
    if user.failed_logins or user.locked_until is not None:
        user.failed_logins = 0
        user.locked_until = None
    if record_success:
        user.last_login_at = now
        audit(session, user, "login", user)
    session.flush()
    return user


# ---------------------------------------------------------------- browser sign-ins


def open_web_session(session: Session, user: User, lifetime: dt.timedelta) -> str:
    """Record a browser's sign-in; returns the secret its session cookie carries."""
    secret, now = _new_secret(), utcnow()
    session.add(
        WebSession(
            secret_hash=_secret_hash(secret),
            user_id=user.id,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return secret


@functools.cache
def _user_by_web_session() -> Select[User]:
    """Built once, as `_token_by_secret_hash`: every page request asks it."""
    return (
        select(User)
        .join(WebSession, WebSession.user_id == User.id)
        .where(
            WebSession.secret_hash == bindparam("secret_hash"),
            WebSession.expires_at > bindparam("now"),
        )
    )


def web_session_user(session: Session, secret: str) -> User | None:
    """The user signed in with `secret`, or None once signed out or expired (one query:
    every page request asks)."""
    return session.scalar(
        _user_by_web_session(), {"secret_hash": _secret_hash(secret), "now": utcnow()}
    )


def close_web_session(session: Session, secret: str) -> None:
    session.execute(delete(WebSession).where(WebSession.secret_hash == _secret_hash(secret)))


def web_sessions_of(session: Session, actor: User, user: User) -> list[WebSession]:
    """The browsers `user` is signed in on (those not yet expired), newest first."""
    require(actor, "users.manage")
    return list(
        session.scalars(
            select(WebSession)
            .where(WebSession.user_id == user.id, WebSession.expires_at > utcnow())
            .order_by(WebSession.created_at.desc())
        )
    )


def end_web_sessions(session: Session, actor: User, user: User) -> int:
    """Sign `user` out of every browser (a lost laptop, a shared computer): the next
    request of each goes to the sign-in page. Tokens are left as they are."""
    require(actor, "users.manage")
    result = session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    ended = rowcount(result)
    audit(session, actor, "user.sign_out_everywhere", user, sign_ins=ended)
    return ended


def purge_expired_web_sessions(session: Session) -> int:
    """Scheduler job: forget sign-ins that have expired (they already let nobody in)."""
    result = session.execute(delete(WebSession).where(WebSession.expires_at <= utcnow()))
    return rowcount(result)


# -------------------------------------------------------------------------- tokens


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(
    session: Session,
    actor: User | None,
    user: User,
    *,
    kind: str,
    name: str = "",
    lifetime: dt.timedelta | None = None,
) -> tuple[Token, str]:
    """Create a token for `user`; returns the row and the secret, shown once."""
    if kind not in TOKEN_KINDS:
        raise ValidationFailed(f"unknown token kind {kind!r}", {"kind": list(TOKEN_KINDS)})
    if actor is not None and actor.id != user.id:
        require(actor, "users.manage")
    if not user.active:
        raise Conflict(f"{user.username} is deactivated")
    if kind == "device" and user.role != "enumerator":
        raise ValidationFailed("device tokens are for enumerators' tablets")
    secret = _new_secret()
    token = Token(
        user=user,
        kind=kind,
        name=name[:200],
        secret_hash=_secret_hash(secret),
        prefix=secret[:8],
        expires_at=utcnow() + lifetime if lifetime else None,
    )
    session.add(token)
    session.flush()
    audit(session, actor or user, "token.create", token, kind=kind, user=user.username, name=name)
    return token, secret


def _new_secret() -> str:
    """A token's secret: 32 random bytes, URL-safe. Never starting with '-', which a
    command line takes for an option (`diiwaan-sync enroll URL -x…` fails: 1 secret in
    64 would)."""
    while True:
        secret = secrets.token_urlsafe(32)
        if not secret.startswith("-"):
            return secret


@functools.cache
def _token_by_secret_hash() -> Select[Token]:
    """Built once (on first use, when the mappers are ready) rather than with its cache
    key on every device request: ~0.15 ms of CPU each."""
    return (
        select(Token)
        .where(Token.secret_hash == bindparam("secret_hash"))
        .options(joinedload(Token.user))  # every device request needs both: one query
    )


def user_for_token(session: Session, secret: str, *, kind: str | None = None) -> tuple[User, Token]:
    """Resolve a presented secret to its active user, or raise Unauthorized saying why."""
    token = session.scalar(_token_by_secret_hash(), {"secret_hash": _secret_hash(secret)})
    if token is None or (kind is not None and token.kind != kind):
        raise Unauthorized("unknown token")
    now = utcnow()
    if token.revoked_at is not None:
        raise Unauthorized("this token has been revoked")
    if token.expires_at is not None and as_utc(token.expires_at) <= now:
        raise Unauthorized("this token has expired")
    if not token.user.active:
        raise Unauthorized("this account is deactivated")
    # One write a minute at most: a tablet syncing hundreds of items should not
    # turn every read into a write.
    if token.last_used_at is None or now - as_utc(token.last_used_at) > dt.timedelta(minutes=1):
        token.last_used_at = now
    return token.user, token


def get_token(session: Session, token_id: uuid.UUID | str) -> Token:
    try:
        key = token_id if isinstance(token_id, uuid.UUID) else uuid.UUID(str(token_id))
    except ValueError:
        raise NotFound(f"no token with id {token_id}") from None
    token = session.get(Token, key)
    if token is None:
        raise NotFound(f"no token with id {token_id}")
    return token


def list_tokens(session: Session, actor: User, user: User | None = None) -> list[Token]:
    statement = select(Token).order_by(Token.created_at.desc())
    if user is not None and user.id != actor.id:
        require(actor, "users.manage")
        statement = statement.where(Token.user_id == user.id)
    elif user is not None or not can(actor, "users.manage"):
        statement = statement.where(Token.user_id == actor.id)
    return list(session.scalars(statement).all())


def revoke_token(session: Session, actor: User | None, token: Token) -> Token:
    if actor is not None and actor.id != token.user_id:
        require(actor, "users.manage")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
    audit(session, actor, "token.revoke", token, kind=token.kind, user=token.user.username)
    return token


# ----------------------------------------------------------------------- locations


def list_districts(session: Session) -> list[District]:
    return list(
        session.scalars(select(District).join(District.region).order_by(Region.name, District.name))
    )


def get_district_by_code(session: Session, code: str) -> District:
    district = session.scalar(select(District).where(District.code == code))
    if district is None:
        raise NotFound(f"no district with code {code!r}")
    return district


_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
LOCATION_COLUMNS = ("region_code", "region_name", "district_code", "district_name")
OPTIONAL_COLUMNS = ("village_code", "village_name")


@dataclass
class LocationImport:
    regions: int = 0
    districts: int = 0
    villages: int = 0
    errors: list[str] = field(default_factory=list)


def import_locations(session: Session, actor: User | None, text: str) -> LocationImport:
    """Import regions, districts and villages from CSV; all rows or none.

    Columns: region_code, region_name, district_code, district_name[, village_code,
    village_name]. Existing codes are renamed in place, so the file can be re-imported.
    """
    if actor is not None:
        require(actor, "districts.manage")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in LOCATION_COLUMNS if name not in header]
    if missing:
        raise ValidationFailed(
            f"line 1: missing column(s) {', '.join(missing)}",
            {"line 1": [f"missing column {name}" for name in missing]},
        )
    errors: list[str] = []
    regions: dict[str, str] = {}
    districts: dict[str, tuple[str, str]] = {}
    villages: dict[str, tuple[str, str]] = {}
    code_pattern = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
    for line_number, raw_row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw_row.items() if k}
        if not any(row.values()):
            continue
        problems = []
        for column in LOCATION_COLUMNS:
            if not row.get(column):
                problems.append(f"{column} is empty")
        for column in ("region_code", "district_code", "village_code"):
            value = row.get(column, "")
            if value and not code_pattern.match(value):
                problems.append(f"{column} {value!r} is not a code (letters, digits, . _ -)")
        for column, value in row.items():
            # Names go to pages, forms and exports; one that a spreadsheet would run as a
            # formula (=HYPERLINK(...), +cmd|...) is refused, not stored.
            if value[:1] in ("=", "+", "-", "@") and not _PLAIN_NUMBER.fullmatch(value):
                problems.append(f"{column} {value[:40]!r} looks like a spreadsheet formula")
        if bool(row.get("village_code")) != bool(row.get("village_name")):
            problems.append("village_code and village_name go together")
        region_code, district_code = row.get("region_code", ""), row.get("district_code", "")
        if region_code and regions.get(region_code, row["region_name"]) != row.get("region_name"):
            problems.append(f"region {region_code} has two names in this file")
        if district_code in districts and districts[district_code][0] != region_code:
            problems.append(f"district {district_code} is listed under two regions")
        if problems:
            errors.extend(f"line {line_number}: {problem}" for problem in problems)
            continue
        regions[region_code] = row["region_name"]
        districts[district_code] = (region_code, row["district_name"])
        if row.get("village_code"):
            village_code = row["village_code"]
            if village_code in villages and villages[village_code][0] != district_code:
                errors.append(f"line {line_number}: village {village_code} is listed twice")
                continue
            villages[village_code] = (district_code, row["village_name"])
    if errors:
        raise ValidationFailed(
            f"{len(errors)} problem(s) in the file; nothing was imported", {"rows": errors}
        )
    if not districts:
        raise ValidationFailed("the file has no rows", {"rows": ["no data rows after the header"]})
    result = LocationImport()
    existing_regions = {r.code: r for r in session.scalars(select(Region))}
    for code, name in regions.items():
        region = existing_regions.get(code) or Region(code=code, name=name)
        region.name = name
        session.add(region)
        existing_regions[code] = region
        result.regions += 1
    session.flush()
    existing_districts = {d.code: d for d in session.scalars(select(District))}
    for code, (region_code, name) in districts.items():
        district = existing_districts.get(code) or District(code=code, name=name)
        district.name = name
        district.region = existing_regions[region_code]
        session.add(district)
        existing_districts[code] = district
        result.districts += 1
    session.flush()
    existing_villages = {v.code: v for v in session.scalars(select(Village))}
    for code, (district_code, name) in villages.items():
        village = existing_villages.get(code) or Village(code=code, name=name)
        village.name = name
        village.district = existing_districts[district_code]
        session.add(village)
        result.villages += 1
    session.flush()
    audit(
        session,
        actor,
        "districts.import",
        None,
        regions=result.regions,
        districts=result.districts,
        villages=result.villages,
    )
    return result
