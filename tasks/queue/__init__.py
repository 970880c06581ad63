"""The job queue: Procrastinate's App, our jobs, the worker, the reconciler and retention.

Importing the package registers the named statements on Procrastinate's tables
(``procrastinate_boundary.STATEMENTS``) with ``tasks.core.db``: whoever runs one
by name (the send task, the rate-limit gate, the reconciler) has imported
``tasks.queue`` on the way.
"""

from tasks.queue import procrastinate_boundary

__all__ = ["procrastinate_boundary"]
