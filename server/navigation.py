"""Navigation by role: each entry shows only to roles whose permissions allow it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, g, request, url_for

from server.accounts.service import can


@dataclass(frozen=True)
class NavEntry:
    label: str
    endpoint: str
    permission: str


NAVIGATION: list[NavEntry] = [
    NavEntry("Dashboard", "review.dashboard", "submissions.review"),
    NavEntry("Submissions", "review.queue", "submissions.read"),
    NavEntry("Registry", "registry.households", "registry.read"),
    NavEntry("Duplicates", "registry.candidates", "registry.decide"),
    NavEntry("Forms", "catalog.forms", "forms.read"),
    NavEntry("Processing", "intake.failures", "submissions.manage"),
    NavEntry("Keys", "catalog.keys", "keys.manage"),
    NavEntry("Users", "accounts.users", "users.manage"),
    NavEntry("Districts", "accounts.districts", "forms.read"),
    NavEntry("Audit log", "accounts.audit_log", "audit.read"),
    NavEntry("API", "api_docs", "tokens.own"),
]


def init_app(app: Flask) -> None:
    @app.context_processor
    def _navigation() -> dict[str, Any]:
        def nav_items() -> list[dict[str, Any]]:
            items = []
            for entry in NAVIGATION:
                if entry.endpoint not in app.view_functions or not can(
                    g.get("user"), entry.permission
                ):
                    continue
                items.append(
                    {
                        "label": entry.label,
                        "url": url_for(entry.endpoint),
                        "active": request.endpoint == entry.endpoint,
                    }
                )
            return items

        return {"nav_items": nav_items}
