"""What we assume of Procrastinate, checked against the installed version.

tasks/queue/procrastinate_boundary.py is the one module that goes past
Procrastinate's public API. Every assumption it makes is written down here and
checked against the Procrastinate that is installed, not against the version
pin: a private method with the parameters we override it with, the private
attributes its ``__init__`` sets, what its fetch loop and its SQL functions do
that our code relies on, and the tables, columns and statuses of its
``sql/schema.sql`` that our statements name. Each check returns the broken
assumptions in words, so an upgrade that breaks one fails naming it.

The checks are functions of the classes and the schema text they are given:
the last tests hand them copies with a name taken away (in memory, and in a
copy of the installed package) and see the failure name it.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import functools
import inspect
import os
import pathlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from typing import Any

import procrastinate
import psycopg_pool
import pytest
from procrastinate import builtin_tasks, jobs, manager, schema
from procrastinate import worker as procrastinate_worker

from tasks.core import db
from tasks.queue import procrastinate_boundary as boundary

ROOT = pathlib.Path(__file__).resolve().parents[2]
INSTALLED = pathlib.Path(procrastinate.__file__).resolve().parent

# --------------------------------------------------------------------------
# What we rely on
# --------------------------------------------------------------------------

#: The private methods HookedWorker overrides: the parameters it takes (and passes
#: on to the original) and whether it is a coroutine function.
PRIVATE_METHODS: dict[str, tuple[str, bool]] = {
    "_start_side_tasks": ("(self)", False),
    "_monitor_side_tasks": ("(self, side_tasks)", True),
    "_handle_notification": ("(self, *, channel, notification)", True),
    "_persist_job_status": ("(self, job, status, retry_decision, context, job_result)", True),
}

#: Attributes the worker's ``__init__`` must set (private ones read by HookedWorker,
#: public ones read or written by tasks/queue/worker.py), with their type.
WORKER_ATTRIBUTES: dict[str, type | tuple[type, ...]] = {
    "_new_job_event": asyncio.Event,
    "_running_jobs": dict,
    "_job_ids_to_abort": dict,
    "concurrency": int,
    "fetch_job_polling_interval": float,
    "shutdown_graceful_timeout": (float, type(None)),
    "worker_id": type(None),
}

#: Attributes the connector's ``__init__`` must set (forget_pool resets it).
CONNECTOR_ATTRIBUTES: dict[str, type | tuple[type, ...]] = {"_async_pool": type(None)}

#: The private names the boundary uses: every ``x._name`` in its source is one of these.
PRIVATE_NAMES = {*PRIVATE_METHODS, *(n for n in WORKER_ATTRIBUTES if n.startswith("_")), *CONNECTOR_ATTRIBUTES}

#: What the worker's code must still do for the hooks to work: (method, a line of its
#: source, the assumption in words).
WORKER_BEHAVIOUR: list[tuple[str, str, str]] = [
    (
        "_run_loop",
        "self._new_job_event.wait()",
        "between polls the fetch loop waits on _new_job_event, so HookedWorker.wake() sets it to wake the loop",
    ),
    (
        "_run_loop",
        "side_tasks = self._start_side_tasks()",
        "the side tasks come from _start_side_tasks, so HookedWorker.extra_side_tasks() run with them",
    ),
    (
        "_run_loop",
        "self._monitor_side_tasks(side_tasks)",
        "_monitor_side_tasks watches the side tasks, so HookedWorker records a crash there",
    ),
    (
        "_process_job",
        "self._persist_job_status(",
        "every job ends through _persist_job_status, so a job its task ended is skipped there",
    ),
    (
        "_fetch_and_process_jobs",
        "self._running_jobs[job_task] = context",
        "_running_jobs holds the running jobs, so HookedWorker.has_room() counts them",
    ),
    (
        "_start_side_tasks",
        "on_notification=self._handle_notification",
        "LISTEN notifications arrive in _handle_notification, so HookedWorker.job_inserted() is called there",
    ),
]

#: Public calls we make with keyword arguments: the parameters they must accept.
PUBLIC_CALLS: dict[str, tuple[Callable[..., Any], set[str]]] = {
    "Worker.__init__": (
        procrastinate_worker.Worker.__init__,
        {
            "app",
            "name",
            "concurrency",
            "fetch_job_polling_interval",
            "shutdown_graceful_timeout",
            "update_heartbeat_interval",
            "stalled_worker_timeout",
            "delete_jobs",
            "additional_context",
            "listen_notify",
            "install_signal_handlers",
        },
    ),
    "JobManager.batch_defer_jobs": (manager.JobManager.batch_defer_jobs, {"jobs", "connection"}),
    "JobManager.batch_defer_jobs_async": (manager.JobManager.batch_defer_jobs_async, {"jobs", "connection"}),
    "JobManager.cancel_job_by_id": (manager.JobManager.cancel_job_by_id, {"job_id", "connection"}),
    "JobManager.get_stalled_jobs": (manager.JobManager.get_stalled_jobs, {"seconds_since_heartbeat"}),
    "JobManager.finish_job": (manager.JobManager.finish_job, {"job", "status", "delete_job"}),
    "JobManager.prune_stalled_workers": (manager.JobManager.prune_stalled_workers, {"seconds_since_heartbeat"}),
    "JobManager.unregister_worker": (manager.JobManager.unregister_worker, {"worker_id"}),
    "JobManager.delete_old_jobs": (
        manager.JobManager.delete_old_jobs,
        {"nb_hours", "include_failed", "include_cancelled", "include_aborted"},
    ),
    "builtin_tasks.remove_old_jobs": (
        builtin_tasks.remove_old_jobs,
        {"context", "max_hours", "remove_failed", "remove_cancelled", "remove_aborted"},
    ),
    "Job": (jobs.Job, {"id", "queue", "task_name", "lock", "queueing_lock", "task_kwargs", "scheduled_at"}),
    "App.open_async": (procrastinate.App.open_async, {"pool"}),
    "App.task": (procrastinate.App.task, {"name", "queue", "queueing_lock", "priority", "pass_context"}),
    "App.periodic": (procrastinate.App.periodic, {"cron", "periodic_id"}),
    "SchemaManager.get_schema": (schema.SchemaManager.get_schema, set()),
    "SchemaManager.get_migrations_path": (schema.SchemaManager.get_migrations_path, set()),
}

#: What Procrastinate's own SQL must still do: (function, a fragment of its body, the assumption).
SQL_BEHAVIOUR: list[tuple[str, str, str]] = [
    (
        "procrastinate_finish_job_v1",
        "DELETE FROM procrastinate_jobs WHERE id = job_id AND status IN ('todo', 'doing')",
        "finishing a job with delete_job is a plain DELETE of its row, so _END_RUNNING_JOB may do the same",
    ),
    (
        "procrastinate_fetch_job_v2",
        "ORDER BY jobs.priority DESC, jobs.id ASC",
        "the fetch takes the highest priority first, then the lowest id (spread_move's priority -1)",
    ),
    (
        "procrastinate_fetch_job_v2",
        "AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())",
        "a job is fetched once its scheduled_at has come (spread_move, the wake-up timer)",
    ),
    (
        "procrastinate_fetch_job_v2",
        "FOR UPDATE OF jobs SKIP LOCKED",
        "the fetch skips a job locked by spread_candidates",
    ),
    (
        "procrastinate_fetch_job_v2",
        "SET status = 'doing', worker_id = p_worker_id",
        "a fetched job records its worker (stalled_sending joins its heartbeat)",
    ),
    (
        "procrastinate_update_heartbeat_v1",
        "SET last_heartbeat = NOW()",
        "a worker's heartbeat is procrastinate_workers.last_heartbeat (workers_alive, stalled_sending)",
    ),
]

# --------------------------------------------------------------------------
# Procrastinate's schema, read from its sql/schema.sql
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Schema:
    tables: dict[str, dict[str, str]]  # table -> column -> its definition
    enums: dict[str, list[str]]
    composites: dict[str, list[str]]  # type -> its fields' types, in order
    functions: dict[str, tuple[list[str], str]]  # name -> (argument types, body)


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in [*parts, current] if p.strip()]


def parse_schema(text: str) -> Schema:
    """The tables (with columns), enums and functions a Procrastinate schema file creates."""
    sql = _strip_comments(text)
    tables = {}
    for name, body in re.findall(r"CREATE TABLE (\w+)\s*\((.*?)\n\);", sql, flags=re.DOTALL):
        columns = {}
        for item in _split_top_level(body):
            first = item.split()[0]
            if first.upper() not in ("CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"):
                columns[first] = item
        tables[name] = columns
    enums = {
        name: re.findall(r"'(\w+)'", values)
        for name, values in re.findall(r"CREATE TYPE (\w+) AS ENUM \((.*?)\);", sql, flags=re.DOTALL)
    }
    composites = {
        name: [" ".join(f.split()[1:]) for f in _split_top_level(fields)]
        for name, fields in re.findall(r"CREATE TYPE (\w+) AS \((.*?)\);", sql, flags=re.DOTALL)
    }
    functions = {}
    for name, args, body in re.findall(
        r"CREATE FUNCTION (\w+)\s*\((.*?)\)\s*RETURNS.*?\$\$(.*?)\$\$", sql, flags=re.DOTALL
    ):
        types = [" ".join(a.split()[1:]) for a in _split_top_level(args)]
        functions[name] = (types, " ".join(body.split()))
    return Schema(tables, enums, composites, functions)


def installed_schema() -> str:
    return (INSTALLED / "sql" / "schema.sql").read_text()


def installed_queries() -> str:
    return (INSTALLED / "sql" / "queries.sql").read_text()


# --------------------------------------------------------------------------
# The checks: each returns the broken assumptions, in words
# --------------------------------------------------------------------------


def _bare_signature(func: Callable[..., Any]) -> str:
    sig = inspect.signature(func)
    params = [p.replace(annotation=p.empty, default=p.empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=sig.empty))


def check_worker(worker_cls: type) -> list[str]:
    """The private methods and attributes of Procrastinate's worker we rely on, and what its code does."""
    broken = []
    for name, (expected, coroutine) in PRIVATE_METHODS.items():
        method = getattr(worker_cls, name, None)
        if method is None:
            broken.append(f"Worker.{name} is gone (HookedWorker overrides it)")
            continue
        if (found := _bare_signature(method)) != expected:
            broken.append(f"Worker.{name} takes {found}, HookedWorker overrides it as {expected}")
        if inspect.iscoroutinefunction(method) != coroutine:
            broken.append(f"Worker.{name} is {'no longer' if coroutine else 'now'} a coroutine function")
    app = procrastinate.App(connector=procrastinate.PsycopgConnector())
    attributes = vars(worker_cls(app=app, concurrency=3, fetch_job_polling_interval=5.0))
    for name, kind in WORKER_ATTRIBUTES.items():
        if name not in attributes:
            broken.append(f"Worker.__init__ no longer sets {name}")
        elif not isinstance(attributes[name], kind):
            broken.append(f"Worker.__init__ sets {name} to a {type(attributes[name]).__name__}, not {kind}")
    for method, line, assumption in WORKER_BEHAVIOUR:
        source = inspect.getsource(getattr(worker_cls, method)) if hasattr(worker_cls, method) else ""
        if line not in source:
            broken.append(f"Worker.{method} no longer has `{line}`: we assume {assumption}")
    return broken


