"""Print the Guarantees table (docs/guarantees.md) from the last ``make test-faults`` run.

Reads ``.data/faults/results.json`` (written by tests/faults/guarantees.py) and
prints one markdown row per scenario, in scenario order.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / ".data" / "faults" / "results.json"
COLUMNS = ("scenario", "promise", "emails", "lost", "duplicated", "uncertain", "seconds to recover")


def _order(name: str) -> tuple[int, str]:
    match = re.match(r"\d+", name)
    return (int(match.group()) if match else 10**6, name)


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value).replace("|", "\\|")


def table(results: dict[str, dict[str, object]]) -> str:
    """The markdown table, one row per scenario."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 5) + "|"]
    for name in sorted(results, key=_order):
        r = results[name]
        cells = [name, r.get("promise"), r.get("emails"), r.get("lost"), r.get("duplicated"), r.get("uncertain")]
        cells.append(r.get("seconds_to_recover"))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = pathlib.Path(argv[0]) if argv else RESULTS
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        print(f"no results at {path}: run `make test-faults` first", file=sys.stderr)
        return 1
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
