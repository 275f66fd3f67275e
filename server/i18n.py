"""Translation-ready UI strings: `_()` and `ngettext()` in templates and in Python.

They return the English text for now (formatted with gettext's `%(name)s` placeholders),
so the strings are marked and a message catalogue can be added without touching pages.
"""

from __future__ import annotations

from typing import Any

from flask import Flask


def gettext(message: str, **variables: Any) -> str:
    return message % variables if variables else message


def ngettext(singular: str, plural: str, number: int, **variables: Any) -> str:
    variables.setdefault("num", number)
    return (singular if number == 1 else plural) % variables


_ = gettext


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(_=gettext, gettext=gettext, ngettext=ngettext)
