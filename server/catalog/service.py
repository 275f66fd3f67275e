"""Questionnaire domain logic: upload and convert XLSForms, versions and their states,
attachments, district assignment, the server's keys, and what each device may fill."""

from __future__ import annotations

import mimetypes
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import defusedxml.ElementTree as SafeET
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from forms.definition import FormDefinition
from forms.xlsform import FormConversionError, convert
from server.accounts.models import District, User
from server.accounts.service import audit, can, require, visible_district_ids
from server.blobs import BlobStore
from server.catalog.models import Form, FormAttachment, FormVersion, ServerKey
from server.db import utcnow
from server.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, ValidationFailed
from sync import crypto

# ---------------------------------------------------------------------------- keys


def active_key(session: Session, key_encryption_key: str) -> ServerKey:
    """The deployment's current key pair, created on first need."""
    key = session.scalar(
        select(ServerKey).where(ServerKey.active.is_(True)).order_by(ServerKey.created_at.desc())
    )
    return key or _new_key(session, key_encryption_key)


def _new_key(session: Session, key_encryption_key: str) -> ServerKey:
    private = crypto.generate_key_pair()
    key = ServerKey(
        fingerprint=crypto.fingerprint(private),
        public_key=crypto.public_key_base64(private),
        sealed_private_key=crypto.seal_private_key(private, key_encryption_key.encode()),
    )
    session.add(key)
    session.flush()
    return key


def rotate_key(session: Session, actor: User | None, key_encryption_key: str) -> ServerKey:
    """Retire the active key for new form versions; it stays to decrypt old submissions."""
    if actor is not None:
        require(actor, "keys.manage")
    now = utcnow()
    for old in session.scalars(select(ServerKey).where(ServerKey.active.is_(True))):
        old.active = False
        old.retired_at = now
    key = _new_key(session, key_encryption_key)
    audit(session, actor, "key.rotate", key, fingerprint=key.fingerprint)
    return key


def list_keys(session: Session, actor: User) -> list[ServerKey]:
    require(actor, "keys.manage")
    return list(session.scalars(select(ServerKey).order_by(ServerKey.created_at.desc())))


def private_key(session: Session, key_id: uuid.UUID, key_encryption_key: str) -> RSAPrivateKey:
    key = session.get(ServerKey, key_id)
    if key is None:
        raise NotFound(f"no server key {key_id}")
    return crypto.open_private_key(key.sealed_private_key, key_encryption_key.encode())


class OpenedKeys:
    """Server private keys opened under one key-encryption key, kept by id for the life
    of the process (a worker's, a web process's): opening one — unsealing, then the RSA
    key's consistency check — costs tens of milliseconds, more than what it decrypts.
    Keys are never changed in place (rotation makes a new one), so nothing goes stale."""

    def __init__(self, key_encryption_key: str) -> None:
        self.key_encryption_key = key_encryption_key
        self.opened: dict[uuid.UUID, RSAPrivateKey] = {}

    def get(self, session: Session, key_id: uuid.UUID) -> RSAPrivateKey:
        key = self.opened.get(key_id)
        if key is None:
            key = self.opened[key_id] = private_key(session, key_id, self.key_encryption_key)
        return key


# --------------------------------------------------------------------------- forms

# ODK Validate (java) checks every upload; DIIWAAN_ODK_VALIDATE=false turns it off.
_odk_validate = [True]


def configure(*, odk_validate: bool) -> None:
    _odk_validate[0] = odk_validate


@dataclass
class UploadResult:
    form: Form
    version: FormVersion
    created: bool
    warnings: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def _problem_dict(problem: Any) -> dict[str, Any]:
    return {
        "level": problem.level,
        "message": problem.message,
        "sheet": problem.sheet,
        "row": problem.row,
        "column": problem.column,
    }


def describe_problem(problem: dict[str, Any]) -> str:
    where = []
    if problem.get("sheet"):
        where.append(f"sheet {problem['sheet']}")
    if problem.get("row"):
        where.append(f"row {problem['row']}")
    if problem.get("column"):
        where.append(f"column {problem['column']}")
    return f"{', '.join(where)}: {problem['message']}" if where else str(problem["message"])


