"""Rendering a report as JSON, Markdown (for tickets) or a self-contained HTML page.

Catalog text is untrusted: HTML autoescapes everything and carries a Content-Security-Policy
that forbids scripts and remote fetches; Markdown escapes its own markup characters.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ReportError
from agent.files import write_text_atomic
from agent.report import charts
from agent.report.build import DEFAULT_SAMPLE, build_report
from agent.report.schema import EXTRAPOLATION_GAP, Report, UserReport
from agent.schema import HistoryEntry, TierChoice

if TYPE_CHECKING:
    import jinja2

    from agent.recommender import Recommender

FORMATS: tuple[str, ...] = ("html", "md", "json")
#: HTML and Markdown show full sections for this many users of a cohort (JSON has all).
USER_SECTIONS = 10
#: History rows shown in HTML/Markdown timelines (JSON has the whole history).
TIMELINE_ROWS = 20
TEMPLATES = Path(__file__).parent / "templates"


def render(report: Report, format: str = "html") -> str:
    """The report as HTML, Markdown or JSON text."""
    if format not in FORMATS:
        raise ReportError(f"format must be html, md or json, got {format!r}")
    if format == "json":
        return report.model_dump_json(indent=2) + "\n"
    shown = report.users[:USER_SECTIONS]
    context: dict[str, Any] = {
        "report": report,
        "shown": shown,
        "timeline_rows": TIMELINE_ROWS,
        "gap": EXTRAPOLATION_GAP,
    }
    if format == "html":
        context["charts"] = _charts(report, shown)
    return _env(format).get_template(f"report.{format}.j2").render(context)


def _charts(report: Report, shown: Sequence[UserReport]) -> dict[str, Any]:
    users = []
    for u in shown:
        users.append(
            {
                "interest": charts.interest_chart(
                    [e.category for e in u.interest],
                    [e.model for e in u.interest],
                    [e.history for e in u.interest],
                ),
                "timeline": charts.timeline_chart(
                    [t.position for t in u.timeline],
                    [t.rating for t in u.timeline],
                    [t.timestamp for t in u.timeline],
                )
                if u.timeline
                else None,
                "contributions": charts.contributions_chart(
                    [
                        (
                            it.title,
                            [
                                (c.title, c.score_drop)
                                for c in it.explanation.evidence.contributions[:3]
                            ],
                        )
                        for it in u.items
                    ]
                ),
            }
        )
    drawn: dict[str, Any] = {"users": users}
    c = report.cohort
    if c is not None:
        drawn["tier_mix"] = charts.tier_mix_chart(c.tier_mix) if c.tier_mix else None
        lat = [u.latency_ms["total"] for u in report.users if "total" in u.latency_ms]
        drawn["latency"] = charts.latency_chart(lat) if lat else None
    return drawn


@lru_cache(maxsize=2)
def _env(format: str) -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        # Every value in the HTML is escaped unless marked safe; catalog text never is.
        autoescape=format == "html",
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    env.filters["md"] = md_escape
    env.filters["bar"] = _bar
    env.filters["date"] = _date
    return env


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    return (
        f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}".rstrip("0").rstrip(".")
    )


def _date(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")


def _bar(x: float, width: int = 20) -> str:
    """A text bar for Markdown charts."""
    n = max(0, min(width, round(x * width)))
    return "█" * n or "·"


_MD_SPECIAL = set("\\`*_[]<>|~&#!")


def md_escape(text: Any) -> str:
    """Catalog text made inert in Markdown: markup characters escaped, one line."""
    s = " ".join(str(text).split())
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in s)


def output_path(out: str | Path, base: Path | None = None) -> Path:
    """Check an output path before any work is done, so a typo fails fast.

    A relative ``out`` may not climb out of ``base`` (default: the current directory) with
    ``..``; an absolute path is taken as given.

    Returns:
        The normalised absolute path.

    Raises:
        ReportError: the path is empty, escapes ``base``, is a directory, or its directory is
            missing or not writable.
    """
    raw = Path(out).expanduser()
    if str(out).strip() == "":
        raise ReportError("the output path is empty")
    if raw.is_absolute():
        path = Path(os.path.normpath(raw))
    else:
        root = Path(os.path.normpath((base or Path.cwd()).absolute()))
        path = Path(os.path.normpath(root / raw))
        if not path.is_relative_to(root):
            raise ReportError(
                f"output path {str(out)!r} escapes {root}; give an absolute path to write "
                "outside it"
            )
    if path.is_dir():
        raise ReportError(f"output path {str(path)!r} is a directory; name a file")
    if not path.parent.is_dir():
        raise ReportError(f"cannot write {str(path)!r}: directory {str(path.parent)!r} is missing")
    if not os.access(path.parent, os.W_OK):
        raise ReportError(
            f"cannot write {str(path)!r}: directory {str(path.parent)!r} is read-only"
        )
    return path


def write_report(text: str, out: str | Path, base: Path | None = None) -> Path:
    """Write a rendered report atomically (temp file in the same directory + ``os.replace``).

    Nothing half-written is ever left behind: on any failure the temp file is removed and an
    existing report at ``out`` stays as it was.

    Returns:
        The path written.

    Raises:
        ReportError: see ``output_path``; or the write itself failed (disk full, ...).
    """
    path = output_path(out, base)
    try:
        # 0644: a report is meant to be shared.
        return write_text_atomic(path, text, mode=0o644)
    except OSError as e:
        raise ReportError(f"cannot write {str(path)!r}: {e.strerror or e}") from None


def report(
    rec: Recommender,
    user_id: str | None = None,
    users: Sequence[str] | str | Path | None = None,
    history: Sequence[HistoryEntry | str | int] | None = None,
    k: int = 10,
    format: str = "html",
    llm: TierChoice | str = TierChoice.NONE,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    out: str | Path | None = None,
) -> str:
    """Build and render a report (see ``build_report``); with ``out``, also write it atomically.

    Returns:
        The rendered report.
    """
    if format not in FORMATS:  # before any work, so a typo costs nothing
        raise ReportError(f"format must be html, md or json, got {format!r}")
    if out is not None:
        output_path(out)
    text = render(build_report(rec, user_id, users, history, k, llm, sample, seed), format)
    if out is not None:
        write_report(text, out)
    return text
