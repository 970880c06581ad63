"""The BullMQ baseline of `make bench`, at a small scale (only where Node and npm are installed)."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Iterator

import pytest

from bench import bullmq_stack, rig

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bullmq_stack.unavailable() is not None, reason=str(bullmq_stack.unavailable())),
]


@pytest.fixture
def stack(tmp_path: pathlib.Path) -> Iterator[bullmq_stack.BullMQ]:
    with rig.private_redis(tmp_path / "redis") as redis:
        assert redis is not None
        built = bullmq_stack.BullMQ(tmp_path, redis)
        built.prepare()
        yield built


@pytest.mark.parametrize("pool", [False, True], ids=["connection-per-email", "pooled"])
def test_every_job_is_sent_once_to_the_sink_at_or_after_its_due_time(stack: bullmq_stack.BullMQ, pool: bool) -> None:
    with stack.run(5, pool=pool) as run:
        run.start_workers(2)
        due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)

        run.produce(40, due)
        run.sink.wait_for(40, timeout=60)

        received = [mid for _, mid in run.sink.received()]
        assert sorted(received) == sorted(run.due)
        assert min(run.lateness()) >= 0


def test_the_scenarios_report_throughput_cpu_shares_and_enqueue_rate(stack: bullmq_stack.BullMQ) -> None:
    sent = bullmq_stack.throughput(stack, n=40, concurrency=5)
    enqueued = bullmq_stack.enqueue(stack, n=40)

    assert sent["emails_s"] > 0 and sent["cpu_ms"] > 0
    shares = {k: v for k, v in sent.items() if k.endswith("_pct")}
    assert set(shares) == {"cpu_workers_pct", "cpu_redis_pct", "cpu_sink_pct"}
    assert sum(shares.values()) == pytest.approx(100)
    assert enqueued["enqueue_s"] > 0