def upload_form(
    session: Session,
    actor: User | None,
    *,
    data: bytes,
    filename: str,
    store: BlobStore,
    key_encryption_key: str,
    max_bytes: int,
    publish: bool = True,
    district_ids: Sequence[int] | None = None,
    attachments: Sequence[tuple[str, bytes]] = (),
) -> UploadResult:
    """Convert an XLSForm and store it as a new form version (draft or published).

    The same version string with the same content is accepted again and stores nothing
    new (it still publishes that version if it is a draft and `publish` asks for it); with
    different content it is refused, because devices tell versions apart by that string.
    Files the form refers to may come along in `attachments`; when some are still
    missing, a version meant to be published stays a draft and says why.
    """
    if actor is not None:
        require(actor, "forms.manage")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the file is larger than {max_bytes // (1024 * 1024)} MB")
    # All or nothing, whatever the caller then does with its transaction: a caller that
    # commits other work despite the error must not commit half a version (the version
    # stored, then an unknown district or a broken attachment refused).
    with session.begin_nested():
        return _upload_form(
            session,
            actor,
            data=data,
            filename=filename,
            store=store,
            key_encryption_key=key_encryption_key,
            publish=publish,
            district_ids=district_ids,
            attachments=attachments,
        )


def _upload_form(
    session: Session,
    actor: User | None,
    *,
    data: bytes,
    filename: str,
    store: BlobStore,
    key_encryption_key: str,
    publish: bool,
    district_ids: Sequence[int] | None,
    attachments: Sequence[tuple[str, bytes]],
) -> UploadResult:
    key = active_key(session, key_encryption_key)
    try:
        converted = convert(data, filename, public_key=key.public_key, validate=_odk_validate[0])
    except FormConversionError as error:
        problems = [_problem_dict(p) for p in error.problems]
        raise ValidationFailed(
            f"the XLSForm has {len(problems)} problem(s); nothing was stored",
            {"problems": problems},
        ) from None
    if not converted.version:
        raise ValidationFailed(
            "the settings sheet has no version; add a `version` column (e.g. 2026112601)",
            {
                "problems": [
                    {
                        "level": "error",
                        "sheet": "settings",
                        "row": None,
                        "column": "version",
                        "message": "version is required",
                    }
                ]
            },
        )
    definition = converted.definition
    form = session.scalar(select(Form).where(Form.form_id == converted.form_id))
    if form is not None:
        existing = session.scalar(
            select(FormVersion).where(
                FormVersion.form_pk == form.id, FormVersion.version == converted.version
            )
        )
        if existing is not None:
            if _same_content(existing, data, definition):
                return _upload_again(session, actor, form, existing, publish, district_ids)
            raise Conflict(
                f"version {converted.version} of form {converted.form_id} already exists with "
                "different content; change the version in the settings sheet",
                {"version": [converted.version]},
            )
    else:
        form = Form(
            form_id=converted.form_id,
            title=converted.title or converted.form_id,
            created_by_id=actor.id if actor else None,
        )
        session.add(form)
    stored = store.put_bytes(data)
    encryption = definition.settings.encryption
    version = FormVersion(
        form=form,
        version=converted.version,
        title=converted.title or converted.form_id,
        state="draft",
        source_filename=_safe_filename(filename),
        source_sha256=stored.sha256,
        xform_xml=converted.xform_xml,
        xform_md5=converted.md5,
        definition=definition.to_dict(),
        warnings=[_problem_dict(w) for w in converted.warnings],
        encryption=encryption,
        key_id=key.id if encryption == "managed" else None,
        uploaded_by_id=actor.id if actor else None,
    )
    session.add(version)
    form.title = version.title
    session.flush()
    if district_ids is not None:
        set_form_districts(session, actor, form, district_ids)
    audit(
        session,
        actor,
        "form.upload",
        version,
        form_id=form.form_id,
        version=version.version,
        encryption=encryption,
    )
    for name, content in attachments:
        add_attachment(session, actor, version, filename=name, data=content, store=store)
    result = UploadResult(form, version, created=True, warnings=version.warnings)
    if publish:
        missing = missing_attachments(version)
        if missing:
            result.note = f"kept as a draft until these files are uploaded: {', '.join(missing)}"
        else:
            publish_version(session, actor, version)
    return result


def _upload_again(
    session: Session,
    actor: User | None,
    form: Form,
    existing: FormVersion,
    publish: bool,
    district_ids: Sequence[int] | None,
) -> UploadResult:
    """The same version uploaded again stores nothing, but does what was asked of it:
    `diiwaan forms publish FILE` after `--draft` publishes the draft."""
    if district_ids is not None and set(district_ids) != form.district_ids:
        set_form_districts(session, actor, form, district_ids)
    result = UploadResult(form, existing, created=False, warnings=existing.warnings)
    if publish and existing.state == "draft":
        missing = missing_attachments(existing)
        if missing:
            result.note = f"kept as a draft until these files are uploaded: {', '.join(missing)}"
        else:
            publish_version(session, actor, existing)
    return result


def _same_content(existing: FormVersion, data: bytes, definition: FormDefinition) -> bool:
    import hashlib

    if hashlib.sha256(data).hexdigest() == existing.source_sha256:
        return True
    # A re-saved spreadsheet differs in bytes but not in meaning; the key may have
    # rotated since, so compare without it.
    new = definition.to_dict()
    old = dict(existing.definition)
    for value in (new, old):
        value["settings"] = {k: v for k, v in value["settings"].items() if k != "public_key"}
    return new == old


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]")


