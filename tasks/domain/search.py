"""The search language: qualifiers, free text and negation, compiled to parameterised SQL.

A query is a sequence of terms separated by spaces, all of which must hold::

    status:failed,uncertain to:ann@ "subject:Invoice 12" !domain:example.com after:-1h code:5xx

A term is ``[!]qualifier:value`` or ``[!]text``; a value or a text holding spaces is quoted
(``subject:"weekly report"``, with ``\\"`` and ``\\\\`` inside quotes). The grammar is flat (no
operators, no grouping), so it is read by a small tokenizer that keeps each term's position,
for errors that say where the problem is. Every value reaches PostgreSQL as a parameter; the
SQL text is made only of the fixed fragments in ``_SQL`` (docs/search.md lists the language,
the indexes each qualifier uses and their plans).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Iterator
from typing import Any, LiteralString

from psycopg import sql

from tasks.core import db, errors
from tasks.domain.models import Scope, Status

#: Longest query accepted (the saved_searches table holds as much).
MAX_QUERY = 200
#: Every qualifier, with what its value is (the autocomplete's and the docs' words).
QUALIFIERS: dict[str, str] = {
    "status": "a status or list: scheduled, sent, failed, … (comma: any of them)",
    "to": "part of a recipient's address (To, Cc or Bcc)",
    "from": "part of the From address or of the member who wrote it; me: your own",
    "subject": "part of the subject",
    "batch": "a batch's id, or part of its name or subject",
    "recurrence": "a recurrence's id, or part of its subject",
    "error": "part of the last error",
    "code": "the SMTP reply code: 550, 5xx, 45x; or an enhanced status in the last error, such as 5.1.1",
    "domain": "a recipient's domain, exactly: example.com (comma: any of them)",
    "before": "sent (or due) before: 2026-12-01, 2026-12-01T09:30, or relative: -1h, -2d, +30m",
    "after": "sent (or due) at or after: like before:",
}
#: What ``status:`` accepts: the dashboard's views (``scheduled`` holds ``sending``, ``all``) and each status.
STATUS_WORDS: dict[str, tuple[str, ...]] = {
    "scheduled": (Status.SCHEDULED, Status.SENDING),
    **{s.value: (s.value,) for s in Status if s != Status.SCHEDULED},
    "all": tuple(s.value for s in Status),
}
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_RELATIVE = re.compile(r"([+-])([0-9]{1,6})([mhdw])")
_KEY = re.compile(r"([A-Za-z_]+):")
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)*")
_CODE = re.compile(r"[2-5][0-9x]{2}")
_ENHANCED = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
#: A count is exact up to this many matches, then shown as "1000+": counting a million
#: matches would cost far more than the page itself.
COUNT_CAP = 1000
#: How many of the newest rows a search reads first (``page_rows``).
FIRST_LOOK = 5000
#: An email is created before it is due, give or take this: ``before:`` a time finds emails created
#: before it plus this, and those due longer before they were created (the application makes none; a
#: row written into the table could be one) through ``emails_org_backdated_idx``, whose predicate says the same
#: (migration 0024; sql/queries.sql, search_emails_recent_before).
BACKDATED = dt.timedelta(hours=1)
#: The planner's settings for a search through the indexes (``page_rows``): rows read from the table
#: cost five times the default, so it narrows them down with every index that applies (a BitmapAnd of
#: the subject's trigrams and the owner) rather than checking each row one index finds; and no parallel
#: workers: the indexes are read by one process anyway (a bitmap is built by the leader), and starting two
#: workers to read the few rows left cost 20 to 30 ms a search (docs/search.md).
THROUGH_INDEXES: dict[LiteralString, LiteralString] = {
    "enable_indexscan": "off",
    "cpu_tuple_cost": "0.05",
    "max_parallel_workers_per_gather": "0",
}
#: ``cpu_tuple_cost`` through the indexes for a query with ``!from:me``: the other members' emails, a range of
#: the owner's index on each side of the user's id (``not_from_me``), are most of the organization, and at
#: 0.05 the planner reads each email the other conditions' indexes find (the 183,000 of a phrase, 0.4 s)
#: rather than AND them with that index (70 to 80 ms, docs/search.md); at 0.2 it ANDs them.
NOT_MINE_ROW_COST: LiteralString = "0.2"
#: ``from:`` a name looks up the users it names first, and passes their ids to the search when they are
#: at most this many: the planner then ORs the owner's index with the From address's (a ``BitmapOr``) and
#: ANDs that with the other conditions' indexes. More (``from:a`` in a big installation), and the search
#: reads them itself, as a sub-select the planner cannot combine (docs/search.md, "How it is fast").
MEMBERS_LISTED = 100

# One fragment per kind of condition. {v}, {lo}, {hi}: the term's parameters; {any_org},
# {org_id}: the caller's scope (sub-selects on other tables are scoped too, not only by RLS).
#: Every recipient (To, Cc, Bcc) in one text: a stored column (migration 0020).
_RECIPIENTS: LiteralString = "recipients"
_SQL: dict[str, LiteralString] = {
    "text": "(subject ILIKE {v} OR " + _RECIPIENTS + " ILIKE {v})",
    "subject": "subject ILIKE {v}",
    "to": _RECIPIENTS + " ILIKE {v}",
    "domain": "recipient_domains && {v}::text[]",
    "error": "(last_error IS NOT NULL AND last_error ILIKE {v})",
    "status": "status = ANY({v}::text[])",
    "code": "reply_code BETWEEN {lo} AND {hi}",
    "enhanced": "(last_error IS NOT NULL AND last_error ~ {v})",
    "from": (
        "(from_addr ILIKE {v} OR owner_id IN (SELECT u.id FROM users u WHERE u.email ILIKE {v} OR u.name ILIKE {v}))"
    ),
    # {ids}: the users whose address or name holds the text, looked up first (compile_query with a connection).
    "from_ids": "(from_addr ILIKE {v} OR owner_id = ANY({ids}::bigint[]))",
    "from_me": "owner_id = {v}",
    # !from:me: owner_id is never NULL, so this is NOT (owner_id = v), written as two ranges of the owner's
    # index that the planner can OR (a BitmapOr) and AND with other conditions' indexes (docs/search.md).
    "not_from_me": "(owner_id < {v} OR owner_id > {v})",
    "batch_id": "batch_id = {v}",
    "batch": (
        "batch_id IN (SELECT b.id FROM batches b WHERE ({any_org} OR b.org_id = {org_id})"
        " AND (b.name || ' ' || b.subject_template) ILIKE {v})"
    ),
    "recurrence_id": "recurrence_id = {v}",
    "recurrence": (
        "recurrence_id IN (SELECT r.id FROM recurrences r WHERE ({any_org} OR r.org_id = {org_id})"
        " AND r.subject ILIKE {v})"
    ),
    "before": "send_at < {v}",
    "after": "send_at >= {v}",
}


class QueryError(errors.ValidationError):
    """The search query is invalid."""

    def __init__(self, reason: str, position: int):
        #: Where the problem is: 1 for the query's first character.
        self.position = position
        super().__init__(f"q: {reason} (at character {position})", field="q")


@dataclasses.dataclass(frozen=True)
class Term:
    """One term of a query: ``key`` None for free text."""

    key: str | None
    value: str
    negated: bool = False
    #: Where the term starts in the query, 0-based.
    start: int = 0


def tokenize(query: str) -> list[Term]:
    """Split a query into its terms, or raise ``QueryError`` saying where and why."""
    if len(query) > MAX_QUERY:
        raise QueryError(f"at most {MAX_QUERY} characters", MAX_QUERY + 1)
    if "\x00" in query:
        raise QueryError("must not contain NUL characters", query.index("\x00") + 1)
    terms: list[Term] = []
    i, n = 0, len(query)
    while i < n:
        if query[i].isspace():
            i += 1
            continue
        start = i
        negated = query[i] == "!"
        if negated:
            i += 1
        key = None
        found = _KEY.match(query, i)
        if found:
            key = found.group(1).lower()
            if key not in QUALIFIERS:
                raise QueryError(
                    f'unknown qualifier "{found.group(1)}:"; the qualifiers are '
                    + ", ".join(f"{k}:" for k in QUALIFIERS)
                    + ' (to search for this text, quote it: "'
                    + found.group(0)
                    + '…")',
                    i + 1,
                )
            i = found.end()
        if i < n and query[i] == '"':
            value, i = _quoted(query, i)
        else:
            end = i
            while end < n and not query[end].isspace():
                if query[end] == '"':
                    raise QueryError('a quote must open a value (write "…" around the whole value)', end + 1)
                end += 1
            value, i = query[i:end], end
        if not value.strip():
            what = f"{key}: needs a value" if key else "! must be followed by what to leave out"
            raise QueryError(what, start + 1)
        terms.append(Term(key, value, negated, start))
    return terms


def _quoted(query: str, i: int) -> tuple[str, int]:
    """Read the quoted value opening at ``i``; return it and the index after its closing quote."""
    out: list[str] = []
    j = i + 1
    while j < len(query):
        ch = query[j]
        if ch == "\\" and j + 1 < len(query) and query[j + 1] in '"\\':
            out.append(query[j + 1])
            j += 2
            continue
        if ch == '"':
            return "".join(out), j + 1
        out.append(ch)
        j += 1
    raise QueryError("this quote is never closed", i + 1)


def _like(value: str) -> str:
    """Return an ILIKE pattern matching ``value`` literally, anywhere."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclasses.dataclass