def check_connector(connector_cls: type) -> list[str]:
    """The private attribute of the connector that forget_pool resets."""
    attributes = vars(connector_cls())
    missing = [name for name in CONNECTOR_ATTRIBUTES if name not in attributes]
    return [f"PsycopgConnector.__init__ no longer sets {name}" for name in missing]


def check_public_calls(calls: dict[str, tuple[Callable[..., Any], set[str]]]) -> list[str]:
    """The keyword arguments we pass to Procrastinate's public API are still parameters."""
    broken = []
    for name, (func, expected) in calls.items():
        params = inspect.signature(func).parameters
        takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
        if missing := sorted(expected - set(params)) if not takes_any else []:
            broken.append(f"{name} no longer takes {', '.join(missing)}")
    return broken


def _declared_statuses(statuses: Iterable[str], user: str, schema: Schema) -> list[str]:
    known = schema.enums.get("procrastinate_job_status", [])
    return [f"procrastinate_job_status has no '{s}' ({user} names it)" for s in statuses if s not in known]


def _missing_columns(columns: Iterable[str], user: str, schema: Schema) -> list[str]:
    broken = []
    for column in columns:
        table, _, name = column.partition(".")
        if table not in schema.tables:
            broken.append(f"table {table} is gone ({user} uses it)")
        elif name not in schema.tables[table]:
            broken.append(f"column {column} is gone ({user} uses it)")
    return broken


