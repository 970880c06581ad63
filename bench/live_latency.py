"""Time from a worker's status change to a real browser showing it (SSE through gunicorn).

    .venv/bin/python -m bench.live_latency [--emails 10] [--runs 3]

A worker sends to a local SMTP sink; a headless Chromium (Debian's) has the
dashboard open. For each email the worker commits ``sent_at`` (the status
change); a MutationObserver in the page notes when the row's badge turns Sent.
Same machine, same clock. Prints median/p95/max per run and the medians.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time

import requests

from bench.web_support import ROOT, api_token, bench_env, gunicorn, median, pct, scratch_database, table
from tasks.core import db
from tests.e2e.conftest import CHROMIUM_ARGS, chromium_path
from tests.support.smtp_sink import Sink

OBSERVER = """
window.__seen = {};
new MutationObserver((records) => {
  for (const r of records) {
    const row = r.target;
    if (row.dataset && row.dataset.status === "sent" && !window.__seen[row.dataset.emailId]) {
      window.__seen[row.dataset.emailId] = performance.timeOrigin + performance.now();
    }
  }
}).observe(document.getElementById("rows"), {subtree: true, attributes: true, attributeFilter: ["data-status"]});
"""


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sink = Sink().start()
    rows, medians, p95s = [], [], []
    with scratch_database() as database_url:
        env = bench_env(database_url, MAIL_TRANSPORTS=f"smtp://127.0.0.1:{sink.port}", LOG_LEVEL="WARNING")
        token = api_token(database_url, email=env.get("DEV_USER_EMAIL", "dev@localhost"))
        worker = subprocess.Popen([sys.executable, "-m", "tasks", "worker"], env=env, cwd=ROOT)
        try:
            with gunicorn(env) as url, sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.goto(f"{url}/")
                page.click("#dev-login")
                api = requests.Session()
                api.headers["Authorization"] = f"Bearer {token}"
                for run in range(1, args.runs + 1):
                    base = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
                    ids = []
                    for i in range(args.emails):
                        at = base + dt.timedelta(seconds=0.4 * i)
                        body = {
                            "to": ["x@example.com"],
                            "subject": f"live {run}.{i}",
                            "body_text": "B",
                            "send_at": at.isoformat(),
                        }
                        ids.append(api.post(f"{url}/api/v1/emails", json=body, timeout=10).json()["id"])
                    page.goto(f"{url}/?view=all")
                    page.wait_for_selector("#live-status[data-state=live]")
                    page.evaluate(OBSERVER)
                    deadline = time.monotonic() + 60
                    while page.evaluate("Object.keys(window.__seen).length") < len(ids):
                        if time.monotonic() > deadline:
                            raise SystemExit("the browser did not see every email turn Sent within 60 s")
                        time.sleep(0.2)
                    seen = page.evaluate("window.__seen")
                    with db.connect(database_url) as conn:
                        sent = {
                            str(r["id"]): r["sent_at"].timestamp() * 1000
                            for r in conn.execute("SELECT id, sent_at FROM emails WHERE id = ANY(%s::uuid[])", (ids,))
                        }
                    delays = [seen[i] - sent[i] for i in ids]
                    medians.append(median(delays))
                    p95s.append(pct(delays, 0.95))
                    rows.append(
                        [run, len(delays), f"{median(delays):.0f}", f"{pct(delays, 0.95):.0f}", f"{max(delays):.0f}"]
                    )
                browser.close()
        finally:
            worker.terminate()
            worker.wait(30)
            sink.stop()
    rows.append(["median", "", f"{median(medians):.0f}", f"{median(p95s):.0f}", ""])
    print(
        table(
            "worker commits sent_at -> the browser's badge shows Sent (ms)",
            ["run", "emails", "median", "p95", "max"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
