"""Saved searches: each user's named queries in an organization, and how many emails each matches.

A saved search belongs to one user in one organization (the table is under RLS like every
tenant table); saving under a name already used replaces that search's query. The query is
checked when it is saved, so the sidebar only holds queries that run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from tasks.core import db, errors
from tasks.domain import search
from tasks.domain.models import Scope

#: How many searches one user keeps in one organization (each is counted on every dashboard page).
MAX_SAVED = 20
MAX_NAME = 100


@dataclasses.dataclass(frozen=True, kw_only=True)
class SavedSearch:
    id: int
    name: str
    query: str
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SavedSearch:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})


def _owner(scope: Scope) -> dict[str, Any]:
    if scope.org_id is None or scope.user_id is None:
        raise errors.ValidationError("a saved search belongs to a member of an organization", field=None)
    return {"org_id": scope.org_id, "user_id": scope.user_id}


def list_for(conn: db.Conn, scope: Scope) -> list[SavedSearch]:
    """Return the user's saved searches in the organization, oldest first."""
    return [SavedSearch.from_row(r) for r in db.all_rows(conn, "saved_searches_list", **_owner(scope))]


def save(conn: db.Conn, scope: Scope, *, name: Any, query: Any) -> SavedSearch:
    """Save ``query`` under ``name`` (replacing the query of a search of that name), or raise ``ValidationError``."""
    owner = _owner(scope)
    if not isinstance(name, str) or not name.strip():
        raise errors.ValidationError("name: give the search a name", field="name")
    name = name.strip()
    if len(name) > MAX_NAME or not name.isprintable():
        raise errors.ValidationError(f"name: at most {MAX_NAME} printable characters", field="name")
    if not isinstance(query, str) or not query.strip():
        raise errors.ValidationError("q: there is no search to save", field="q")
    query = query.strip()
    search.compile_query(query, scope)  # a QueryError (422, field q) says what is wrong
    with conn.transaction():
        mine = [s for s in list_for(conn, scope) if s.name != name]
        if len(mine) >= MAX_SAVED:
            raise errors.ValidationError(f"name: at most {MAX_SAVED} saved searches; delete one first", field="name")
        row = db.one(conn, "saved_search_insert", name=name, query=query, **owner)
    assert row is not None
    return SavedSearch.from_row(row)


def delete(conn: db.Conn, scope: Scope, search_id: int) -> None:
    """Delete one of the user's saved searches, or raise ``NotFound``."""
    if db.one(conn, "saved_search_delete", id=search_id, **_owner(scope)) is None:
        raise errors.NotFound(f"no saved search with id {search_id}")


def counts(conn: db.Conn, scope: Scope, found: list[SavedSearch] | None = None) -> dict[int, int]:
    """Return how many emails each saved search matches now (up to ``search.COUNT_CAP``)."""
    out: dict[int, int] = {}
    for saved in list_for(conn, scope) if found is None else found:
        try:
            out[saved.id] = search.count(conn, scope, saved.query)
        except errors.ValidationError:  # a query a later version no longer reads: shown without a count
            continue
    return out