def _safe_filename(filename: str) -> str:
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return _UNSAFE_NAME.sub("_", name)[:200] or "form.xlsx"


def publish_version(session: Session, actor: User | None, version: FormVersion) -> FormVersion:
    if actor is not None:
        require(actor, "forms.manage")
    if version.state == "closed":
        raise Conflict(f"version {version.version} is closed; upload a new version instead")
    if version.state == "published":
        return version
    missing = missing_attachments(version)
    if missing:
        raise Conflict(
            f"upload the files the form needs before publishing: {', '.join(missing)}",
            {"missing_attachments": missing},
        )
    version.state = "published"
    version.published_at = utcnow()
    session.flush()
    audit(
        session,
        actor,
        "form.publish",
        version,
        form_id=version.form.form_id,
        version=version.version,
    )
    return version


def close_version(session: Session, actor: User | None, version: FormVersion) -> FormVersion:
    """A closed version accepts no more submissions and leaves the devices' form lists."""
    if actor is not None:
        require(actor, "forms.manage")
    if version.state != "closed":
        version.state = "closed"
        version.closed_at = utcnow()
        session.flush()
        audit(
            session,
            actor,
            "form.close",
            version,
            form_id=version.form.form_id,
            version=version.version,
        )
    return version


def set_form_districts(
    session: Session, actor: User | None, form: Form, district_ids: Sequence[int]
) -> Form:
    if actor is not None:
        require(actor, "forms.manage")
    wanted = set(district_ids)
    districts = (
        list(session.scalars(select(District).where(District.id.in_(wanted)))) if wanted else []
    )
    unknown = wanted - {d.id for d in districts}
    if unknown:
        raise ValidationFailed(
            "unknown district",
            {"district_ids": [f"no district with id {i}" for i in sorted(unknown)]},
        )
    before = sorted(form.district_ids)
    form.districts = districts
    session.flush()
    audit(
        session,
        actor,
        "form.assign",
        form,
        form_id=form.form_id,
        before=before,
        after=sorted(wanted),
    )
    return form


def set_registry_mode(session: Session, actor: User, form: Form, mode: str) -> Form:
    require(actor, "forms.manage")
    if mode not in ("approval", "receipt"):
        raise ValidationFailed(
            "registry mode is 'approval' or 'receipt'", {"registry_mode": [mode]}
        )
    if form.registry_mode != mode:
        audit(session, actor, "form.registry_mode", form, before=form.registry_mode, after=mode)
        form.registry_mode = mode
        session.flush()
    return form