class Compiled:
    """A query as a SQL condition (``TRUE`` for an empty one) and its parameters."""

    condition: sql.Composable
    params: dict[str, Any]
    terms: list[Term]
    #: The one status every match has, when the query names one (``status:failed``): the newest
    #: rows a search reads first are then the newest of that status (``page_rows``).
    lead_status: str | None = None
    #: Every match was created before this or is in ``emails_org_backdated_idx`` (``BACKDATED``), when the
    #: query bounds the send time from above (``before:``, ``!after:``): the newest rows that can match.
    created_before: dt.datetime | None = None
    #: The query leaves out the user's own emails (``!from:me``): ``NOT_MINE_ROW_COST`` through the indexes.
    not_mine: bool = False


class _Builder:
    def __init__(self, scope: Scope, now: dt.datetime, conn: db.Conn | None):
        self.scope, self.now, self.conn = scope, now, conn
        self.params: dict[str, Any] = {}
        self.parts: list[sql.Composable] = []
        self.lead_status: str | None = None
        self.created_before: dt.datetime | None = None
        self.not_mine = False

    def send_before(self, at: dt.datetime) -> None:
        """Note that every match is due before ``at``: created before ``at + BACKDATED``, or backdated."""
        try:
            bound = at + BACKDATED
        except OverflowError:  # the year 9999: no bound
            return
        if self.created_before is None or bound < self.created_before:
            self.created_before = bound

    def add(self, kind: str, negated: bool, **values: Any) -> None:
        names = {}
        for name, value in values.items():
            key = f"s{len(self.params)}"
            self.params[key] = value
            names[name] = sql.Placeholder(key)
        fragment = sql.SQL(_SQL[kind]).format(
            **names, any_org=sql.Placeholder("any_org"), org_id=sql.Placeholder("org_id")
        )
        # Negated, a condition on a column that may be NULL (error:, code:) still keeps the rows without one.
        self.parts.append(sql.SQL("NOT coalesce({}, false)").format(fragment) if negated else fragment)


