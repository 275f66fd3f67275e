"""Settings read from the environment, parsed and validated once at start-up.

Every setting has a small typed parser that fails loudly: a bad value stops the start
with a message naming the variable, never a surprise hours later in the field.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A setting from the environment is missing or malformed."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def _int(variable: str, raw: str, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(variable, f"expected a whole number, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(variable, f"must be {bound}, got {value}")
    return value


def _float(variable: str, raw: str, minimum: float = 0.0, maximum: float | None = None) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(variable, f"expected a number, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(variable, f"must be between {minimum} and {maximum}, got {value}")
    return value


def _bool(variable: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(variable, f"expected true or false, got {raw!r}")


def _database_url(variable: str, raw: str) -> str:
    url = raw.strip()
    if not url.startswith(("sqlite://", "postgresql")):
        raise ConfigError(
            variable, f"only sqlite:/// and postgresql+psycopg:// URLs are supported, got {url!r}"
        )
    return url


def _secret(variable: str, raw: str, minimum: int = 16) -> str:
    if len(raw) < minimum:
        raise ConfigError(variable, f"must be at least {minimum} characters long")
    return raw


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one Diiwaan deployment."""

    data_dir: Path = Path("var")
    database_url: str = ""
    secret_key: str = ""
    key_encryption_key: str = ""
    max_submission_mb: int = 50
    max_form_mb: int = 10
    login_max_failures: int = 5
    login_lockout_minutes: int = 15
    api_token_hours: int = 24
    session_cookie_secure: bool = False
    password_hash_cheap: bool = False
    incomplete_upload_days: int = 14
    worker_lease_seconds: int = 120
    match_link_weight: float | None = None
    odk_validate: bool = True
    match_review_weight: float | None = None
    match_max_candidates: int = 30
    match_household_min_shared: int = 2
    base_url: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def max_submission_bytes(self) -> int:
        return self.max_submission_mb * 1024 * 1024

    @property
    def max_form_bytes(self) -> int:
        return self.max_form_mb * 1024 * 1024


# variable name -> (Settings field, parser)
_PARSERS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "DIIWAAN_DATA_DIR": ("data_dir", lambda _v, raw: Path(raw)),
    "DIIWAAN_DATABASE_URL": ("database_url", _database_url),
    "DIIWAAN_SECRET_KEY": ("secret_key", _secret),
    "DIIWAAN_KEY_ENCRYPTION_KEY": ("key_encryption_key", lambda v, r: _secret(v, r, 32)),
    "DIIWAAN_MAX_SUBMISSION_MB": ("max_submission_mb", lambda v, r: _int(v, r, 1, 4096)),
    "DIIWAAN_MAX_FORM_MB": ("max_form_mb", lambda v, r: _int(v, r, 1, 512)),
    "DIIWAAN_LOGIN_MAX_FAILURES": ("login_max_failures", lambda v, r: _int(v, r, 1, 1000)),
    "DIIWAAN_LOGIN_LOCKOUT_MINUTES": ("login_lockout_minutes", lambda v, r: _int(v, r, 1, 10080)),
    "DIIWAAN_API_TOKEN_HOURS": ("api_token_hours", lambda v, r: _int(v, r, 1, 24 * 366)),
    "DIIWAAN_SESSION_COOKIE_SECURE": ("session_cookie_secure", _bool),
    "DIIWAAN_PASSWORD_HASH_CHEAP": ("password_hash_cheap", _bool),
    "DIIWAAN_BASE_URL": ("base_url", lambda _v, raw: raw.rstrip("/")),
    "DIIWAAN_INCOMPLETE_UPLOAD_DAYS": ("incomplete_upload_days", lambda v, r: _int(v, r, 1, 3650)),
    "DIIWAAN_WORKER_LEASE_SECONDS": ("worker_lease_seconds", lambda v, r: _int(v, r, 5, 86400)),
    "DIIWAAN_ODK_VALIDATE": ("odk_validate", _bool),
    "DIIWAAN_MATCH_LINK_WEIGHT": ("match_link_weight", lambda v, r: _float(v, r, -100, 100)),
    "DIIWAAN_MATCH_REVIEW_WEIGHT": ("match_review_weight", lambda v, r: _float(v, r, -100, 100)),
    "DIIWAAN_MATCH_MAX_CANDIDATES": ("match_max_candidates", lambda v, r: _int(v, r, 1, 10000)),
    "DIIWAAN_MATCH_HOUSEHOLD_MIN_SHARED": (
        "match_household_min_shared",
        lambda v, r: _int(v, r, 1, 100),
    ),
}

FIELD_TO_VARIABLE = {name: variable for variable, (name, _parser) in _PARSERS.items()}


def _persistent_secret(data_dir: Path, filename: str) -> str:
    """A random secret kept under the data directory, for single-machine set-ups.

    Production deployments set the variables instead; this keeps `make run` working
    across restarts without anyone inventing a secret by hand.
    """
    path = data_dir / filename
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Several processes may start at once (gunicorn workers): each writes a private
        # file and links it into place, so exactly one value wins and nobody can read a
        # half-written secret.
        fd, staging = tempfile.mkstemp(dir=data_dir, prefix=f".{filename}.")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            with contextlib.suppress(FileExistsError):
                os.link(staging, path)
        finally:
            os.unlink(staging)
    return path.read_text().strip()


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Parse DIIWAAN_* variables (and test overrides keyed by field name) into Settings."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for variable, (name, parser) in _PARSERS.items():
        raw = environ.get(variable)
        if raw is not None and raw != "":
            values[name] = parser(variable, raw)
    known = {f.name for f in fields(Settings)}
    extra: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if key in known:
            values[key] = value
        else:
            extra[key] = value
    values["extra"] = extra
    settings = Settings(**values)
    data_dir = Path(settings.data_dir).resolve()
    updates: dict[str, Any] = {"data_dir": data_dir}
    if not settings.database_url:
        updates["database_url"] = f"sqlite:///{data_dir / 'diiwaan.db'}"
    if not settings.secret_key:
        updates["secret_key"] = _persistent_secret(data_dir, "secret_key")
    if not settings.key_encryption_key:
        updates["key_encryption_key"] = _persistent_secret(data_dir, "key_encryption_key")
    return Settings(**{**{f.name: getattr(settings, f.name) for f in fields(Settings)}, **updates})
