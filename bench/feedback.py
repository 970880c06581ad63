"""The event ingestion rate of one web process: signed SendGrid Event Webhook posts, events/s.

    .venv/bin/python -m bench.feedback [--runs 3] [--clients 8]

One gunicorn worker process (its default threads) on a scratch database of sent emails;
``--clients`` threads post SendGrid batches signed with a P-256 key made here (the body
and signature made before the clock starts, so the clients' CPU is not what is measured),
each event for an email of its own (a delivered, or one in ten a hard bounce: a
suppression too). Two shapes: batches of 100 events a request (SendGrid's), and one event
a request (as SNS posts SES's). Prints a table: the median of the runs, and each run.
Needs PostgreSQL and Redis (DATABASE_URL / REDIS_URL); the machine is shared, so expect noise.
"""

from __future__ import annotations

import argparse
import base64
import json
import pathlib
import queue
import threading
import time
import uuid

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.web_support import bench_env, gunicorn, median, scratch_database, table
from tasks.core import db
from tasks.domain import emails, orgs

queries = db.load_queries(pathlib.Path(__file__).with_name("queries.sql"))
DOMAIN = "bench.localhost"
#: (name, events a request, requests a run)
SHAPES = (("SendGrid batch", 100, 100), ("one event a request", 1, 1000))


def signed(key: ec.EllipticCurvePrivateKey, ids: list[uuid.UUID]) -> tuple[bytes, dict[str, str]]:
    events = [
        {
            "email": f"r-{i}@example.com",
            "timestamp": int(time.time()),
            "smtp-id": f"<{i}@{DOMAIN}>",
            "event": "bounce" if n % 10 == 9 else "delivered",
            "type": "bounce",
            "sg_event_id": uuid.uuid4().hex,
        }
        for n, i in enumerate(ids)
    ]
    body = json.dumps(events).encode()
    stamp = str(int(time.time()))
    signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    return body, {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": signature,
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


def one_run(url: str, requests_: list[tuple[bytes, dict[str, str]]], clients: int, events: int) -> float:
    work: queue.Queue[tuple[bytes, dict[str, str]]] = queue.Queue()
    for item in requests_:
        work.put(item)
    gate = threading.Barrier(clients + 1)
    failures: list[str] = []

    def client() -> None:
        session = requests.Session()
        gate.wait()
        while True:
            try:
                body, headers = work.get_nowait()
            except queue.Empty:
                return
            response = session.post(f"{url}/feedback/sendgrid", data=body, headers=headers, timeout=60)
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    gate.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, first: {failures[0]}")
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()
    rows = []
    with scratch_database() as database_url:
        with db.connect(database_url) as conn:
            owner = emails.ensure_user(conn, email="bench@example.com", name="Bench")
            orgs.personal_org_id(conn, owner.id)
            plans: dict[str, list[list[tuple[bytes, dict[str, str]]]]] = {}
            for name, per_request, count in SHAPES:
                plans[name] = []
                for _ in range(args.runs):
                    ids = [uuid.uuid4() for _ in range(per_request * count)]
                    conn.execute(queries["insert_sent_emails"], {"ids": ids, "owner_id": owner.id, "domain": DOMAIN})
                    chunks = [ids[i : i + per_request] for i in range(0, len(ids), per_request)]
                    plans[name].append([signed(key, chunk) for chunk in chunks])
            conn.execute("VACUUM ANALYZE emails")
        env = bench_env(
            database_url, MAIL_DOMAIN=DOMAIN, SENDGRID_WEBHOOK_PUBLIC_KEY=public, WEB_WORKERS="1",
            FEEDBACK_MAX_AGE="3600",
        )  # fmt: skip
        with gunicorn(env) as url:
            for name, per_request, count in SHAPES:
                rates = [one_run(url, plan, args.clients, per_request * count) for plan in plans[name]]
                each = " ".join(f"{r:,.0f}" for r in rates)
                rows.append([name, per_request, per_request * count, f"{median(rates):,.0f}", each])
    print(
        table(
            f"Event ingestion, one web process (gunicorn, 1 worker), {args.clients} clients",
            ["shape", "events/request", "events/run", "events/s (median)", "each run"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
