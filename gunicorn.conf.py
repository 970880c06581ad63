"""gunicorn settings: ``gunicorn -c gunicorn.conf.py 'webapp:create_app()'``.

Threaded workers so a long-lived live-status stream holds a thread, not a process.
``WEB_BIND``, ``WEB_WORKERS`` and ``WEB_THREADS`` are read like every other
setting, by ``tasks.core.config`` (docs/configuration.md).
"""

import sys

from tasks.core import config as _config
from tasks.core import errors as _errors

try:
    _settings = _config.load()
except _errors.ConfigError as exc:
    # Stop before any worker starts, as `python -m tasks` does: the setting named, exit code 2.
    print(f"configuration error: {exc.message}", file=sys.stderr)
    sys.exit(2)

bind = _settings.web_bind
workers = _settings.web_workers
worker_class = "gthread"
threads = _settings.web_threads
timeout = 60
graceful_timeout = 30
accesslog = "-"
# Never log query strings: they may carry tokens (OAuth callbacks).
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss'


def post_worker_init(worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """On SIGTERM, end open live streams at once so the graceful stop does not wait for them."""
    import signal

    from webapp import live

    previous = signal.getsignal(signal.SIGTERM)

    def stop_streams(signum, frame):  # noqa: ANN001, ANN202
        live.shutting_down.set()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, stop_streams)