def compile_query(
    query: str | None, scope: Scope, *, now: dt.datetime | None = None, conn: db.Conn | None = None
) -> Compiled:
    """Compile a query into a condition on ``emails`` for this scope, or raise ``QueryError``.

    With ``conn``, what the condition needs from other tables is read now (``from:`` a name: the users
    it names, ``MEMBERS_LISTED``), for a condition the planner can combine with the others' indexes;
    without, the condition reads it itself (the same rows match either way)."""
    terms = tokenize((query or "").strip())
    b = _Builder(scope, now or dt.datetime.now(dt.UTC), conn)
    for term in terms:
        _compile_term(b, term)
    condition = sql.SQL(" AND ").join(b.parts) if b.parts else sql.SQL("TRUE")
    return Compiled(
        condition=condition,
        params=b.params,
        terms=terms,
        lead_status=b.lead_status,
        created_before=b.created_before,
        not_mine=b.not_mine,
    )


def _compile_term(b: _Builder, t: Term) -> None:
    pos = t.start + 1 + (1 if t.negated else 0)
    neg = t.negated
    value = t.value.strip()
    match t.key:
        case None:
            b.add("text", neg, v=_like(value))
        case "subject" | "to" | "error":
            b.add(t.key, neg, v=_like(value))
        case "status":
            wanted: list[str] = []
            for word in value.lower().split(","):
                if word not in STATUS_WORDS:
                    raise QueryError(f'status: "{word}" is not one of {", ".join(STATUS_WORDS)}', pos)
                wanted += STATUS_WORDS[word]
            b.add("status", neg, v=sorted(set(wanted)))
            if not neg and len(set(wanted)) == 1:
                b.lead_status = wanted[0]
        case "from":
            if value.lower() == "me":
                if b.scope.user_id is None:
                    raise QueryError("from:me needs a signed-in user", pos)
                if neg:
                    b.add("not_from_me", False, v=b.scope.user_id)
                    b.not_mine = True
                else:
                    b.add("from_me", False, v=b.scope.user_id)
            else:
                _compile_from(b, _like(value), neg)
        case "batch" | "recurrence":
            try:
                b.add(f"{t.key}_id", neg, v=uuid.UUID(value))
            except ValueError:
                b.add(t.key, neg, v=_like(value))
        case "code":
            _compile_code(b, value.lower(), neg, pos)
        case "domain":
            names = value.lower().split(",")
            for name in names:
                if not _DOMAIN.fullmatch(name.removeprefix("@")):
                    raise QueryError(f'domain: "{name}" is not a domain name (such as example.com)', pos)
            b.add("domain", neg, v=sorted({name.removeprefix("@") for name in names}))
        case "before" | "after":
            at = parse_time(value, b.now, t.key, pos)
            b.add(t.key, neg, v=at)
            if (t.key == "before") != neg:  # before:, or !after: (send_at is never NULL)
                b.send_before(at)
        case _:  # pragma: no cover - tokenize refuses unknown qualifiers
            raise QueryError(f"unknown qualifier {t.key}:", pos)


