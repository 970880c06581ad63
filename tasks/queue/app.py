"""The Procrastinate application: one per process, opened on that process's pool."""

from __future__ import annotations

import procrastinate

#: Web and CLI defer with their own (sync) connections; the worker opens it on its
#: async pool (``tasks.queue.worker``), so there is no pool of Procrastinate's own here.
app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(),
    import_paths=[
        "tasks.delivery.send",
        "tasks.queue.reconcile",
        "tasks.queue.retention",
        "tasks.queue.charts",
        "tasks.webhooks.deliver",
        "tasks.queue.bulk",
    ],
)