_KEYWORDS = {"where", "on", "set", "join", "left", "inner", "group", "order", "limit", "using", "for", "returning"}


def referenced_columns(sql: str) -> set[str]:
    """``table.column`` for every Procrastinate column a statement names through an alias."""
    sql = _strip_comments(sql)
    found = set()
    for table, alias in re.findall(r"\b(procrastinate_\w+)\s+(?:AS\s+)?([a-z]\w*)", sql, flags=re.IGNORECASE):
        if alias.lower() not in _KEYWORDS:
            found |= {f"{table}.{c}" for c in re.findall(rf"\b{alias}\.(\w+)", sql)}
    return found


def _signature(declared: str) -> tuple[str, list[str]]:
    """``name(a, b)`` -> ``("name", ["a", "b"])``."""
    name, _, args = declared.partition("(")
    return name, _split_top_level(args.removesuffix(")"))


def check_statements(statements: dict[str, boundary.Statement], schema: Schema) -> list[str]:
    """Our statements name only tables, columns, statuses, functions and types Procrastinate's schema has."""
    broken = []
    for name, statement in statements.items():
        declared = set(statement.columns)
        broken += _missing_columns(statement.columns, name, schema)
        broken += _declared_statuses(statement.job_statuses, name, schema)
        for kind, found, items in (
            ("function", {f: args for f, (args, _) in schema.functions.items()}, statement.functions),
            ("type", schema.composites, statement.types),
        ):
            for item in items:
                item_name, args = _signature(item)
                if found.get(item_name) != args:
                    broken.append(f"{kind} {item} is gone ({name} uses it)")
        # The declaration is complete: every table named, every column named through an alias.
        named = set(re.findall(r"\bprocrastinate_\w+", _strip_comments(statement.sql)))
        named -= {_signature(f)[0] for f in (*statement.functions, *statement.types)}
        if undeclared := sorted(named - {c.partition(".")[0] for c in declared}):
            broken.append(f"{name} names {', '.join(undeclared)} but declares none of its columns")
        if undeclared := sorted(referenced_columns(statement.sql) - declared):
            broken.append(f"{name} uses {', '.join(undeclared)} without declaring it")
        # The one function we call, the defer, inserts jobs.
        dml = re.search(r"\b(UPDATE|DELETE FROM|INSERT INTO)\s+procrastinate_", statement.sql)
        writes = bool(dml or statement.functions or statement.own_functions)
        if writes != statement.writes:
            broken.append(f"{name} {'writes' if writes else 'does not write'} Procrastinate's rows, unlike its writes=")
    return broken


def check_schema_behaviour(schema: Schema, queries_sql: str) -> list[str]:
    """What Procrastinate's SQL functions do, the migrations' function and columns, the cascade."""
    broken = _missing_columns(boundary.MIGRATION_COLUMNS, "sql/migrations/0006_fetch_plan.sql", schema)
    function, args = boundary.ALTERED_FUNCTION
    if schema.functions.get(function, ([], ""))[0] != list(args):
        broken.append(f"{function}({', '.join(args)}) is gone (sql/migrations/0006_fetch_plan.sql alters it)")
    fetch = re.search(r"-- fetch_job --\n(.*?)(?:\n-- |\Z)", queries_sql, flags=re.DOTALL)
    if fetch is None or function not in fetch.group(1):
        broken.append(f"the worker's fetch_job query no longer calls {function} (the function 0006 tunes)")
    defer = re.search(r"-- defer_jobs --\n(.*?)(?:\n-- |\Z)", queries_sql, flags=re.DOTALL)
    if defer is None or "procrastinate_defer_jobs_v1(" not in defer.group(1):
        broken.append(
            "the public batch_defer_jobs no longer calls procrastinate_defer_jobs_v1: schedule_email would defer"
            " otherwise than the public API does"
        )
    for name, fragment, assumption in SQL_BEHAVIOUR:
        if " ".join(fragment.split()) not in schema.functions.get(name, ([], ""))[1]:
            broken.append(f"{name} no longer does `{fragment}`: we assume {assumption}")
    events = schema.tables.get("procrastinate_events", {}).get("job_id", "")
    if "ON DELETE CASCADE" not in events:
        broken.append("procrastinate_events.job_id is not ON DELETE CASCADE: deleting a job row would fail or orphan")
    return broken


