"""Search in the dashboard: the autocomplete's JSON, saved searches (save, delete) and their live counts.

The search itself is the list's ``?q=`` (``webapp/dashboard.py``); the language is
``tasks/domain/search.py``. Saved searches are each user's own, in the current organization.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, request, url_for

from tasks.core import errors
from tasks.domain import saved_searches, search
from webapp import ext
from webapp.auth import login_required, scope

bp = Blueprint("search", __name__)

#: The longest word the autocomplete completes (a qualifier and the start of its value).
MAX_WORD = 100


@bp.get("/search/suggest")
@login_required
def suggest() -> Any:
    """Complete the word being typed (``?w=``): qualifiers, then values seen in the organization."""
    word = request.args.get("w", "")
    if len(word) > MAX_WORD or "\x00" in word:
        raise errors.ValidationError(f"w: at most {MAX_WORD} characters", field="w")
    found = search.suggest(ext.conn(), scope(), word)
    return {"suggestions": [{"text": s.text, "hint": s.hint} for s in found]}


@bp.get("/searches/counts.json")
@login_required
def counts() -> Any:
    """How many emails each of the user's saved searches matches now (capped: ``cap``)."""
    found = saved_searches.counts(ext.conn(), scope())
    return {"counts": {str(k): v for k, v in found.items()}, "cap": search.COUNT_CAP}


@bp.post("/searches")
@login_required
def save() -> Any:
    """Save the search in the box under a name; show its results."""
    query = request.form.get("q", "")
    try:
        saved = saved_searches.save(ext.conn(), scope(), name=request.form.get("name"), query=query)
    except errors.ValidationError as exc:
        flash(exc.message, "error")
        return redirect(url_for("dashboard.index", view="all", q=query or None))
    flash(f"Saved as “{saved.name}”.", "ok")
    return redirect(url_for("dashboard.index", view="all", q=saved.query))


@bp.post("/searches/<int:search_id>/delete")
@login_required
def delete(search_id: int) -> Any:
    """Delete one of the user's saved searches."""
    saved_searches.delete(ext.conn(), scope(), search_id)
    flash("Saved search deleted.", "ok")
    return redirect(url_for("dashboard.index"))