def get_form(session: Session, form_id: str) -> Form:
    form = session.scalar(
        select(Form).where(Form.form_id == form_id).options(selectinload(Form.versions))
    )
    if form is None:
        raise NotFound(f"no form {form_id!r}")
    return form


def get_version(session: Session, form_id: str, version: str) -> FormVersion:
    form_version = session.scalar(
        select(FormVersion)
        .join(FormVersion.form)
        .where(Form.form_id == form_id, FormVersion.version == version)
    )
    if form_version is None:
        raise NotFound(f"form {form_id!r} has no version {version!r}")
    return form_version


def definition_of(version: FormVersion) -> FormDefinition:
    return FormDefinition.from_dict(version.definition)


def list_forms(session: Session, actor: User) -> list[Form]:
    """Forms the actor may see: administrators all, others those of their districts."""
    require(actor, "forms.read")
    statement = select(Form).options(selectinload(Form.versions), selectinload(Form.districts))
    forms = list(session.scalars(statement.order_by(Form.title)))
    allowed = visible_district_ids(actor)
    if allowed is None:
        return forms
    return [form for form in forms if form.district_ids & allowed]


def require_form_access(actor: User, form: Form) -> None:
    """Raise unless the form is assigned to one of the actor's districts (admins: any)."""
    require(actor, "forms.read")
    allowed = visible_district_ids(actor)
    if allowed is not None and not (form.district_ids & allowed):
        raise Forbidden(f"form {form.form_id} is not assigned to your districts")


def fillable_versions(
    session: Session, actor: User, *, form_id: str | None = None, all_versions: bool = False
) -> list[FormVersion]:
    """Published versions the actor's device should offer: newest per form by default."""
    if not can(actor, "forms.fill"):
        raise Forbidden(f"the {actor.role} role does not fill forms")
    forms = [f for f in list_forms(session, actor) if form_id is None or f.form_id == form_id]
    result: list[FormVersion] = []
    for form in forms:
        published = [v for v in form.versions if v.state == "published"]
        published.sort(key=lambda v: v.published_at or v.uploaded_at)
        result.extend(published if all_versions else published[-1:])
    return result


# ----------------------------------------------------------------------- attachments

MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024


def missing_attachments(version: FormVersion) -> list[str]:
    """Files the form refers to that neither an upload nor a provider supplies."""
    have = {attachment.filename for attachment in version.attachments}
    dynamic = dynamic_attachment_names(version)
    return [name for name in definition_of(version).media_files if name not in have | dynamic]


def add_attachment(
    session: Session,
    actor: User | None,
    version: FormVersion,
    *,
    filename: str,
    data: bytes,
    store: BlobStore,
) -> FormAttachment:
    if actor is not None:
        require(actor, "forms.manage")
    if version.state == "closed":
        raise Conflict(f"version {version.version} is closed")
    expected = definition_of(version).media_files
    if filename not in expected:
        raise ValidationFailed(
            f"the form does not refer to a file named {filename!r}",
            {"filename": [f"expected one of: {', '.join(expected) or 'no files'}"]},
        )
    if filename in dynamic_attachment_names(version):
        raise ValidationFailed(f"{filename} is generated by the server from the registry")
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise PayloadTooLarge(f"{filename} is larger than {MAX_ATTACHMENT_BYTES // 2**20} MB")
    _check_attachment_content(filename, data)
    stored = store.put_bytes(data)
    attachment = next((a for a in version.attachments if a.filename == filename), None)
    if attachment is None:
        attachment = FormAttachment(form_version=version, filename=filename)
        session.add(attachment)
    attachment.sha256 = stored.sha256
    attachment.md5 = stored.md5
    attachment.size = stored.size
    attachment.content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    attachment.uploaded_at = utcnow()
    session.flush()
    audit(session, actor, "form.attachment", version, filename=filename, sha256=stored.sha256)
    return attachment


