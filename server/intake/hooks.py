"""Where processing hands a parsed submission on (the registry registers itself here).

A hook runs inside the worker's transaction: it flushes, never commits, and raising
makes the whole item fail and retry with nothing applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from forms.definition import FormDefinition
    from forms.instance import ParsedInstance
    from server.intake.models import Submission

ProcessedHook = Callable[["Session", "Submission", "ParsedInstance", "FormDefinition"], None]

_processed_hooks: list[ProcessedHook] = []


def on_processed(hook: ProcessedHook) -> ProcessedHook:
    if hook not in _processed_hooks:
        _processed_hooks.append(hook)
    return hook


def run_processed_hooks(
    session: Session, submission: Submission, parsed: ParsedInstance, definition: FormDefinition
) -> None:
    for hook in list(_processed_hooks):
        hook(session, submission, parsed, definition)
