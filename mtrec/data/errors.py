"""Errors and reports of the data loaders."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """A data file is malformed. The message names the file, the line and what is wrong."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass
class LoadReport:
    """What a lenient load skipped, by reason, with the first few places for each."""

    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(where)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def lines(self) -> list[str]:
        return [
            f"skipped {n} row(s): {reason} (e.g. {', '.join(self.examples[reason])})"
            for reason, n in self.skipped.most_common()
        ]


class RowSink:
    """Either raises on a bad row (strict) or records it in a ``LoadReport`` (lenient)."""

    def __init__(self, lenient: bool, report: LoadReport | None = None) -> None:
        self.lenient = lenient
        self.report = report if report is not None else LoadReport()

    def bad(self, path: str | Path, line: int | None, reason: str, detail: str = "") -> None:
        """Handle one bad row: raise ``DataError`` when strict, count it when lenient."""
        if not self.lenient:
            raise DataError(path, f"{reason}{': ' + detail if detail else ''}", line)
        self.report.skip(reason, f"{Path(path).name}:{line}" if line else Path(path).name)