def _check_attachment_content(filename: str, data: bytes) -> None:
    lowered = filename.lower()
    if lowered.endswith((".csv", ".geojson", ".xml")):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ValidationFailed(
                f"{filename} is not UTF-8 text (bad byte at offset {error.start})"
            ) from None
        if lowered.endswith(".xml"):
            try:
                SafeET.fromstring(text.encode())
            except SafeET.ParseError as error:
                raise ValidationFailed(f"{filename} is not well-formed XML: {error}") from None
            except Exception as error:  # defusedxml's DTD/entity refusals
                raise ValidationFailed(f"{filename} is refused: {error}") from None


# ------------------------------------------------------ dynamic attachments (registry)


@dataclass(frozen=True)
class DynamicAttachment:
    """A file generated per device, e.g. the registry's households.csv for its districts.

    `md5` must change exactly when `render()`'s bytes do, so Collect skips unchanged lists.
    """

    filename: str
    md5: str
    render: Callable[[], bytes]
    type: str | None = None  # "entityList" for ODK entity lists
    integrity: bool = False


class AttachmentProvider(Protocol):
    def names(self, version: FormVersion) -> set[str]: ...

    def files(
        self, session: Session, version: FormVersion, user: User
    ) -> list[DynamicAttachment]: ...

    def presence(
        self, session: Session, version: FormVersion, user: User, filename: str, ids: list[str]
    ) -> dict[str, bool]: ...


_providers: list[AttachmentProvider] = []


def register_attachment_provider(provider: AttachmentProvider) -> None:
    if provider not in _providers:
        _providers.append(provider)


def dynamic_attachment_names(version: FormVersion) -> set[str]:
    names: set[str] = set()
    for provider in _providers:
        names |= provider.names(version)
    return names


@dataclass(frozen=True)
class ManifestEntry:
    filename: str
    md5: str
    type: str | None = None
    integrity: bool = False
    attachment: FormAttachment | None = None
    dynamic: DynamicAttachment | None = None


def manifest(session: Session, version: FormVersion, user: User) -> list[ManifestEntry]:
    dynamic = {
        item.filename: item
        for provider in _providers
        for item in provider.files(session, version, user)
    }
    entries = [
        ManifestEntry(a.filename, a.md5, attachment=a)
        for a in version.attachments
        if a.filename not in dynamic
    ]
    entries.extend(
        ManifestEntry(d.filename, d.md5, type=d.type, integrity=d.integrity, dynamic=d)
        for d in dynamic.values()
    )
    return sorted(entries, key=lambda e: e.filename)


def entity_presence(
    session: Session, version: FormVersion, user: User, filename: str, ids: list[str]
) -> dict[str, bool]:
    """For an entity list's integrity URL: which of `ids` still exist for this device."""
    for provider in _providers:
        if filename in provider.names(version):
            return provider.presence(session, version, user, filename, ids)
    raise NotFound(f"{filename} is not an entity list of this form")


def has_media(version: FormVersion) -> bool:
    """Whether the form list should give this version a manifest URL."""
    return bool(
        definition_of(version).media_files
        or version.attachments
        or dynamic_attachment_names(version)
    )


def collect_settings(server_url: str, *, project_name: str = "Diiwaan") -> dict[str, Any]:
    """ODK Collect's project settings for QR provisioning: the server URL carries the
    device token in its path, so the tablet needs no username or password."""
    return {
        "general": {
            "server_url": server_url,
            "username": "",
            "password": "",
            "form_update_mode": "match_exactly",
            "periodic_form_updates_check": "every_one_hour",
            "autosend": "wifi_and_cellular",
            "delete_send": False,
        },
        "admin": {},
        "project": {"name": project_name, "icon": "D", "color": "#0b6e4f"},
    }


def collect_qr_payload(settings: dict[str, Any]) -> str:
    """Collect reads its QR code as zlib-deflated JSON, base64-encoded."""
    import base64
    import json
    import zlib

    return base64.b64encode(zlib.compress(json.dumps(settings).encode())).decode()
