"""gunicorn settings: ``gunicorn -c gunicorn.conf.py 'webapp:create_app()'``.

Threaded workers so a long-lived live-status stream holds a thread, not a process.
"""

import os

bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "16"))
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
