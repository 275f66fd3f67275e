"""A submission read as its form's questions, not as XML: labels in the chosen language,
choice labels, groups, repeats as tables, GPS points on a small map, photos; and the
fields of the edit form. Also the geometry of the dashboard's bar chart.

Pure functions over the form definition and the typed data: the view passes in how to
look up choices from attached files and how to link an attachment. Everything returned
is plain text or numbers; templates escape it (form labels are untrusted).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from forms.definition import DEFAULT_LANGUAGE, FormDefinition, Group, Node, Question, Repeat
from server.errors import DiiwaanError
from server.review.service import answer_path, is_editable, parse_answer_path

# Types whose answer the device recorded by itself: shown apart, never edited.
METADATA_TYPES = frozenset(
    {
        "start",
        "end",
        "today",
        "deviceid",
        "subscriberid",
        "simserial",
        "phonenumber",
        "username",
        "email",
        "audit",
        "start-geopoint",
        "background-geopoint",
        "background-audio",
    }
)
SELECT_TYPES = frozenset(
    {
        "select_one",
        "select_multiple",
        "select_one_from_file",
        "select_multiple_from_file",
        "select_one_external",
        "rank",
    }
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp")

# {file name: {choice name: {language: label}}}
FileChoices = Callable[[str], Mapping[str, Mapping[str, str]]]
FileUrl = Callable[[str], str | None]


def choose_language(definition: FormDefinition, requested: str | None) -> tuple[list[str], str]:
    """The form's languages and the one to show (the requested one if the form has it)."""
    languages = definition.languages or [DEFAULT_LANGUAGE]
    if requested in languages:
        return languages, str(requested)
    default = definition.settings.default_language
    return languages, default if default in languages else languages[0]


def text_in(translations: Mapping[str, str], language: str, fallback: str = "") -> str:
    if not translations:
        return fallback
    return (
        translations.get(language)
        or translations.get(DEFAULT_LANGUAGE)
        or next(iter(translations.values()), "")
        or fallback
    )


# ----------------------------------------------------------------------- answers


@dataclass
class GeoPoint:
    latitude: float
    longitude: float
    altitude: float | None = None
    accuracy: float | None = None

    @property
    def osm_url(self) -> str:
        query = urlencode({"mlat": f"{self.latitude:.6f}", "mlon": f"{self.longitude:.6f}"})
        return f"https://www.openstreetmap.org/?{query}#map=17/{self.latitude:.6f}/{self.longitude:.6f}"

    @property
    def map(self) -> LocatorMap:
        return locator_map(self)


@dataclass
class Answer:
    kind = "answer"

    path: str
    name: str
    label: str
    type: str
    value: Any
    text: str = ""
    items: list[str] = field(default_factory=list)
    point: GeoPoint | None = None
    file_url: str | None = None
    is_image: bool = False
    changed: bool = False

    @property
    def empty(self) -> bool:
        return self.value is None or self.value == "" or self.value == []


@dataclass
class Section:
    kind = "group"

    label: str
    path: str
    children: list[Block] = field(default_factory=list)


@dataclass
class Table:
    kind = "repeat"

    label: str
    path: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[Answer | Table]] = field(default_factory=list)


Block = Answer | Section | Table


@dataclass
class RenderedSubmission:
    blocks: list[Block]
    metadata: list[Answer]
    # Answers the form does not declare (kept by processing as they came).
    extra: dict[str, Any]


class _Renderer:
    def __init__(
        self,
        definition: FormDefinition,
        language: str,
        file_choices: FileChoices,
        file_url: FileUrl,
        changed: set[str],
    ) -> None:
        self.definition = definition
        self.language = language
        self.file_choices = file_choices
        self.file_url = file_url
        self.changed = changed
        self.metadata: list[Answer] = []

    def label(self, node: Node) -> str:
        return text_in(node.labels, self.language, node.name)

    def choice_label(self, question: Question, name: str) -> str:
        if question.choice_list and question.choice_list in self.definition.choice_lists:
            choice = self.definition.choice_lists[question.choice_list].choice(name)
            return text_in(choice.labels, self.language, name) if choice else name
        if question.itemset_file:
            labels = self.file_choices(question.itemset_file).get(name)
            return text_in(labels or {}, self.language, name)
        return name

    def answer(self, question: Question, value: Any, steps: list[str | int]) -> Answer:
        path = answer_path(steps)
        answer = Answer(
            path=path,
            name=question.name,
            label=self.label(question),
            type=question.type,
            value=value,
            changed=path in self.changed,
        )
        if answer.empty:
            return answer
        if question.type in SELECT_TYPES:
            names = value if isinstance(value, list) else str(value).split()
            answer.items = [self.choice_label(question, str(name)) for name in names]
            answer.text = ", ".join(answer.items)
            if question.type == "select_one" or question.type.startswith("select_one"):
                answer.items = []
        elif isinstance(value, dict) and "latitude" in value:
            try:
                answer.point = GeoPoint(
                    float(value["latitude"]),
                    float(value["longitude"]),
                    _float_or_none(value.get("altitude")),
                    _float_or_none(value.get("accuracy")),
                )
            except (TypeError, ValueError, KeyError):
                answer.text = str(value)
            else:
                answer.text = f"{answer.point.latitude:.6f}, {answer.point.longitude:.6f}"
        elif question.is_attachment:
            answer.text = str(value)
            answer.file_url = self.file_url(str(value))
            answer.is_image = question.type == "image" or str(value).lower().endswith(
                IMAGE_EXTENSIONS
            )
        elif isinstance(value, list):
            answer.text = "; ".join(_plain(item) for item in value)
        else:
            answer.text = _plain(value)
        return answer

    def blocks(
        self, nodes: Sequence[Node], data: Mapping[str, Any], steps: list[str | int]
    ) -> list[Block]:
        blocks: list[Block] = []
        for node in nodes:
            here = [*steps, node.name]
            value = data.get(node.name) if isinstance(data, Mapping) else None
            if isinstance(node, Question):
                if node.type == "note":
                    continue
                answer = self.answer(node, value, here)
                if node.type in METADATA_TYPES:
                    self.metadata.append(answer)
                else:
                    blocks.append(answer)
            elif isinstance(node, Repeat):
                blocks.append(self.table(node, value, here))
            elif isinstance(node, Group):
                children = self.blocks(
                    node.children, value if isinstance(value, Mapping) else {}, here
                )
                if children:
                    blocks.append(Section(self.label(node), answer_path(here), children))
        return blocks

    def table(self, repeat: Repeat, value: Any, steps: list[str | int]) -> Table:
        columns = list(_columns(repeat.children))
        table = Table(
            self.label(repeat),
            answer_path(steps),
            [self.column_label(path) for path in columns],
        )
        instances = value if isinstance(value, list) else []
        for position, instance in enumerate(instances):
            row: list[Answer | Table] = []
            for column in columns:
                node = column[-1]
                names = [n.name for n in column]
                cell_steps: list[str | int] = [*steps, position, *names]
                cell_value = _dig(instance, names)
                if isinstance(node, Repeat):
                    row.append(self.table(node, cell_value, cell_steps))
                else:
                    row.append(self.answer(node, cell_value, cell_steps))
            table.rows.append(row)
        return table

    def column_label(self, column: Sequence[Node]) -> str:
        labels = [self.label(node) for node in column]
        return " · ".join(labels)


def _columns(nodes: Sequence[Node], parents: tuple[Node, ...] = ()) -> list[tuple[Node, ...]]:
    """A repeat's columns: its questions, with groups inside it flattened."""
    columns: list[tuple[Node, ...]] = []
    for node in nodes:
        if isinstance(node, Question):
            if node.type != "note" and node.type not in METADATA_TYPES:
                columns.append((*parents, node))
        elif isinstance(node, Repeat):
            columns.append((*parents, node))
        elif isinstance(node, Group):
            columns.extend(_columns(node.children, (*parents, node)))
    return columns


def _dig(data: Any, names: Sequence[str]) -> Any:
    for name in names:
        if not isinstance(data, Mapping):
            return None
        data = data.get(name)
    return data


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    return str(value)


def render_submission(
    definition: FormDefinition,
    data: Mapping[str, Any] | None,
    language: str,
    *,
    file_choices: FileChoices,
    file_url: FileUrl,
    changed: set[str] | None = None,
) -> RenderedSubmission:
    renderer = _Renderer(definition, language, file_choices, file_url, changed or set())
    data = data or {}
    blocks = renderer.blocks(definition.children, data, [])
    known = {node.name for node in definition.children} | {"meta"}
    extra = {key: value for key, value in data.items() if key not in known}
    return RenderedSubmission(blocks, renderer.metadata, extra)


def answer_labels(
    definition: FormDefinition, paths: Sequence[str], language: str
) -> dict[str, str]:
    """ "member[2]/full_name" → "Household member 2 › Full name", for edit histories."""
    labels = {}
    for path in paths:
        try:
            steps = parse_answer_path(path)
        except DiiwaanError:
            continue
        parts: list[str] = []
        nodes: Sequence[Node] = definition.children
        for step in steps:
            if isinstance(step, int):
                parts[-1] += f" {step + 1}"
                continue
            node = next((n for n in nodes if n.name == step), None)
            if node is None:
                parts.append(step)
                break
            parts.append(text_in(node.labels, language, node.name))
            nodes = node.children if isinstance(node, Group | Repeat) else []
        labels[path] = " › ".join(parts)
    return labels


# ---------------------------------------------------------------------- editing


@dataclass
class EditField:
    path: str
    label: str
    type: str
    value: str
    selected: list[str] = field(default_factory=list)
    choices: list[tuple[str, str]] | None = None
    multiple: bool = False
    hint: str = ""

    @property
    def input_type(self) -> str:
        return {
            "integer": "number",
            "decimal": "number",
            "range": "number",
            "date": "date",
            "time": "time",
        }.get(self.type, "text")


@dataclass
class EditSection:
    title: str
    fields: list[EditField] = field(default_factory=list)


def edit_sections(
    definition: FormDefinition,
    data: Mapping[str, Any],
    language: str,
    *,
    file_choices: FileChoices,
) -> list[EditSection]:
    """The answers a supervisor may correct, in form order, one section per group or
    repeat instance."""
    renderer = _Renderer(definition, language, file_choices, lambda _n: None, set())
    sections: list[EditSection] = [EditSection("")]

    def walk(nodes: Sequence[Node], values: Any, steps: list[str | int], title: str) -> None:
        section = EditSection(title)
        sections.append(section)
        for node in nodes:
            here = [*steps, node.name]
            value = values.get(node.name) if isinstance(values, Mapping) else None
            if isinstance(node, Question):
                if is_editable(node):
                    section.fields.append(_edit_field(renderer, node, value, here))
            elif isinstance(node, Repeat):
                for position, instance in enumerate(value if isinstance(value, list) else []):
                    walk(
                        node.children,
                        instance,
                        [*here, position],
                        f"{renderer.label(node)} {position + 1}",
                    )
                section = EditSection(title)
                sections.append(section)
            elif isinstance(node, Group):
                walk(node.children, value, here, renderer.label(node))
                section = EditSection(title)
                sections.append(section)

    walk(definition.children, data, [], "")
    return [section for section in sections if section.fields]


def _edit_field(
    renderer: _Renderer, question: Question, value: Any, steps: list[str | int]
) -> EditField:
    field_ = EditField(
        path=answer_path(steps),
        label=renderer.label(question),
        type=question.type,
        value="",
        hint=text_in(question.hints, renderer.language),
    )
    if value is None:
        pass
    elif isinstance(value, list):
        field_.selected = [str(item) for item in value]
        field_.value = " ".join(field_.selected)
    elif isinstance(value, dict) and "latitude" in value:
        parts = [value.get(k) for k in ("latitude", "longitude", "altitude", "accuracy")]
        field_.value = " ".join(_plain(p) for p in parts if p is not None)
    else:
        field_.value = _plain(value)
        field_.selected = [field_.value]
    choice_list = renderer.definition.choice_lists.get(question.choice_list or "")
    if choice_list is not None and question.type in ("select_one", "select_multiple"):
        field_.choices = [
            (choice.name, text_in(choice.labels, renderer.language, choice.name))
            for choice in choice_list.choices
        ]
        field_.multiple = question.type == "select_multiple"
    elif question.itemset_file and question.type == "select_one_from_file":
        from_file = renderer.file_choices(question.itemset_file)
        if from_file:
            field_.choices = [
                (name, text_in(labels, renderer.language, name))
                for name, labels in from_file.items()
            ]
    return field_


# ------------------------------------------------------------------------- maps

