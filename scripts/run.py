"""``make run``: the whole product on one machine, stopped by one Ctrl-C.

PostgreSQL and Redis (found or started), migrations, the dev mailbox SMTP sink,
one worker, the monitor (alerts, on Slack when SLACK_WEBHOOK_URL is set) and the
web app; then it prints where everything is, and records the servers' URLs in
``.data/run.json`` so that ``python -m tasks …`` in another terminal finds them
(tasks/core/localrun.py).

A Ctrl-C reaches every process of the terminal's foreground group. Only this one
should act on it: the children run in process groups of their own, and are
stopped here in order (web, monitor, worker, dev mailbox, then the servers), whatever
step the start had reached.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from types import FrameType

PYTHON = sys.executable


class Stop:
    """Note SIGINT, SIGTERM and SIGHUP instead of dying at once; ``main`` stops between steps."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def _shown(path: str, root: str) -> str:
    """Show the interpreter as the README does (``.venv/bin/python``) when it lives in the checkout."""
    rel = os.path.relpath(path, root)
    return shlex.quote(path if rel.startswith("..") else rel)


def main() -> int:
    stop = Stop()  # first of all: a Ctrl-C while this still imports is then only noted
    from scripts.services import DATA, ROOT, say, services
    from tasks.core import config, errors, localrun

    DATA.mkdir(parents=True, exist_ok=True)
    record = localrun.record_path()
    children: dict[str, subprocess.Popen[bytes]] = {}
    with services(DATA) as urls:
        env = os.environ | urls
        try:
            settings = config.load(env)
        except errors.ConfigError as exc:
            say(f"configuration error: {exc.message}")
            return 2
        bind = settings.web_bind
        try:
            if stop.requested:
                return 0
            # Own process groups (here and below): see the module's docstring.
            migrate = subprocess.run([PYTHON, "-m", "tasks", "migrate"], env=env, cwd=ROOT, process_group=0)
            if stop.requested:
                return 0
            if migrate.returncode != 0:
                say(f"migrations failed (exit code {migrate.returncode}); stopping")
                return 1
            for name, args in (
                ("dev mailbox", [PYTHON, "-m", "tasks", "devmail"]),
                ("worker", [PYTHON, "-m", "tasks", "worker"]),
                ("monitor", [PYTHON, "-m", "tasks", "monitor"]),
                ("web", [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "webapp:create_app()"]),
            ):
                if stop.requested:
                    return 0
                children[name] = subprocess.Popen(args, env=env, cwd=ROOT, process_group=0)
            localrun.write(record, urls, os.getpid())
            cli = f"{_shown(PYTHON, str(ROOT))} -m tasks"
            say("Reach D. Box is running:")
            say(f"  dashboard      http://{bind}/  (dev login: {settings.dev_user_email})")
            devmail = f"{settings.devmail_host}:{settings.devmail_port}"
            say(f"  dev mailbox    SMTP {devmail}, shown at http://{bind}/devmail")
            slack_note = (
                "posted to SLACK_WEBHOOK_URL" if settings.slack_webhook_url else "no SLACK_WEBHOOK_URL: recorded only"
            )
            say(f"  alerts         http://{bind}/operators ({slack_note})")
            say(f"  PostgreSQL     {urls['DATABASE_URL']}")
            say(f"  Redis          {urls['REDIS_URL']}")
            say(f"  try it:        {cli} schedule --to you@example.com --subject Hi --body Hello --in 1m")
            say(f'                 psql "$({cli} url)" -c "SELECT received_at, subject FROM devmail_messages"')
            say(f"  `{cli} …` in another terminal finds these servers ({record}); for other tools:")
            say(f"  export DATABASE_URL={shlex.quote(urls['DATABASE_URL'])} REDIS_URL={shlex.quote(urls['REDIS_URL'])}")
            say("Ctrl-C stops everything.")
            while not stop.requested:
                for name, child in children.items():
                    if child.poll() is not None:
                        say(f"{name} exited with code {child.returncode}; stopping")
                        stop.requested = True
                time.sleep(0.2)
        finally:
            localrun.remove(record, os.getpid())
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
