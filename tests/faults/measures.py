"""Figures a scenario measures beyond the common check's (recovery times, the uncertain window).

Merged by scenario name into ``.data/faults/measures.json``, next to the check's results.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from typing import Any

from tests.faults.guarantees import RESULTS

MEASURES = RESULTS.with_name("measures.json")


def note(scenario: str, **figures: Any) -> None:
    """Record (and print) this scenario's extra figures."""
    MEASURES.parent.mkdir(parents=True, exist_ok=True)
    try:
        known = json.loads(MEASURES.read_text())
    except (OSError, ValueError):
        known = {}
    known[scenario] = figures
    MEASURES.write_text(json.dumps(dict(sorted(known.items())), indent=2) + "\n")
    print(f"\n[measures] {scenario}: {json.dumps(figures)}")


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, 99th percentile and maximum, in milliseconds."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }
