"""The battery's one table: a row per check, PASS/FAIL, and notes that explain a FAIL."""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass, field

WIDTHS = (7, 52, 34, 56)  # part, done, expected, seen


@dataclass(frozen=True)
class Row:
    part: str
    done: str  # what was done
    expected: str
    seen: str
    ok: bool | None  # None: a figure without a target

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "FAIL")


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self, part: str, done: str, expected: str, seen: object, ok: bool) -> bool:
        self.rows.append(Row(part, done, expected, str(seen), bool(ok)))
        return bool(ok)

    def figure(self, part: str, done: str, seen: object) -> None:
        self.rows.append(Row(part, done, "", str(seen), None))

    def note(self, part: str, text: str) -> None:
        self.notes.append(f"[{part}] {text}")

    @property
    def failed(self) -> bool:
        return any(row.ok is False for row in self.rows)

    def table(self) -> str:
        """Columns at most WIDTHS wide; a longer cell wraps onto the lines below its row."""
        header = Row("part", "done", "expected", "seen", None)
        rows = [header, *self.rows]
        names = ("part", "done", "expected", "seen")
        widths = [min(limit, max(len(getattr(row, name)) for row in rows))
                  for name, limit in zip(names, WIDTHS, strict=True)]

        def lines(row: Row, verdict: str) -> list[str]:
            cells = [textwrap.wrap(getattr(row, name), width) or [""]
                     for name, width in zip(names, widths, strict=True)]
            out = []
            for n, parts in enumerate(itertools.zip_longest(*cells, fillvalue="")):
                text = "  ".join(f"{part:<{width}}" for part, width in zip(parts, widths,
                                                                             strict=True))
                out.append(f"{text}  {verdict if n == 0 else ''}".rstrip())
            return out

        out = lines(header, "verdict")
        out.append("-" * (sum(widths) + 2 * len(widths) + 7))
        for row in self.rows:
            out += lines(row, row.verdict)
        if self.notes:
            out.append("")
            out += self.notes
        return "\n".join(out)