def _fetch_selection(body: str) -> str:
    """The candidate selection of a fetch function: from its first WHERE to its ORDER BY, one line."""
    body = " ".join(_strip_comments(body).split())
    match = re.search(r"FROM procrastinate_jobs AS jobs WHERE (.*?) ORDER BY jobs\.priority DESC, jobs\.id ASC", body)
    return match.group(1) if match else ""


def check_fetch_copy(schema_sql: str) -> list[str]:
    """reach_fetch_jobs (0015) selects the jobs procrastinate_fetch_job_v2 would, lock rule included."""
    ours = _fetch_selection((ROOT / boundary.FETCH_COPY).read_text())
    function = re.search(r"CREATE FUNCTION procrastinate_fetch_job_v2\(.*?\$\$;", schema_sql, flags=re.DOTALL)
    theirs = _fetch_selection(function.group(0)) if function else ""
    normalise = functools.partial(re.sub, r"\s*([()])\s*", r"\1")
    if not ours or normalise(ours) != normalise(theirs):
        return [
            f"{boundary.FETCH_COPY} no longer selects as procrastinate_fetch_job_v2 does: write a new migration"
            " with its selection"
        ]
    return []


def check_operator_queries(schema: Schema) -> list[str]:
    broken = []
    for path, columns in boundary.OPERATOR_QUERIES.items():
        broken += _missing_columns(columns, path, schema)
        if undeclared := sorted(referenced_columns((ROOT / path).read_text()) - set(columns)):
            broken.append(f"{path} uses {', '.join(undeclared)} without OPERATOR_QUERIES declaring it")
    return broken


def broken_assumptions(
    worker_cls: type = procrastinate_worker.Worker,
    connector_cls: type = procrastinate.PsycopgConnector,
    schema_sql: str | None = None,
    queries_sql: str | None = None,
) -> list[str]:
    schema_ = parse_schema(schema_sql if schema_sql is not None else installed_schema())
    return [
        *check_worker(worker_cls),
        *check_connector(connector_cls),
        *check_public_calls(PUBLIC_CALLS),
        *check_statements(boundary.STATEMENTS, schema_),
        *check_schema_behaviour(schema_, queries_sql if queries_sql is not None else installed_queries()),
        *check_fetch_copy(schema_sql if schema_sql is not None else installed_schema()),
        *check_operator_queries(schema_),
    ]


# --------------------------------------------------------------------------
# The installed Procrastinate meets every assumption
# --------------------------------------------------------------------------


def test_the_installed_procrastinate_meets_every_assumption() -> None:
    broken = broken_assumptions()
    # Every broken assumption on its own line (pytest would truncate a long list).
    assert broken == [], "\n".join(broken)


def test_the_parsed_schema_is_the_installed_one() -> None:
    """The parser reads what it must (else every check above would pass on nothing)."""
    parsed = parse_schema(installed_schema())

    assert {"procrastinate_jobs", "procrastinate_workers", "procrastinate_events"} <= set(parsed.tables)
    assert {"id", "status", "scheduled_at", "priority", "worker_id"} <= set(parsed.tables["procrastinate_jobs"])
    assert "doing" in parsed.enums["procrastinate_job_status"]
    assert parsed.functions["procrastinate_fetch_job_v2"][0] == ["character varying[]", "bigint"]
    assert parsed.composites["procrastinate_job_to_defer_v1"][0] == "character varying"


def test_forget_pool_lets_the_app_open_on_a_new_pool() -> None:
    """The worker's restart after a database outage opens the App again on a new pool."""

    async def reopen() -> object:
        connector = procrastinate.PsycopgConnector()
        app = procrastinate.App(connector=connector)
        first = psycopg_pool.AsyncConnectionPool("", open=False)
        second = psycopg_pool.AsyncConnectionPool("", open=False)
        await connector.open_async(first)
        await connector.close_async()

        boundary.forget_pool(app, first)
        await connector.open_async(second)

        return connector.pool is second

    assert asyncio.run(reopen()) is True


# --------------------------------------------------------------------------
# The boundary is the one place
# --------------------------------------------------------------------------


def _python_modules() -> list[pathlib.Path]:
    return sorted(p for d in ("tasks", "webapp") for p in (ROOT / d).rglob("*.py"))