# A coarse outline of Somalia and Kenya (longitude, latitude) — enough to see where a
# point falls when no map tiles are available offline; not a boundary reference.
OUTLINES: dict[str, list[tuple[float, float]]] = {
    "Somalia": [
        (43.25, 11.47),
        (44.0, 10.45),
        (45.0, 10.44),
        (46.5, 10.75),
        (48.2, 11.15),
        (49.2, 11.28),
        (50.5, 11.6),
        (51.27, 11.83),
        (51.1, 11.0),
        (51.4, 10.45),
        (50.8, 9.3),
        (49.82, 7.98),
        (48.9, 6.2),
        (48.53, 5.35),
        (47.5, 4.0),
        (46.3, 2.8),
        (45.34, 2.04),
        (44.77, 1.71),
        (44.03, 1.11),
        (43.2, 0.3),
        (42.54, -0.36),
        (41.56, -1.66),
        (40.99, -0.87),
        (41.0, 2.78),
        (41.9, 3.95),
        (42.05, 4.2),
        (43.0, 4.6),
        (44.0, 4.95),
        (45.15, 5.0),
        (46.0, 6.3),
        (47.0, 7.3),
        (47.98, 7.99),
        (46.95, 7.99),
        (44.0, 8.9),
        (43.4, 9.4),
        (42.95, 10.0),
        (42.8, 10.98),
    ],
    "Kenya": [
        (41.56, -1.66),
        (40.9, -2.27),
        (40.12, -3.22),
        (39.67, -4.05),
        (39.2, -4.68),
        (37.6, -3.0),
        (34.07, -1.0),
        (33.95, 0.1),
        (34.1, 0.6),
        (34.6, 1.1),
        (34.9, 2.0),
        (34.4, 3.8),
        (33.99, 4.22),
        (35.3, 5.0),
        (35.9, 4.6),
        (36.1, 4.45),
        (38.0, 3.6),
        (39.05, 3.52),
        (40.0, 4.0),
        (41.2, 3.95),
        (41.9, 3.95),
        (41.0, 2.78),
        (40.99, -0.87),
    ],
}
MAP_BOUNDS = (33.5, -5.2, 52.0, 12.3)  # west, south, east, north
MAP_WIDTH = 220


@dataclass
class LocatorMap:
    width: int
    height: int
    outlines: list[tuple[str, str]]  # (name, "x,y x,y …")
    x: float
    y: float
    graticule: list[tuple[float, float, float, float]]


def locator_map(point: GeoPoint) -> LocatorMap:
    """Where the point falls on the coarse outline, as SVG coordinates."""
    west, south, east, north = MAP_BOUNDS
    margin = 1.0
    west = min(west, point.longitude - margin)
    east = max(east, point.longitude + margin)
    south = min(south, point.latitude - margin)
    north = max(north, point.latitude + margin)
    scale = MAP_WIDTH / (east - west)
    height = round((north - south) * scale)

    def xy(longitude: float, latitude: float) -> tuple[float, float]:
        return round((longitude - west) * scale, 1), round((north - latitude) * scale, 1)

    outlines = [
        (name, " ".join(f"{x},{y}" for x, y in (xy(*p) for p in points)))
        for name, points in OUTLINES.items()
    ]
    graticule = []
    for longitude in range(int(west // 5 + 1) * 5, int(east) + 1, 5):
        x, _ = xy(longitude, north)
        graticule.append((x, 0.0, x, float(height)))
    for latitude in range(int(south // 5 + 1) * 5, int(north) + 1, 5):
        _, y = xy(west, latitude)
        graticule.append((0.0, y, float(MAP_WIDTH), y))
    x, y = xy(point.longitude, point.latitude)
    return LocatorMap(MAP_WIDTH, height, outlines, x, y, graticule)


# ------------------------------------------------------------------------ chart


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: dt.date
    count: int
    label: str = ""


@dataclass
class BarChart:
    width: int
    height: int
    plot_height: int
    bars: list[Bar]
    maximum: int
    total: int


def bar_chart(per_day: Sequence[tuple[dt.date, int]], *, width: int = 1000) -> BarChart:
    """Bars for submissions per day; every seventh day labelled, from the last one back."""
    plot_height, label_room = 140, 22
    maximum = max((number for _day, number in per_day), default=0)
    slot = width / max(1, len(per_day))
    bars = []
    last = len(per_day) - 1
    for position, (day, number) in enumerate(per_day):
        height = 0.0 if maximum == 0 else round(number / maximum * (plot_height - 16), 1)
        if number and height < 2:
            height = 2.0
        bars.append(
            Bar(
                x=round(position * slot + 1, 1),
                y=round(plot_height - height, 1),
                width=round(max(1.0, slot - 2), 1),
                height=height,
                day=day,
                count=number,
                label=day.strftime("%d %b") if (last - position) % 7 == 0 else "",
            )
        )
    return BarChart(
        width=width,
        height=plot_height + label_room,
        plot_height=plot_height,
        bars=bars,
        maximum=maximum,
        total=sum(number for _day, number in per_day),
    )
