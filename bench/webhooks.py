"""Webhook events delivered per second by one worker to a local endpoint.

    python -m bench.webhooks [--events 2000] [--runs 3] [--concurrency N]

For each run, on a private copy of a migrated database: one organization with one
endpoint (a lean HTTP receiver on 127.0.0.1, answering 200 at once, keep-alive), and
``--events`` events written by the outbox's own statement (``webhook_events``: a delivery
and its job each), before any worker runs. Then one ``python -m tasks worker`` starts;
the rate is the events received over the time from the first to the last (each one
signed, sent with httpx and its attempt recorded), and every delivery is checked
``delivered`` afterwards. Prints one table, with the median of the runs. Not a timed
test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import http.server
import os
import pathlib
import statistics
import tempfile
import threading
import time
from typing import Any

from psycopg.types.json import Jsonb

from bench import rig
from tasks.core import config, db, migrate
from tasks.domain import emails, orgs
from tasks.webhooks import endpoints

CHUNK = 1000


class Receiver:
    """Answers 200 to every POST; counts them and notes the first and last arrival."""

    def __init__(self) -> None:
        self.count = 0
        self.first = self.last = 0.0
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: without this, the second waits for the
            # client's delayed ACK (Nagle), 40 ms a request.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("content-length", "0")))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                now = time.perf_counter()
                with outer._lock:
                    outer.count += 1
                    outer.first = outer.first or now
                    outer.last = now

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def one_run(template: str, work: pathlib.Path, n: int, concurrency: int | None) -> dict[str, Any]:
    name = rig.unique_name("hooks")
    url = rig.create_database(name, template)
    receiver = Receiver()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")} | {
        "DATABASE_URL": url,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "REDIS_PREFIX": f"rdbx-bench-hooks-{os.getpid()}:",
        "MAIL_TRANSPORTS": "console://",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "WEBHOOK_ALLOW_HTTP": "1",
        "WEBHOOK_ALLOW_PRIVATE": "1",
    }
    worker = None
    try:
        settings = config.load(env)
        with db.connect(url) as conn:
            owner = emails.ensure_user(conn, email="bench@example.com")
            org_id = orgs.personal_org_id(conn, owner.id)
            hook = endpoints.create(
                conn, settings, org_id, owner.id, url=f"http://127.0.0.1:{receiver.port}/hook",
                event_types=["batch.completed"],
            )  # fmt: skip
            for start in range(0, n, CHUNK):
                size = min(CHUNK, n - start)
                db.all_rows(
                    conn, "webhook_events", org_ids=[org_id] * size, endpoint_ids=[hook.id] * size,
                    types=["batch.completed"] * size,
                    datas=[Jsonb({"batch_id": f"bench-{start + i}", "total": 1}) for i in range(size)],
                )  # fmt: skip
        args = ["--concurrency", str(concurrency)] if concurrency else []
        worker = rig.Proc([rig.PYTHON, "-m", "tasks", "worker", *args], env, work / f"worker-{name}.log")
        rig.wait_until(lambda: receiver.count >= n, timeout=600, what=f"{n} webhooks")
        with db.connect(url) as conn:
            rig.wait_until(
                lambda: conn.execute(rig.queries["webhooks_delivered"]).fetchone()["n"] >= n,
                timeout=60,
                what="every delivery recorded",
            )
        seconds = receiver.last - receiver.first
        return {"events": n, "seconds": seconds, "per_second": (n - 1) / seconds if seconds > 0 else 0.0}
    finally:
        if worker is not None:
            worker.stop()
        receiver.stop()
        rig.drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=None, help="WORKER_CONCURRENCY (default: the setting's)")
    options = parser.parse_args()
    template = rig.unique_name("hooks_tpl")
    migrate.migrate(rig.create_database(template))
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
            for i in range(options.runs):
                result = one_run(template, pathlib.Path(tmp), options.events, options.concurrency)
                results.append(result)
                print(f"run {i + 1}: {result['events']} events in {result['seconds']:.2f} s", flush=True)
    finally:
        rig.drop_database(template)
    concurrency = options.concurrency or config.default("WORKER_CONCURRENCY")
    print()
    print(f"| Webhooks, one worker (concurrency {concurrency}) to a local endpoint | Events | Seconds | Events/s |")
    print("|---|---:|---:|---:|")
    for i, r in enumerate(results, 1):
        print(f"| run {i} | {r['events']} | {r['seconds']:.2f} | {r['per_second']:.0f} |")
    print(
        f"| **median** | {options.events} | {statistics.median(r['seconds'] for r in results):.2f}"
        f" | **{statistics.median(r['per_second'] for r in results):.0f}** |"
    )


if __name__ == "__main__":
    main()
