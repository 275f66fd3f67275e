"""Reading submission XML that arrives from outside: safely, then typed by the form.

`read_envelope()` is what intake needs before storing a submission: form ID, version,
instance ID, edits (deprecatedID) and, for encrypted submissions, the manifest of
encrypted files. `parse_instance()` is what the worker needs after decryption: the
answers typed by the form definition, the attachments named, and the ODK Entities
actions (create/update households and members) the submission asks for.

All parsing goes through defusedxml with document type declarations refused and bounds
on size, nesting depth and element count. Errors raise `InstanceError`; a value that does
not fit its question's type is not an error but a problem recorded on the result.
"""

from __future__ import annotations

import math
import re
import sys
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml.ElementTree import DefusedXMLParser

from forms.definition import ROOT_PATH, FormDefinition, Group, Node, Question, Repeat

MAX_XML_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 64
MAX_ELEMENTS = 500_000

JSONValue = Any  # str | int | float | bool | None | list | dict, as json.dumps accepts


class InstanceError(ValueError):
    """The submission XML cannot be read; the message says what is wrong with it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------------------------------
# Safe XML


class _BoundedParser(DefusedXMLParser):
    """defusedxml's parser, refusing documents nested or sized beyond the bounds.

    Its element handlers are replaced by leaner ones that hand each element straight to
    the C tree builder: the pure-Python parser defusedxml needs (for its DTD and entity
    handlers) otherwise adds two Python calls per element, and reading XML was a fifth
    of the worker's time per submission."""

    def __init__(self, max_depth: int, max_elements: int) -> None:
        super().__init__(
            target=TreeBuilder(), forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
        self._max_depth = max_depth
        self._max_elements = max_elements
        self._depth = 0
        self._elements = 0

    def _start(self, tag: str, attr_list: list[str]) -> Element:
        self._depth += 1
        self._elements += 1
        if self._depth > self._max_depth:
            raise InstanceError(
                f"submission XML nests elements more than {self._max_depth} levels deep"
            )
        if self._elements > self._max_elements:
            raise InstanceError(f"submission XML has more than {self._max_elements:,} elements")
        # expat names namespaced elements "uri}name"; ElementTree's form is "{uri}name".
        names = self._names
        name = names.get(tag)
        if name is None:
            name = names[tag] = "{" + tag if "}" in tag else tag
        attributes = {}
        for i in range(0, len(attr_list), 2):
            key = attr_list[i]
            fixed = names.get(key)
            if fixed is None:
                fixed = names[key] = "{" + key if "}" in key else key
            attributes[fixed] = attr_list[i + 1]
        return self.target.start(name, attributes)

    def _end(self, tag: str) -> Element:
        self._depth -= 1
        return self.target.end(self._names[tag])


def parse_xml(
    xml: bytes,
    *,
    max_bytes: int = MAX_XML_BYTES,
    max_depth: int = MAX_DEPTH,
    max_elements: int = MAX_ELEMENTS,
) -> Element:
    """Parse untrusted XML into an element tree, or raise `InstanceError`."""
    if len(xml) > max_bytes:
        raise InstanceError(
            f"submission XML is {len(xml):,} bytes; at most {max_bytes:,} are accepted"
        )
    if not xml.strip():
        raise InstanceError("submission XML is empty")
    parser = _BoundedParser(max_depth, max_elements)
    try:
        parser.feed(xml)
        root: Element = parser.close()
    except DTDForbidden as error:
        raise InstanceError(
            "XML document type declarations (<!DOCTYPE …>) are not allowed: they can"
            " declare entities"
        ) from error
    except EntitiesForbidden as error:
        raise InstanceError("XML entity declarations are not allowed") from error
    except DefusedXmlException as error:
        raise InstanceError("external XML references are not allowed") from error
    except ParseError as error:
        line, column = getattr(error, "position", (0, 0))
        reason = re.sub(r":\s*line \d+, column \d+$", "", str(error))
        raise InstanceError(
            f"malformed XML at line {line}, column {column + 1}: {reason}"
        ) from error
    return root


def local_name(tag: str) -> str:
    """The element or attribute name without its namespace."""
    return tag.rpartition("}")[2] if tag.startswith("{") else tag


def _children_named(element: Element, name: str) -> Iterator[Element]:
    return (child for child in element if local_name(child.tag) == name)


def _child_named(element: Element, name: str) -> Element | None:
    return next(_children_named(element, name), None)


def _attribute(element: Element, name: str) -> str | None:
    for key, value in element.attrib.items():
        if local_name(key) == name:
            return value
    return None


def _attributes(element: Element) -> dict[str, str]:
    """The attributes by local name; of two with one name, the first, as `_attribute`."""
    attributes: dict[str, str] = {}
    for key, value in element.attrib.items():
        attributes.setdefault(local_name(key), value)
    return attributes


def _text(element: Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    text = element.text.strip()
    return text or None


# ---------------------------------------------------------------------------------------
# The envelope


@dataclass
class Envelope:
    """What intake reads from a submission before storing it."""

    form_id: str
    version: str | None
    instance_id: str
    deprecated_id: str | None = None
    instance_name: str | None = None
    encrypted: bool = False
    base64_encrypted_key: str | None = None
    encrypted_xml_file: str | None = None
    # The encrypted attachments ("photo.jpg.enc"), in the order of the manifest.
    media_files: list[str] = field(default_factory=list)
    base64_encrypted_element_signature: str | None = None
    root_name: str = "data"


def read_envelope(
    xml: bytes,
    *,
    max_bytes: int = MAX_XML_BYTES,
    max_depth: int = MAX_DEPTH,
) -> Envelope:
    """Read form ID, version, instance ID and the encryption manifest of a submission.

    Works for plain submissions and for the encrypted manifests of ODK Collect, Enketo
    and Diiwaan's client (namespaces and element order are ignored).
    """
    root = parse_xml(xml, max_bytes=max_bytes, max_depth=max_depth)
    return envelope_of(root)


def envelope_of(root: Element) -> Envelope:
    """The envelope of an already parsed submission."""
    attributes = _attributes(root)
    form_id = (attributes.get("id") or "").strip()
    if not form_id:
        raise InstanceError(
            f"submission XML has no form ID (the id attribute of <{local_name(root.tag)}>)"
        )
    meta = _child_named(root, "meta")
    instance_id = _text(_child_named(meta, "instanceID")) if meta is not None else None
    instance_id = instance_id or (attributes.get("instanceID") or "").strip() or None
    if instance_id is None:
        raise InstanceError("submission XML has no meta/instanceID")

    encrypted = (attributes.get("encrypted") or "").strip().lower() in ("yes", "true")
    envelope = Envelope(
        form_id=form_id,
        version=(attributes.get("version") or "").strip() or None,
        instance_id=instance_id,
        deprecated_id=_text(_child_named(meta, "deprecatedID")) if meta is not None else None,
        instance_name=_text(_child_named(meta, "instanceName")) if meta is not None else None,
        encrypted=encrypted,
        root_name=local_name(root.tag),
    )
    if not encrypted:
        return envelope

    envelope.base64_encrypted_key = _text(_child_named(root, "base64EncryptedKey"))
    envelope.encrypted_xml_file = _text(_child_named(root, "encryptedXmlFile"))
    envelope.base64_encrypted_element_signature = _text(
        _child_named(root, "base64EncryptedElementSignature")
    )
    for media in _children_named(root, "media"):
        for file_element in _children_named(media, "file"):
            file_name = _text(file_element)
            if file_name:
                envelope.media_files.append(file_name)
    missing = [
        name
        for name, value in (
            ("base64EncryptedKey", envelope.base64_encrypted_key),
            ("encryptedXmlFile", envelope.encrypted_xml_file),
        )
        if not value
    ]
    if missing:
        raise InstanceError(f"encrypted submission has no {' and no '.join(missing)}")
    for file_name in [envelope.encrypted_xml_file or "", *envelope.media_files]:
        if not _is_plain_file_name(file_name):
            raise InstanceError(f"encrypted submission names an unsafe file: {file_name!r}")
    return envelope


def _is_plain_file_name(name: str) -> bool:
    """A file name without directories or control and format characters (a right-to-left
    override disguises `gpj.exe` as `exe.jpg`), like those devices give attachments."""
    return (
        bool(name)
        and "/" not in name
        and "\\" not in name
        and name not in (".", "..")
        and not any(unicodedata.category(char) in ("Cc", "Cf") for char in name)
    )


# ---------------------------------------------------------------------------------------
# The answers, typed by the form


@dataclass
class EntityAction:
    """One entity a submission asks to create or update (ODK Entities, in meta).

    `properties` are the saved answers as submitted text, keyed by entity property; an
    empty answer is None. `instance_path` locates the block: "/" for the form's meta,
    "/member[2]" for the second member (1-based, as in XPath); `repeat_index` is the same
    position as 0-based indexes, outermost repeat first ([] outside repeats).
    """

    dataset: str
    id: str
    create: bool
    update: bool
    base_version: int | None = None
    trunk_version: int | None = None
    branch_id: str | None = None
    label: str | None = None
    properties: dict[str, str | None] = field(default_factory=dict)
    instance_path: str = ROOT_PATH
    repeat_index: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, JSONValue]:
        return {
            "dataset": self.dataset,
            "id": self.id,
            "create": self.create,
            "update": self.update,
            "base_version": self.base_version,
            "trunk_version": self.trunk_version,
            "branch_id": self.branch_id,
            "label": self.label,
            "properties": dict(self.properties),
            "instance_path": self.instance_path,
            "repeat_index": list(self.repeat_index),
        }


@dataclass
class ParsedInstance:
    """A submission read against its form definition."""

    envelope: Envelope
    # Answers by element name: groups as dicts, repeats as lists of dicts, typed values.
    data: dict[str, JSONValue] = field(default_factory=dict)
    # File names of the attachments the answers refer to, in document order.
    attachments: list[str] = field(default_factory=list)
    entities: list[EntityAction] = field(default_factory=list)
    # Values that do not fit their question, each "<path>: <what is wrong>".
    problems: list[str] = field(default_factory=list)

    @property
    def instance_id(self) -> str:
        return self.envelope.instance_id


def parse_instance(
    xml: bytes,
    definition: FormDefinition,
    *,
    max_bytes: int = MAX_XML_BYTES,
    max_depth: int = MAX_DEPTH,
) -> ParsedInstance:
    """Read a (decrypted) submission against the form definition it was made with."""
    root = parse_xml(xml, max_bytes=max_bytes, max_depth=max_depth)
    envelope = envelope_of(root)
    if envelope.encrypted:
        raise InstanceError("submission is encrypted: decrypt it before reading its answers")
    reader = _InstanceReader(definition)
    settings = definition.settings
    if envelope.form_id != settings.form_id:
        reader.problems.append(
            f"/: the submission is for form '{envelope.form_id}', not '{settings.form_id}'"
        )
    if envelope.version != settings.version:
        reader.problems.append(
            f"/: the submission is for form version {envelope.version!r}, not {settings.version!r}"
        )
    data = reader.read_container(root, definition.children, ROOT_PATH, ROOT_PATH, [])
    # Outer entities first (the household before its members), otherwise document order.
    entities = sorted(reader.entities, key=lambda action: len(action.repeat_index))
    return ParsedInstance(
        envelope=envelope,
        data=data,
        attachments=reader.attachments,
        entities=entities,
        problems=reader.problems,
    )


class _InstanceReader:
    """Walks the submission alongside the definition's tree, collecting as it goes."""

    def __init__(self, definition: FormDefinition) -> None:
        self.definition = definition
        self.attachments: list[str] = []
        self.entities: list[EntityAction] = []
        self.problems: list[str] = []
        # By id(): the elements live as long as the tree, which outlives the reader.
        self._children: dict[int, dict[str, Element]] = {}

    def _child(self, element: Element, name: str) -> Element | None:
        """The first child called `name`, as `_child_named`, with each element's children
        indexed once: an entity's properties are all looked up in one container."""
        children = self._children.get(id(element))
        if children is None:
            children = {}
            for child in element:
                children.setdefault(local_name(child.tag), child)
            self._children[id(element)] = children
        return children.get(name)

    def _find(self, element: Element, names: list[str]) -> Element | None:
        current: Element | None = element
        for name in names:
            if current is None:
                return None
            current = self._child(current, name)
        return current

    def read_container(
        self,
        element: Element,
        nodes: Iterable[Node],
        definition_path: str,
        instance_path: str,
        repeat_index: list[int],
    ) -> dict[str, JSONValue]:
        nodes_by_name = {node.name: node for node in nodes}
        data: dict[str, JSONValue] = {}
        for child in element:
            name = local_name(child.tag)
            child_instance_path = _join(instance_path, name)
            node = nodes_by_name.get(name)
            if name == "meta" and node is None:
                meta = self.read_meta(child, element, definition_path, instance_path, repeat_index)
                if meta:
                    data["meta"] = meta
            elif isinstance(node, Repeat):
                if _attribute(child, "template") is not None:
                    continue  # an empty template some clients leave in
                instances = data.setdefault(name, [])
                position = len(instances)
                instances.append(
                    self.read_container(
                        child,
                        node.children,
                        _join(definition_path, name),
                        f"{child_instance_path}[{position + 1}]",
                        [*repeat_index, position],
                    )
                )
            elif isinstance(node, Group):
                self._store(
                    data,
                    name,
                    self.read_container(
                        child,
                        node.children,
                        _join(definition_path, name),
                        child_instance_path,
                        repeat_index,
                    ),
                    child_instance_path,
                )
            elif isinstance(node, Question):
                self._store(
                    data,
                    name,
                    self.read_answer(child, node, child_instance_path),
                    child_instance_path,
                )
            else:
                self._store(data, name, _untyped(child), child_instance_path)
        return data

    def _store(
        self, data: dict[str, JSONValue], name: str, value: JSONValue, instance_path: str
    ) -> None:
        if name in data:
            self.problems.append(f"{instance_path}: appears more than once; the last is kept")
        data[name] = value

    def read_answer(self, element: Element, question: Question, instance_path: str) -> JSONValue:
        if len(element):
            self.problems.append(
                f"{instance_path}: expected a value but found nested elements; kept as text"
            )
            return _untyped(element)
        raw = element.text or ""
        if not raw.strip():
            return None
        value, problem = typed_value(question.type, raw)
        if problem:
            self.problems.append(f"{instance_path}: {problem}")
        if question.is_attachment and isinstance(value, str):
            if _is_plain_file_name(value):
                self.attachments.append(value)
            else:
                self.problems.append(
                    f"{instance_path}: {value!r} is not a plain file name; ignored as an attachment"
                )
        return value

    def read_meta(
        self,
        meta: Element,
        container: Element,
        definition_path: str,
        instance_path: str,
        repeat_index: list[int],
    ) -> dict[str, JSONValue]:
        data: dict[str, JSONValue] = {}
        for child in meta:
            name = local_name(child.tag)
            if name == "entity":
                action = self.read_entity(
                    child, container, definition_path, instance_path, repeat_index
                )
                if action is not None:
                    self.entities.append(action)
            else:
                data[name] = _untyped(child)
        return data

    def read_entity(
        self,
        entity: Element,
        container: Element,
        definition_path: str,
        instance_path: str,
        repeat_index: list[int],
    ) -> EntityAction | None:
        where = _join(instance_path, "meta/entity")
        attributes = _attributes(entity)
        dataset = (attributes.get("dataset") or "").strip()
        create = _is_true(attributes.get("create"))
        update = _is_true(attributes.get("update"))
        if not (create or update):
            return None  # create_if / update_if did not hold: nothing to do
        if not dataset:
            self.problems.append(f"{where}: entity has no dataset")
            return None
        entity_id = (attributes.get("id") or "").strip()
        if not _is_uuid4(entity_id):
            self.problems.append(f"{where}: entity id {entity_id!r} is not a v4 UUID")
        action = EntityAction(
            dataset=dataset,
            id=entity_id,
            create=create,
            update=update,
            base_version=self._version(attributes, "baseVersion", where),
            trunk_version=self._version(attributes, "trunkVersion", where),
            branch_id=(attributes.get("branchId") or "").strip() or None,
            label=_text(_child_named(entity, "label")),
            instance_path=instance_path,
            repeat_index=list(repeat_index),
        )
        if create and not update and action.label is None:
            self.problems.append(f"{where}: creating entity {entity_id!r} needs a label")
        if update and action.base_version is None:
            self.problems.append(f"{where}: update of entity {entity_id!r} has no baseVersion")
        declaration = self.definition.entity_declaration(dataset)
        if declaration is None:
            self.problems.append(f"{where}: the form declares no entity list '{dataset}'")
            return action
        for property_name, question_path in declaration.properties.items():
            relative = _relative_path(question_path, declaration.container_path)
            if relative is None:
                continue
            answer = self._find(container, relative)
            if answer is not None:
                action.properties[property_name] = _text(answer)
        if definition_path != declaration.container_path:
            self.problems.append(
                f"{where}: entity for '{dataset}' found at {definition_path}, but the form"
                f" declares it at {declaration.container_path}"
            )
        return action

    def _version(self, attributes: dict[str, str], attribute: str, where: str) -> int | None:
        raw = (attributes.get(attribute) or "").strip()
        if not raw:
            return None
        if re.fullmatch(r"\d+", raw):
            return int(raw)
        self.problems.append(f"{where}: {attribute} {raw!r} is not a whole number")
        return None


def _join(parent_path: str, name: str) -> str:
    return f"{parent_path.rstrip('/')}/{name}"


def _relative_path(path: str, container_path: str) -> list[str] | None:
    prefix = container_path.rstrip("/") + "/"
    if not path.startswith(prefix):
        return None
    return path[len(prefix) :].split("/")


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true")


def _is_uuid4(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 4
    except ValueError:
        return False


def _untyped(element: Element) -> JSONValue:
    """An element the form does not declare: its text, or a dict of its children."""
    if len(element) == 0:
        text = element.text or ""
        return text if text.strip() else None
    data: dict[str, JSONValue] = {}
    for child in element:
        data[local_name(child.tag)] = _untyped(child)
    return data


# ---------------------------------------------------------------------------------------
# Values

_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_LIST_TYPES = {"select_multiple", "select_multiple_from_file", "rank"}
_DATE_TYPES = {"date", "today"}
_DATETIME_TYPES = {"dateTime", "start", "end"}
_NUMBER_TYPES = {"range"}
_GEO_LINE_TYPES = {"geotrace", "geoshape"}
_GEOPOINT_TYPES = {"geopoint", "start-geopoint", "background-geopoint"}


def typed_value(question_type: str, raw: str) -> tuple[JSONValue, str | None]:
    """The JSON value of an answer, and what is wrong with it (None when it fits).

    A value that does not fit is returned as its raw text.
    """
    text = raw.strip()
    if question_type == "integer":
        if _INTEGER.fullmatch(text):
            whole = _integer(text)
            if whole is None:
                return raw, f"{text[:20]!r}… ({len(text)} digits) is too long for an integer"
            return whole, None
        return raw, f"{text!r} is not an integer"
    if question_type == "decimal" or question_type in _NUMBER_TYPES:
        number = _number(text)
        if number is None:
            return raw, f"{text[:40]!r} is not a number (or is beyond the range of one)"
        if question_type == "decimal":
            return float(number), None
        return number, None
    if question_type in _DATE_TYPES:
        try:
            return date.fromisoformat(text).isoformat(), None
        except ValueError:
            return raw, f"{text!r} is not a date (YYYY-MM-DD)"
    if question_type == "time":
        try:
            time.fromisoformat(text)
        except ValueError:
            return raw, f"{text!r} is not a time"
        return text, None
    if question_type in _DATETIME_TYPES:
        try:
            datetime.fromisoformat(text)
        except ValueError:
            return raw, f"{text!r} is not a date and time"
        return text, None
    if question_type in _GEOPOINT_TYPES:
        point, problem = _geopoint(text)
        return (point, None) if point is not None else (raw, problem)
    if question_type in _GEO_LINE_TYPES:
        points: list[dict[str, float | None]] = []
        for part in text.split(";"):
            if not part.strip():
                continue
            point, problem = _geopoint(part.strip())
            if point is None:
                return raw, problem
            points.append(point)
        return points, None
    if question_type in _LIST_TYPES:
        return text.split(), None
    if question_type in ("select_one", "select_one_from_file", "select_one_external"):
        return text, None
    if question_type in ("image", "audio", "video", "file", "background-audio", "audit"):
        return text, None
    return raw, None


def _integer(text: str) -> int | None:
    """`int(text)`, or None past Python's 4300-digit limit (a ValueError would make the
    worker retry the submission as if the fault were passing)."""
    try:
        return int(text)
    except ValueError:
        return None


def _number(text: str) -> int | float | None:
    if _INTEGER.fullmatch(text):
        whole = _integer(text)
        # Every number here may become a float (decimals, coordinates): keep it in range.
        return whole if whole is not None and abs(whole) <= sys.float_info.max else None
    if _DECIMAL.fullmatch(text):
        value = float(text)
        return value if math.isfinite(value) else None
    return None


def _geopoint(text: str) -> tuple[dict[str, float | None] | None, str | None]:
    """A point from "latitude longitude [altitude [accuracy]]", as Collect writes it."""
    parts = text.split()
    numbers = [_number(part) for part in parts]
    if not 2 <= len(parts) <= 4 or any(number is None for number in numbers):
        return None, f"{text!r} is not a GPS location (latitude longitude altitude accuracy)"
    values = [float(number) for number in numbers if number is not None]
    latitude, longitude = values[0], values[1]
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None, f"{text!r} is not a GPS location: latitude or longitude out of range"
    return {
        "latitude": latitude,
        "longitude": longitude,
        "altitude": values[2] if len(values) > 2 else None,
        "accuracy": values[3] if len(values) > 3 else None,
    }, None