def _compile_from(b: _Builder, pattern: str, neg: bool) -> None:
    """``from:`` a text: the From address, or a user whose address or name holds it (``MEMBERS_LISTED``)."""
    if b.conn is None:
        b.add("from", neg, v=pattern)
        return
    rows = db.all_rows(b.conn, "search_from_users", pattern=pattern, limit=MEMBERS_LISTED + 1)
    if len(rows) > MEMBERS_LISTED:
        b.add("from", neg, v=pattern)
    else:
        b.add("from_ids", neg, v=pattern, ids=[r["id"] for r in rows])


def _compile_code(b: _Builder, value: str, neg: bool, pos: int) -> None:
    if _ENHANCED.fullmatch(value):
        b.add("enhanced", neg, v="(^|[ :])" + re.escape(value) + "( |$)")
    elif _CODE.fullmatch(value) and "x" not in value.rstrip("x"):
        fixed = value.rstrip("x")
        width = 10 ** (3 - len(fixed))
        b.add("code", neg, lo=int(fixed) * width, hi=int(fixed) * width + width - 1)
    else:
        raise QueryError(f'code: "{value}" is not a reply code such as 550, 5xx, 45x or 5.1.1', pos)


def relative(text: str) -> dt.timedelta | None:
    """Read a relative time (``-1h``, ``+30m``, ``+2d``, ``-1w``) as a signed duration; None if it is not one."""
    found = _RELATIVE.fullmatch(text.strip().lower())
    if not found:
        return None
    sign, amount, unit = found.groups()
    delta = dt.timedelta(**{_UNITS[unit]: int(amount)})
    return -delta if sign == "-" else delta


