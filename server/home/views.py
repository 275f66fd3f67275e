"""Landing page: where each role starts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, render_template

from server.accounts.auth import login_required

pages = Blueprint("home", __name__)


@pages.get("/")
@login_required
def index() -> Any:
    return render_template("home.html", user=g.user)