def _procrastinate_private_names() -> set[str]:
    """Every private name of the Procrastinate objects we hold: their classes' and what __init__ sets."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector())
    objects: list[Any] = [
        procrastinate_worker.Worker(app=app),
        app.connector,
        app,
        app.job_manager,
        jobs.Job(id=1, queue="q", task_name="t", lock=None, queueing_lock=None),
    ]
    names = set()
    for obj in objects:
        names |= {n for n in [*dir(type(obj)), *vars(obj)] if n.startswith("_") and not n.startswith("__")}
    return names


def _private_attributes(path: pathlib.Path) -> set[str]:
    """Every ``x._name`` in a module (dunders aside)."""
    tree = ast.parse(path.read_text())
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
    }


#: Procrastinate's classes we hold instances of, and our subclasses of them.
PROCRASTINATE_CLASSES = {"Worker", "HookedWorker", "App", "PsycopgConnector", "JobManager"}


def _foreign_private_attributes(path: pathlib.Path) -> set[str]:
    """The private names a module reaches on objects not its own.

    In a subclass of a Procrastinate class every ``self._name`` counts (one named
    like one of Procrastinate's would clobber it); elsewhere ``self._name`` is the
    class's own business, and only ``other._name`` counts.
    """
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST, in_subclass: bool) -> None:
        if isinstance(node, ast.ClassDef):
            bases = {b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases}
            in_subclass = bool(bases & PROCRASTINATE_CLASSES)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if in_subclass or not on_self:
                found.add(node.attr)
        for child in ast.iter_child_nodes(node):
            visit(child, in_subclass)

    visit(tree, False)
    return found


def test_no_other_module_uses_a_private_name_of_procrastinate() -> None:
    """Nor names one of its own like one of Procrastinate's (a subclass would clobber it)."""
    private = _procrastinate_private_names()
    boundary_file = ROOT / "tasks" / "queue" / "procrastinate_boundary.py"

    uses = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _python_modules()
        if path != boundary_file
        for name in _foreign_private_attributes(path) & private
    }

    assert sorted(uses) == []


def test_the_boundary_uses_only_the_private_names_checked_here() -> None:
    source = ROOT / "tasks" / "queue" / "procrastinate_boundary.py"
    own = {n.name for n in ast.walk(ast.parse(source.read_text())) if isinstance(n, ast.FunctionDef)}

    assert sorted(_private_attributes(source) - own - PRIVATE_NAMES) == []


def _sql_strings(path: pathlib.Path) -> list[str]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


DB_OBJECT = re.compile(r"\bprocrastinate_(?!boundary\b)\w+")


def test_no_other_code_names_procrastinate_tables_unless_listed() -> None:
    boundary_file = ROOT / "tasks" / "queue" / "procrastinate_boundary.py"
    named = {
        str(path.relative_to(ROOT))
        for path in _python_modules()
        if path != boundary_file and any(DB_OBJECT.search(s) for s in _sql_strings(path))
    }
    named |= {
        str(path.relative_to(ROOT))
        for path in (ROOT / "sql").rglob("*.sql")
        if DB_OBJECT.search(_strip_comments(path.read_text()))
    }

    assert "sql/queries.sql" not in named
    assert sorted(named - set(boundary.ELSEWHERE) - set(boundary.OPERATOR_QUERIES)) == []


def test_the_operator_queries_only_read() -> None:
    for path in boundary.OPERATOR_QUERIES:
        sql = _strip_comments((ROOT / path).read_text())
        assert not re.search(r"\b(INSERT|UPDATE|DELETE|TRUNCATE|ALTER|DROP|CREATE|LOCK)\b", sql, re.I), path


def test_the_statements_are_the_named_queries_db_runs() -> None:
    for name, statement in boundary.STATEMENTS.items():
        assert db.queries[name] is statement.sql


def test_a_name_cannot_be_registered_twice_with_another_statement() -> None:
    with pytest.raises(ValueError, match="finish_emails"):
        db.register({"finish_emails": "SELECT 1"})


def test_the_docs_name_every_private_use_and_statement() -> None:
    page = (ROOT / "docs" / "procrastinate.md").read_text()
    names = [*PRIVATE_NAMES, *boundary.STATEMENTS, *boundary.OPERATOR_QUERIES]

    assert [n for n in names if f"`{n}`" not in page] == []
    assert "procrastinate.md" in (ROOT / "mkdocs.yml").read_text()


# --------------------------------------------------------------------------
# A Procrastinate that breaks an assumption fails, naming it
# --------------------------------------------------------------------------