def parse_time(value: str, now: dt.datetime, key: str, pos: int) -> dt.datetime:
    """Read ``before:``/``after:``'s value: ``now``, ``today`` (UTC), relative (``-1h``), or ISO 8601
    (UTC when it has no offset)."""
    text = value.strip()
    if text.lower() == "now":
        return now
    if text.lower() == "today":
        return now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    delta = relative(text)
    if delta is not None:
        try:
            return now + delta
        except OverflowError:
            raise QueryError(f"{key}: {text} is too far", pos) from None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(
            f'{key}: "{text}" is not a time: write 2026-12-01, 2026-12-01T09:30, or -1h, -2d, +30m', pos
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


# ---- running it ----


def page_rows(
    conn: db.Conn,
    scope: Scope,
    compiled: Compiled,
    *,
    statuses: list[str],
    batch_id: uuid.UUID | None,
    delivery: str | None = None,
    before_created: dt.datetime | None,
    before_id: uuid.UUID | None,
    limit: int,
) -> list[db.Row]:
    """Return up to ``limit`` matching emails, newest first, after the keyset cursor.

    A page can be found two ways: read the list's newest rows in order until enough match
    (fast when matches are common), or find every match through the conditions' indexes and
    sort them (fast when they are rare). The planner picks by its estimate of how common the
    matches are, and a wrong one costs seconds at a million emails (matches that are common
    overall but all old, or conditions that seldom hold together). So a query first reads
    only the newest ``FIRST_LOOK`` rows that can match (with ``before:``, from the send time
    plus ``BACKDATED`` down, and the backdated emails after it): when they hold a page of
    matches, that is the answer. Otherwise matches are rare among them, and the page is found
    through the indexes, with the settings ``THROUGH_INDEXES`` for that statement.
    """
    statement, params = page_statement(scope, compiled, statuses=statuses, batch_id=batch_id, delivery=delivery)
    params |= {"before_created": before_created, "before_id": before_id, "limit": limit}
    # Planned for these values every time (never a generic plan): whether an index on the
    # subject beats reading the newest rows depends on how rare the text is.
    if not compiled.terms:
        return conn.execute(statement, params, prepare=False).fetchall()
    recent, _ = page_statement(
        scope, compiled, statuses=statuses, batch_id=batch_id, delivery=delivery, query=first_query(compiled)
    )
    lead = compiled.lead_status or (statuses[0] if len(statuses) == 1 else None)
    first = {"first_look": FIRST_LOOK, "lead_status": lead, "created_before": compiled.created_before}
    rows = conn.execute(recent, params | first, prepare=False).fetchall()
    if len(rows) >= limit:
        return rows
    with through_indexes(conn, compiled):
        return conn.execute(statement, params, prepare=False).fetchall()


def first_query(compiled: Compiled) -> LiteralString:
    """The statement that reads the newest rows that can match (``page_rows``)."""
    return "search_emails_recent" if compiled.created_before is None else "search_emails_recent_before"


@contextlib.contextmanager
def through_indexes(conn: db.Conn, compiled: Compiled) -> Iterator[None]:
    """Run the statements inside with ``THROUGH_INDEXES`` (ordered index scans ruled out, rows read from the
    table dearer; dearer still for ``!from:me``, ``NOT_MINE_ROW_COST``), in a transaction or a savepoint of
    the caller's, set back after them either way."""
    chosen = THROUGH_INDEXES | ({"cpu_tuple_cost": NOT_MINE_ROW_COST} if compiled.not_mine else {})
    settings = [sql.SQL("SET LOCAL {} = {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in chosen.items()]
    with conn.transaction():
        conn.execute(sql.SQL("; ").join(settings))  # one round trip (no parameters: a simple query)
        try:
            yield
        finally:
            # SET LOCAL lasts to the end of the outer transaction, not of a savepoint.
            conn.execute(sql.SQL("; ").join(sql.SQL("RESET {}").format(sql.Identifier(k)) for k in THROUGH_INDEXES))


def page_statement(
    scope: Scope,
    compiled: Compiled,
    *,
    statuses: list[str],
    batch_id: uuid.UUID | None,
    delivery: str | None = None,
    query: LiteralString = "search_emails",
) -> tuple[sql.Composed, dict[str, Any]]:
    """Return ``search_emails`` with the query's conditions, and the list's own (a tab, a batch, a delivery
    state) when they filter."""
    parts = [compiled.condition]
    params = {**compiled.params, **scope.params()}
    # "All statuses" is no condition: written out, it misled the planner into reading the whole organization.
    if set(statuses) != set(STATUS_WORDS["all"]):
        parts.append(sql.SQL("status = ANY({}::text[])").format(sql.Placeholder("statuses")))
        params["statuses"] = statuses
    if batch_id is not None:
        parts.append(sql.SQL("batch_id = {}").format(sql.Placeholder("batch_id")))
        params["batch_id"] = batch_id
    if delivery is not None:
        parts.append(sql.SQL("delivery = {}").format(sql.Placeholder("delivery")))
        params["delivery"] = delivery
    return sql.SQL(db.queries[query]).format(conditions=sql.SQL(" AND ").join(parts)), params


def count(conn: db.Conn, scope: Scope, query: str, *, cap: int = COUNT_CAP) -> int:
    """Return how many emails match ``query`` in scope, counting at most ``cap`` (then ``cap``)."""
    compiled = compile_query(query, scope, conn=conn)
    params = {**compiled.params, **scope.params(), "cap": cap, "first_look": FIRST_LOOK}
    params["lead_status"] = compiled.lead_status
    # As page_rows: the newest rows first (a broad search reaches the cap there), else the indexes.
    recent = sql.SQL(db.queries["count_search_recent"]).format(conditions=compiled.condition)
    row = conn.execute(recent, params, prepare=False).fetchone()
    if row is not None and int(row["n"]) >= cap:
        return cap
    statement = sql.SQL(db.queries["count_search"]).format(conditions=compiled.condition)
    with through_indexes(conn, compiled):
        row = conn.execute(statement, params, prepare=False).fetchone()
    return int(row["n"]) if row else 0


# ---- autocomplete ----


@dataclasses.dataclass(frozen=True, kw_only=True)
class Suggestion:
    #: What replaces the word being typed.
    text: str
    #: What it means.
    hint: str


def suggest(conn: db.Conn, scope: Scope, word: str, *, limit: int = 8) -> list[Suggestion]:
    """Complete the word being typed: a qualifier, or a value of the qualifier it names."""
    negation = "!" if word.startswith("!") else ""
    bare = word.removeprefix("!")
    if ":" not in bare:
        typed = bare.lower()
        keys = [k for k in QUALIFIERS if k.startswith(typed)]
        return [Suggestion(text=f"{negation}{k}:", hint=QUALIFIERS[k]) for k in keys][:limit]
    key, _, partial = bare.partition(":")
    key = key.lower()
    head = f"{negation}{key}:"
    prefix = partial.lower()
    if key == "status":
        done, _, last = prefix.rpartition(",")
        lead = f"{done}," if done else ""
        return [Suggestion(text=head + lead + s, hint="status") for s in STATUS_WORDS if s.startswith(last)][:limit]
    if key in ("before", "after"):
        words = ["-1h", "-24h", "-7d", "today", "now", "+1h", "+1d"]
        return [Suggestion(text=head + w, hint="time") for w in words if w.startswith(prefix)][:limit]
    if key == "code":
        words = ["5xx", "4xx", "550", "554", "421", "451", "250", "5.1.1"]
        return [Suggestion(text=head + w, hint="SMTP reply") for w in words if w.startswith(prefix)][:limit]
    mine = [Suggestion(text=head + "me", hint="your own emails")] if key == "from" and "me".startswith(prefix) else []
    named = {"to": "suggest_recipients", "domain": "suggest_domains", "from": "suggest_members"}
    found: list[Suggestion] = []
    if key in named:
        rows = db.all_rows(conn, named[key], prefix=_starts(prefix), limit=limit, **scope.params())
        found = [Suggestion(text=head + _quote(r["value"]), hint=r["hint"]) for r in rows]
    elif key == "batch":
        rows = db.all_rows(conn, "suggest_batches", pattern=_like(partial), limit=limit, **scope.params())
        found = [Suggestion(text=head + str(r["id"]), hint=r["hint"]) for r in rows]
    elif key == "recurrence":
        rows = db.all_rows(conn, "suggest_recurrences", pattern=_like(partial), limit=limit, **scope.params())
        found = [Suggestion(text=head + str(r["id"]), hint=r["hint"]) for r in rows]
    return (mine + found)[:limit]


def _starts(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _quote(value: str) -> str:
    """Return a value as a query writes it: quoted when it holds a space or a quote."""
    if any(ch.isspace() or ch == '"' for ch in value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value
