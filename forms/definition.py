"""Diiwaan's own model of a form: questions, groups, repeats, choice lists, entities.

Built from an XLSForm by `forms.xlsform`; the rest of Diiwaan reads forms through this
model and never through pyxform. `FormDefinition.to_dict()` is plain JSON, stable so it
can be stored in a database JSON column, and `FormDefinition.from_dict()` reads it back.

Paths. Every node has a `path`: the element names from the instance root down to the
node, joined by "/", starting with "/" and *without* the root element's own name
(which is "data" for most XLSForms). A member's age in the `member` repeat is
"/member/age" — the same for every instance of the repeat; a question at the top level
is "/hh_size". The root itself is "/".

Languages. Labels, hints and messages are dicts keyed by the language as written in
the XLSForm (e.g. "English (en)"); text from a column without a language is under
"default".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

DEFAULT_LANGUAGE = "default"
ROOT_PATH = "/"

# Version of the layout produced by `FormDefinition.to_dict`; bump it when the layout changes
# in a way `from_dict` must know about.
DEFINITION_FORMAT = 1

# Question types whose answer is the name of a file sent with the submission.
ATTACHMENT_TYPES = frozenset(
    {"image", "audio", "video", "file", "background-audio", "audit", "osm"}
)

Translations = dict[str, str]


def _translations(value: object) -> Translations:
    """Copy a {language: text} dict read from JSON."""
    if not isinstance(value, Mapping):
        return {}
    return {str(language): str(text) for language, text in value.items()}


@dataclass
class Settings:
    """What the XLSForm's settings sheet says (after Diiwaan's managed encryption)."""

    form_id: str
    version: str | None = None
    title: str | None = None
    default_language: str | None = None
    public_key: str | None = None
    submission_url: str | None = None
    entities_version: str | None = None
    instance_name: str | None = None
    root_name: str = "data"
    # "none", "managed" (the server's key was put into the form) or "self-managed" (the
    # form brought its own key: the server cannot read its submissions).
    encryption: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "form_id": self.form_id,
            "version": self.version,
            "title": self.title,
            "default_language": self.default_language,
            "public_key": self.public_key,
            "submission_url": self.submission_url,
            "entities_version": self.entities_version,
            "instance_name": self.instance_name,
            "root_name": self.root_name,
            "encryption": self.encryption,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        return cls(
            form_id=str(data["form_id"]),
            version=data.get("version"),
            title=data.get("title"),
            default_language=data.get("default_language"),
            public_key=data.get("public_key"),
            submission_url=data.get("submission_url"),
            entities_version=data.get("entities_version"),
            instance_name=data.get("instance_name"),
            root_name=data.get("root_name", "data"),
            encryption=data.get("encryption", "none"),
        )


@dataclass
class Question:
    """One question (or calculate, note, metadata field) of the form.

    `type` is the XLSForm type name without its list: text, integer, decimal, date, time,
    dateTime, geopoint, geotrace, geoshape, select_one, select_multiple,
    select_one_from_file, select_multiple_from_file, select_one_external, rank, image,
    audio, video, file, note, calculate, hidden, barcode, acknowledge, range, and the
    metadata types start, end, today, deviceid, username, phonenumber, email, audit, ….
    Expressions (relevant, constraint, calculate, …) are kept as the author wrote them,
    with `${name}` references.
    """

    kind: ClassVar[str] = "question"

    name: str
    path: str
    type: str
    labels: Translations = field(default_factory=dict)
    hints: Translations = field(default_factory=dict)
    # True when the question must always be answered; a conditional requirement is in
    # `required_if` (and `required` is False).
    required: bool = False
    required_if: str | None = None
    required_message: Translations = field(default_factory=dict)
    relevant: str | None = None
    constraint: str | None = None
    constraint_message: Translations = field(default_factory=dict)
    calculate: str | None = None
    default: str | None = None
    read_only: bool = False
    appearance: str | None = None
    # Selects: the list on the choices sheet, or the attached file the choices come from.
    choice_list: str | None = None
    choice_filter: str | None = None
    itemset_file: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    # {media type ("image", "audio", "video", "big-image"): {language: file name}}
    media: dict[str, Translations] = field(default_factory=dict)
    # The entity property this answer is saved to (save_to), and the entity list it
    # belongs to.
    save_to: str | None = None
    entity_list: str | None = None

    @property
    def is_attachment(self) -> bool:
        """Whether the answer names a file sent alongside the submission."""
        return self.type in ATTACHMENT_TYPES

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "type": self.type,
            "labels": dict(self.labels),
            "hints": dict(self.hints),
            "required": self.required,
            "required_if": self.required_if,
            "required_message": dict(self.required_message),
            "relevant": self.relevant,
            "constraint": self.constraint,
            "constraint_message": dict(self.constraint_message),
            "calculate": self.calculate,
            "default": self.default,
            "read_only": self.read_only,
            "appearance": self.appearance,
            "choice_list": self.choice_list,
            "choice_filter": self.choice_filter,
            "itemset_file": self.itemset_file,
            "parameters": dict(self.parameters),
            "media": {media_type: dict(files) for media_type, files in self.media.items()},
            "save_to": self.save_to,
            "entity_list": self.entity_list,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Question:
        return cls(
            name=str(data["name"]),
            path=str(data["path"]),
            type=str(data["type"]),
            labels=_translations(data.get("labels")),
            hints=_translations(data.get("hints")),
            required=bool(data.get("required", False)),
            required_if=data.get("required_if"),
            required_message=_translations(data.get("required_message")),
            relevant=data.get("relevant"),
            constraint=data.get("constraint"),
            constraint_message=_translations(data.get("constraint_message")),
            calculate=data.get("calculate"),
            default=data.get("default"),
            read_only=bool(data.get("read_only", False)),
            appearance=data.get("appearance"),
            choice_list=data.get("choice_list"),
            choice_filter=data.get("choice_filter"),
            itemset_file=data.get("itemset_file"),
            parameters={str(k): str(v) for k, v in (data.get("parameters") or {}).items()},
            media={
                str(media_type): _translations(files)
                for media_type, files in (data.get("media") or {}).items()
            },
            save_to=data.get("save_to"),
            entity_list=data.get("entity_list"),
        )


@dataclass
class Group:
    """A group of questions: one element in the submission holding its children."""

    kind: ClassVar[str] = "group"

    name: str
    path: str
    labels: Translations = field(default_factory=dict)
    relevant: str | None = None
    appearance: str | None = None
    children: list[Node] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "labels": dict(self.labels),
            "relevant": self.relevant,
            "appearance": self.appearance,
            "children": [child.to_dict() for child in self.children],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Group:
        return cls(
            name=str(data["name"]),
            path=str(data["path"]),
            labels=_translations(data.get("labels")),
            relevant=data.get("relevant"),
            appearance=data.get("appearance"),
            children=[node_from_dict(child) for child in data.get("children", [])],
        )


@dataclass
class Repeat:
    """A repeat: the submission holds one element per instance (e.g. one per member)."""

    kind: ClassVar[str] = "repeat"

    name: str
    path: str
    labels: Translations = field(default_factory=dict)
    relevant: str | None = None
    appearance: str | None = None
    # The number of instances when the form fixes it (an expression or a number).
    repeat_count: str | None = None
    children: list[Node] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "labels": dict(self.labels),
            "relevant": self.relevant,
            "appearance": self.appearance,
            "repeat_count": self.repeat_count,
            "children": [child.to_dict() for child in self.children],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Repeat:
        return cls(
            name=str(data["name"]),
            path=str(data["path"]),
            labels=_translations(data.get("labels")),
            relevant=data.get("relevant"),
            appearance=data.get("appearance"),
            repeat_count=data.get("repeat_count"),
            children=[node_from_dict(child) for child in data.get("children", [])],
        )


Node = Question | Group | Repeat
Container = Group | Repeat

_NODE_CLASSES: dict[str, type[Question] | type[Group] | type[Repeat]] = {
    "question": Question,
    "group": Group,
    "repeat": Repeat,
}


def node_from_dict(data: Mapping[str, Any]) -> Node:
    """Read one node written by `to_dict()`, choosing the class by its `kind`."""
    kind = data.get("kind")
    node_class = _NODE_CLASSES.get(str(kind))
    if node_class is None:
        raise ValueError(f"unknown form node kind {kind!r} at {data.get('path')!r}")
    return node_class.from_dict(data)


@dataclass
class Choice:
    """One choice of a list: its name (the value submitted) and labels."""

    name: str
    labels: Translations = field(default_factory=dict)
    media: dict[str, Translations] = field(default_factory=dict)
    # Extra columns of the choices sheet, used by choice filters (e.g. {"region": "bay"}).
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "labels": dict(self.labels),
            "media": {media_type: dict(files) for media_type, files in self.media.items()},
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Choice:
        return cls(
            name=str(data["name"]),
            labels=_translations(data.get("labels")),
            media={
                str(media_type): _translations(files)
                for media_type, files in (data.get("media") or {}).items()
            },
            extra={str(k): str(v) for k, v in (data.get("extra") or {}).items()},
        )


@dataclass
class ChoiceList:
    """A list from the choices sheet."""

    name: str
    choices: list[Choice] = field(default_factory=list)

    def choice(self, name: str) -> Choice | None:
        return next((choice for choice in self.choices if choice.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "choices": [choice.to_dict() for choice in self.choices]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChoiceList:
        return cls(
            name=str(data["name"]),
            choices=[Choice.from_dict(choice) for choice in data.get("choices", [])],
        )


@dataclass
class EntityDeclaration:
    """One row of the entities sheet, as placed in the form.

    The entity block sits in the `meta` of `container_path` ("/" for the form's own meta,
    "/member" for one entity per instance of the `member` repeat). `repeat_path` is the
    innermost repeat holding it, or None when there is one entity per submission.
    `properties` maps each entity property to the path of the question saved to it.
    """

    list_name: str
    label_expression: str | None = None
    entity_id_expression: str | None = None
    create_if: str | None = None
    update_if: str | None = None
    container_path: str = ROOT_PATH
    repeat_path: str | None = None
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def creates(self) -> bool:
        """Whether submissions may create entities (always, or when `create_if` holds)."""
        return self.entity_id_expression is None or self.create_if is not None

    @property
    def updates(self) -> bool:
        """Whether submissions may update existing entities (they name one by its ID)."""
        return self.entity_id_expression is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "list_name": self.list_name,
            "label_expression": self.label_expression,
            "entity_id_expression": self.entity_id_expression,
            "create_if": self.create_if,
            "update_if": self.update_if,
            "container_path": self.container_path,
            "repeat_path": self.repeat_path,
            "properties": dict(self.properties),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EntityDeclaration:
        return cls(
            list_name=str(data["list_name"]),
            label_expression=data.get("label_expression"),
            entity_id_expression=data.get("entity_id_expression"),
            create_if=data.get("create_if"),
            update_if=data.get("update_if"),
            container_path=data.get("container_path", ROOT_PATH),
            repeat_path=data.get("repeat_path"),
            properties={str(k): str(v) for k, v in (data.get("properties") or {}).items()},
        )


@dataclass
class FormDefinition:
    """A whole form version: settings, the tree of questions, choices and entities."""

    settings: Settings
    children: list[Node] = field(default_factory=list)
    choice_lists: dict[str, ChoiceList] = field(default_factory=dict)
    entity_declarations: list[EntityDeclaration] = field(default_factory=list)
    # Files the device must download with the form (images, audio, CSV and XML data,
    # entity lists as "<list>.csv"), in the order the form first refers to them.
    media_files: list[str] = field(default_factory=list)
    # The languages in the order the XLSForm uses them, kept explicitly because JSON
    # stores (PostgreSQL's JSONB) do not keep the key order of the label dicts.
    language_order: list[str] = field(default_factory=list)

    # -- reading the tree ------------------------------------------------------------

    def iter_nodes(self) -> Iterator[Node]:
        """Every question, group and repeat, depth first in form order."""
        stack: list[Node] = list(reversed(self.children))
        while stack:
            node = stack.pop()
            yield node
            if isinstance(node, Group | Repeat):
                stack.extend(reversed(node.children))

    def iter_questions(self) -> Iterator[Question]:
        """Every question (including calculates, notes and metadata), in form order."""
        for node in self.iter_nodes():
            if isinstance(node, Question):
                yield node

    def node_at(self, path: str) -> Node | None:
        """The question, group or repeat at `path` (see the module docstring)."""
        return next((node for node in self.iter_nodes() if node.path == path), None)

    def question_at(self, path: str) -> Question | None:
        """The question at `path` such as "/member/full_name", or None."""
        node = self.node_at(path)
        return node if isinstance(node, Question) else None

    def repeat_paths(self) -> list[str]:
        return [node.path for node in self.iter_nodes() if isinstance(node, Repeat)]

    @property
    def languages(self) -> list[str]:
        """The languages of labels, hints and choices, in the order the form uses them."""
        if self.language_order:
            return list(self.language_order)
        seen: dict[str, None] = {}
        for node in self.iter_nodes():
            seen.update(dict.fromkeys(node.labels))
            if isinstance(node, Question):
                seen.update(dict.fromkeys(node.hints))
                seen.update(dict.fromkeys(node.constraint_message))
        for choice_list in self.choice_lists.values():
            for choice in choice_list.choices:
                seen.update(dict.fromkeys(choice.labels))
        return list(seen)

    @property
    def entity_lists(self) -> list[str]:
        """The entity lists the form creates or updates (e.g. households, members)."""
        return [declaration.list_name for declaration in self.entity_declarations]

    def entity_declaration(self, list_name: str) -> EntityDeclaration | None:
        return next(
            (d for d in self.entity_declarations if d.list_name == list_name),
            None,
        )

    # -- JSON ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": DEFINITION_FORMAT,
            "settings": self.settings.to_dict(),
            "children": [child.to_dict() for child in self.children],
            "choice_lists": {
                name: choice_list.to_dict() for name, choice_list in self.choice_lists.items()
            },
            "entity_declarations": [
                declaration.to_dict() for declaration in self.entity_declarations
            ],
            "media_files": list(self.media_files),
            "languages": self.languages,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FormDefinition:
        layout = data.get("format", DEFINITION_FORMAT)
        if layout != DEFINITION_FORMAT:
            raise ValueError(
                f"form definition format {layout!r} is not supported"
                f" (this code reads format {DEFINITION_FORMAT})"
            )
        return cls(
            settings=Settings.from_dict(data["settings"]),
            children=[node_from_dict(child) for child in data.get("children", [])],
            choice_lists={
                str(name): ChoiceList.from_dict(choice_list)
                for name, choice_list in (data.get("choice_lists") or {}).items()
            },
            entity_declarations=[
                EntityDeclaration.from_dict(declaration)
                for declaration in data.get("entity_declarations", [])
            ],
            media_files=[str(name) for name in data.get("media_files", [])],
            language_order=[str(name) for name in data.get("languages", [])],
        )
