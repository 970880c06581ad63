"""The dev mailbox's search: ``from:x to:y subject:"z" has:attachment`` and free text.

Each term narrows the list (all must match); ``!`` or ``-`` before a term negates it.
Values match case-insensitively anywhere in the field. A query that cannot be read is
refused with what is wrong, never answered by an empty list.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Protocol

QUALIFIERS = ("from", "to", "subject", "has")
HAS_VALUES = ("attachment",)
#: One term: an optional negation, an optional ``qualifier:``, then a quoted or bare value.
_TERM = re.compile(r'(?P<neg>[!-])?(?:(?P<key>[A-Za-z]+):)?(?:"(?P<quoted>[^"]*)"|(?P<bare>[^\s"]+))')
_EMPTY_QUALIFIER = re.compile(r"[!-]?([A-Za-z]+):")


class QueryError(ValueError):
    """The query cannot be read: ``message`` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclasses.dataclass(frozen=True)
class Term:
    """One condition: ``field`` is a qualifier, or ``text`` for free text."""

    field: str
    value: str
    negated: bool = False


class Searchable(Protocol):
    """What a message is matched on; ``body`` and ``has_attachment`` are asked for last (costlier)."""

    @property
    def mail_from(self) -> str: ...

    @property
    def to(self) -> str: ...

    @property
    def subject(self) -> str: ...

    @property
    def body(self) -> str: ...

    @property
    def has_attachment(self) -> bool: ...


def parse(query: str) -> list[Term]:
    """Read a query into its terms; raise ``QueryError`` saying what is wrong."""
    terms: list[Term] = []
    pos = 0
    while True:
        while pos < len(query) and query[pos].isspace():
            pos += 1
        if pos >= len(query):
            return terms
        match = _TERM.match(query, pos)
        if match is None or match.end() == pos:
            rest = query[pos:]
            if rest.lstrip("!-").startswith('"') or '"' in rest.split(" ", 1)[0]:
                raise QueryError(f"a quote opened at character {pos + 1} is never closed")
            raise QueryError(f"cannot read the query from character {pos + 1}: {rest[:20]!r}")
        token = match.group(0)
        empty = _EMPTY_QUALIFIER.fullmatch(token)
        if match["key"] is None and empty and (match.end() == len(query) or query[match.end()].isspace()):
            raise QueryError(f"{empty[1]}: needs a value, e.g. {empty[1]}:alice")
        key = (match["key"] or "").lower()
        value = match["quoted"] if match["quoted"] is not None else match["bare"] or ""
        if key and key not in QUALIFIERS:
            raise QueryError(
                f"unknown qualifier {key}: (known: {', '.join(q + ':' for q in QUALIFIERS)});"
                ' put text with a colon in quotes: "a:b"'
            )
        if key == "has" and value.lower() not in HAS_VALUES:
            raise QueryError(f"has: takes {', '.join(HAS_VALUES)}, not {value!r}")
        if key and not value:
            raise QueryError(f"{key}: needs a value, e.g. {key}:alice")
        terms.append(Term(field=key or "text", value=value.lower(), negated=match["neg"] is not None))
        pos = match.end()


def matches(terms: list[Term], item: Searchable) -> bool:
    """Tell whether ``item`` meets every term (those on headers first: the rest need the whole message)."""
    ordered = sorted(terms, key=lambda term: term.field in ("text", "has"))
    return all(_holds(term, item) != term.negated for term in ordered)


def _holds(term: Term, item: Searchable) -> bool:
    if term.field == "has":
        return item.has_attachment
    if term.field == "from":
        return term.value in item.mail_from.lower()
    if term.field == "to":
        return term.value in item.to.lower()
    if term.field == "subject":
        return term.value in item.subject.lower()
    return (
        term.value in item.subject.lower()
        or term.value in item.mail_from.lower()
        or term.value in item.to.lower()
        or term.value in item.body.lower()
    )
