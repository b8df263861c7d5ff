"""What each part of `make bench` hands to the final summary table, and the table itself.

Each part (`bench.pipeline`, `bench.gateway`, `bench.full_sync`, `bench.peer`, `bench.limits`)
runs in its own process and records its headline figures as rows in
`.local/bench-results/<part>.json`;
`bench/run.sh` empties that folder first and prints `python -m bench.results` last, so the
table shows this run only, and a part that did not finish shows as such instead of an older
figure.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / ".local" / "bench-results"
# The order of the parts in the summary, as run.sh runs them.
PARTS = ("pipeline", "gateway", "full_sync", "peer", "limits")


@dataclass(frozen=True)
class Row:
    figure: str
    value: str
    target: str = ""
    verdict: str = ""  # PASS, FAIL, or empty when the figure has no target


def verdict(met: bool) -> str:
    return "PASS" if met else "FAIL"


def record(part: str, rows: list[Row]) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{part}.json").write_bytes(orjson.dumps([asdict(row) for row in rows]))


def table() -> str:
    lines = []
    header = Row("figure", "measured", "target", "verdict")
    rows: list[tuple[str, Row]] = []
    for part in PARTS:
        path = RESULTS_DIR / f"{part}.json"
        if not path.exists():
            rows.append((part, Row("(did not run or did not finish)", "", "", "FAIL")))
            continue
        rows += [(part, Row(**row)) for row in orjson.loads(path.read_bytes())]
    widths = [max(len(getattr(row, name)) for _, row in [("", header), *rows])
              for name in ("figure", "value", "target", "verdict")]
    part_width = max(len(part) for part in PARTS)

    def line(part: str, row: Row) -> str:
        cells = [row.figure, row.value, row.target, row.verdict]
        return f"{part:<{part_width}}  " + "  ".join(
            f"{cell:<{width}}" for cell, width in zip(cells, widths, strict=True)).rstrip()

    lines.append(line("part", header))
    lines.append("-" * len(lines[0]))
    lines += [line(part, row) for part, row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(table())