def _copy_of(cls: type, **changes: Any) -> type:
    """A copy of ``cls`` with some attributes replaced (None: taken away)."""
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    for name, value in changes.items():
        if value is None:
            namespace.pop(name, None)
        else:
            namespace[name] = value
    return type(cls)(cls.__name__, cls.__bases__, namespace)


def test_a_private_method_taken_away_is_named() -> None:
    copy = _copy_of(procrastinate_worker.Worker, _persist_job_status=None)

    assert "Worker._persist_job_status is gone (HookedWorker overrides it)" in broken_assumptions(worker_cls=copy)


def test_a_changed_signature_is_named() -> None:
    async def _handle_notification(self: Any, *, channel: str, notification: Any, when: float) -> None: ...

    copy = _copy_of(procrastinate_worker.Worker, _handle_notification=_handle_notification)

    assert (
        "Worker._handle_notification takes (self, *, channel, notification, when),"
        " HookedWorker overrides it as (self, *, channel, notification)"
    ) in broken_assumptions(worker_cls=copy)


def test_an_attribute_init_no_longer_sets_is_named() -> None:
    original = procrastinate_worker.Worker.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        del self._running_jobs

    copy = _copy_of(procrastinate_worker.Worker, __init__=__init__)
    broken = broken_assumptions(worker_cls=copy)

    assert "Worker.__init__ no longer sets _running_jobs" in broken


def test_a_connector_attribute_gone_is_named() -> None:
    original = procrastinate.PsycopgConnector.__init__

    def __init__(self: Any, **kwargs: Any) -> None:
        original(self, **kwargs)
        del self._async_pool

    copy = _copy_of(procrastinate.PsycopgConnector, __init__=__init__)

    assert "PsycopgConnector.__init__ no longer sets _async_pool" in broken_assumptions(connector_cls=copy)


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        (
            "last_heartbeat timestamp",
            "seen_at timestamp",
            "column procrastinate_workers.last_heartbeat is gone (workers_alive uses it)",
        ),
        ("'doing',", "'running',", "procrastinate_job_status has no 'doing' (finish_emails names it)"),
        (
            "ORDER BY jobs.priority DESC, jobs.id ASC",
            "ORDER BY jobs.id ASC",
            "procrastinate_fetch_job_v2 no longer does `ORDER BY jobs.priority DESC, jobs.id ASC`",
        ),
        (
            "    priority integer,\n    lock text,",
            "    lock text,\n    priority integer,",
            "type procrastinate_job_to_defer_v1(character varying, character varying, integer, text, text, jsonb,"
            " timestamp with time zone) is gone (schedule_email uses it)",
        ),
        (
            "REFERENCES procrastinate_jobs ON DELETE CASCADE",
            "REFERENCES procrastinate_jobs",
            "procrastinate_events.job_id is not ON DELETE CASCADE",
        ),
    ],
)
def test_a_schema_that_changed_is_named(old: str, new: str, complaint: str) -> None:
    text = installed_schema()
    assert old in text

    broken = broken_assumptions(schema_sql=text.replace(old, new))

    assert any(b.startswith(complaint) for b in broken), broken


@pytest.mark.slow
@pytest.mark.parametrize(
    ("file", "old", "new", "complaint"),
    [
        ("worker.py", "self._new_job_event", "self._wakeup", "Worker.__init__ no longer sets _new_job_event"),
        (
            "sql/schema.sql",
            "scheduled_at timestamp",
            "run_at timestamp",
            "column procrastinate_jobs.scheduled_at is gone (seconds_to_next_job uses it)",
        ),
    ],
)
def test_a_copy_of_procrastinate_with_a_name_taken_away_fails_this_test(
    tmp_path: pathlib.Path, file: str, old: str, new: str, complaint: str
) -> None:
    """End to end: this very test file, run against a copy of the installed package with one edit."""
    copy = tmp_path / "procrastinate"
    shutil.copytree(INSTALLED, copy, ignore=shutil.ignore_patterns("__pycache__"))
    edited = copy / file
    edited.write_text(edited.read_text().replace(old, new))
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-vv",
            "-p",
            "no:cacheprovider",
            __file__,
            "-k",
            "meets_every_assumption",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # (The installed Procrastinate passes: the failure is the copy's.)
    assert result.returncode == 1, result.stdout + result.stderr
    assert complaint in result.stdout
