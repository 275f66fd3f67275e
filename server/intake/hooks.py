"""Where processing hands parsed submissions on (the registry registers itself here).

A hook runs inside the worker's transaction: it flushes, never commits, and raising
makes its submissions fail and retry with nothing applied. The worker hands on a batch
of submissions at once: a per-submission hook (`on_processed`) is called for each, a
batch hook (`on_processed_batch`) once for all of them, so that it can read and write
for the lot in a few statements. A batch hook that raises makes the worker hand the
batch's submissions on again one at a time, so only the one at fault fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from forms.definition import FormDefinition
    from forms.instance import ParsedInstance
    from server.intake.models import Submission


class Processed(NamedTuple):
    submission: Submission
    parsed: ParsedInstance
    definition: FormDefinition


ProcessedHook = Callable[["Session", "Submission", "ParsedInstance", "FormDefinition"], None]
ProcessedBatchHook = Callable[["Session", Sequence[Processed]], None]

_processed_hooks: list[ProcessedHook] = []
_batch_hooks: list[ProcessedBatchHook] = []


def on_processed(hook: ProcessedHook) -> ProcessedHook:
    if hook not in _processed_hooks:
        _processed_hooks.append(hook)
    return hook


def on_processed_batch(hook: ProcessedBatchHook) -> ProcessedBatchHook:
    if hook not in _batch_hooks:
        _batch_hooks.append(hook)
    return hook


def run_processed_hooks(session: Session, processed: Sequence[Processed]) -> None:
    """Per-submission hooks for each submission in turn, then batch hooks once."""
    for item in processed:
        for hook in list(_processed_hooks):
            hook(session, item.submission, item.parsed, item.definition)
    if processed:
        for batch_hook in list(_batch_hooks):
            batch_hook(session, processed)
