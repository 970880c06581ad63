"""The API transports' throughput: one worker sending through ``ses://`` and ``sendgrid://``.

Each run schedules N emails due at one instant in a fresh database and starts one
``python -m tasks worker`` whose chain is that one transport, pointed at its local
stand-in: moto's SES server (tests/support/ses_standin.py, without the scripted
front) or the SendGrid stand-in (tests/support/sendgrid_standin.py, which checks
every request against its schema). emails/s is N over the time from that instant
to the last ``sent_at``; the table gives the median of the runs, and the lean SMTP
sink beside them for scale. The stand-ins run in this process (threads): what is
measured is the worker's path with the real clients, bounded by the stand-ins.

    python -m bench.providers                 # 3 runs of 500 emails each, default concurrency
    python -m bench.providers --emails 1000 --runs 3 --concurrency 20
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

from bench import ours, rig
from tasks.core import db
from tests.support import ses_standin
from tests.support.sendgrid_standin import SendgridStandIn
from tests.support.ses_standin import SesStandIn

MAIL_FROM = "noreply@example.com"


@dataclasses.dataclass(frozen=True)
class Run:
    emails_s: float
    #: CPU milliseconds per email: the worker process, and this process (the stand-ins' threads).
    worker_ms: float
    standin_ms: float
    not_sent: int


def one_run(bench: ours.Ours, transport: str, extra_env: dict[str, str], n: int, concurrency: int) -> Run:
    """One worker, ``n`` emails due at once: emails/s from their instant to the last sent, and CPU per email."""
    env = {"MAIL_FROM": f"Reach D. Box <{MAIL_FROM}>", "WORKER_CONCURRENCY": str(concurrency)} | extra_env
    if transport != "smtp":  # else the deployment's own: its lean SMTP sink
        env["MAIL_TRANSPORTS"] = transport
    with bench.deployment(env=env) as d:
        d.start_workers(1)
        t0, times = ours.at_once(n, lead=2 + n / 4000)
        d.schedule(times)
        meter = rig.CpuMeter({"worker": lambda: [p for w in d.workers for p in rig.descendants(w.pid)]})
        meter.start()
        own = time.process_time()

        def finished() -> dict[str, object] | None:
            with db.connect(d.database_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE status IN ('sent', 'failed', 'uncertain')) AS done,"
                    " count(*) FILTER (WHERE status = 'sent') AS sent, max(sent_at) AS last"
                    " FROM emails WHERE subject = 'bench'"
                ).fetchone()
            return row if row and row["done"] == n else None

        row = rig.wait_until(finished, timeout=60 + n / 20, interval=0.1, what=f"{n} emails through {transport}")
        standin = time.process_time() - own
        worker = meter.stop()["worker"]
        last = row["last"].timestamp()
        return Run(n / (last - t0.timestamp()), worker * 1000 / n, standin * 1000 / n, n - int(row["sent"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=5, help="WORKER_CONCURRENCY of the one worker")
    args = parser.parse_args()

    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    work = rig.WORK / "providers"
    work.mkdir(parents=True, exist_ok=True)
    bench = ours.Ours(work, redis_url)
    bench.prepare()
    ses = SesStandIn().start()
    sendgrid = SendgridStandIn().start()
    try:
        ses.verify(MAIL_FROM)
        rows = {
            "smtp (bench sink)": ("smtp", {}),
            "ses:// (moto server)": (
                "ses://eu-west-1",
                ses_standin.CREDENTIALS | {"SES_ENDPOINT_URL": ses.moto_url},
            ),
            "sendgrid:// (stand-in)": (
                f"sendgrid://{sendgrid.api_key}@",
                {"SENDGRID_API_URL": sendgrid.url},
            ),
        }
        results: dict[str, list[Run]] = {name: [] for name in rows}
        for number in range(args.runs):  # interleaved: each run of each transport in turn
            for name, (transport, extra) in rows.items():
                started = time.monotonic()
                run = one_run(bench, transport, extra, args.emails, args.concurrency)
                results[name].append(run)
                took = time.monotonic() - started
                print(f"  run {number + 1}: {name}: {run.emails_s:.0f} emails/s ({took:.0f} s)", flush=True)
        print(
            f"\nOne worker, WORKER_CONCURRENCY={args.concurrency}, {args.emails} emails due at once, {args.runs} runs"
        )
        print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end)\n")
        print("| Transport | emails/s (median) | runs | worker CPU ms/email | stand-in CPU ms/email | not sent |")
        print("|---|---:|---|---:|---:|---:|")
        for name, runs in results.items():
            rates = ", ".join(f"{r.emails_s:.0f}" for r in runs)
            print(
                f"| {name} | {statistics.median(r.emails_s for r in runs):.0f} | {rates}"
                f" | {statistics.median(r.worker_ms for r in runs):.2f}"
                f" | {statistics.median(r.standin_ms for r in runs):.2f} | {sum(r.not_sent for r in runs)} |"
            )
        assert not sendgrid.violations, sendgrid.violations[:3]
    finally:
        ses.stop()
        sendgrid.stop()
        bench.cleanup()


if __name__ == "__main__":
    main()
