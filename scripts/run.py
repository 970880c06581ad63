"""``make run``: the whole product on one machine, stopped by one Ctrl-C.

PostgreSQL and Redis (found or started), migrations, the dev mailbox SMTP sink,
one worker and the web app; then it prints where everything is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from scripts.services import DATA, ROOT, say, services
from tasks.core import config, errors

PYTHON = sys.executable


def main() -> int:
    DATA.mkdir(exist_ok=True)
    with services() as urls:
        env = os.environ | urls
        try:
            settings = config.load(env)
        except errors.ConfigError as exc:
            say(f"configuration error: {exc.message}")
            return 2
        bind = settings.web_bind
        subprocess.run([PYTHON, "-m", "tasks", "migrate"], env=env, cwd=ROOT, check=True)
        children = {
            "dev mailbox": subprocess.Popen([PYTHON, "-m", "tasks", "devmail"], env=env, cwd=ROOT),
            "worker": subprocess.Popen([PYTHON, "-m", "tasks", "worker"], env=env, cwd=ROOT),
            "web": subprocess.Popen(
                [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "webapp:create_app()"],
                env=env,
                cwd=ROOT,
            ),
        }
        say("Reach D. Box is running:")
        say(f"  dashboard      http://{bind}/  (dev login: {settings.dev_user_email})")
        devmail = f"{settings.devmail_host}:{settings.devmail_port}"
        say(f"  dev mailbox    SMTP {devmail}, shown at http://{bind}/devmail")
        say(f"  PostgreSQL     {urls['DATABASE_URL']}")
        say(f"  Redis          {urls['REDIS_URL']}")
        say(
            "  try it:        .venv/bin/python -m tasks schedule --to you@example.com --subject Hi --body Hello --in 1m"
        )
        say("Ctrl-C stops everything.")
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        say(f"{name} exited with code {child.returncode}; stopping")
                        stopping = True
                time.sleep(0.2)
        finally:
            for child in reversed(children.values()):
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children.values():
                try:
                    child.wait(40)
                except subprocess.TimeoutExpired:
                    child.kill()
            say("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
