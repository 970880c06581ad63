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
