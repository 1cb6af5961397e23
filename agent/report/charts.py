"""Charts of explanation reports: matplotlib on the Agg backend, returned as base64 PNG.

PNG data URIs keep the HTML self-contained and carry no markup of their own, so catalog text
drawn into a chart (category names, titles) can never reach the page as HTML.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Colours: the model's view and the history's, kept the same in every chart.
MODEL_COLOUR = "#3b6fb6"
HISTORY_COLOUR = "#e0a030"
#: Catalog text in a chart is data: "$" must not switch on mathtext, so parsing is off.
_RC = {"text.parse_math": False, "font.size": 9, "axes.spines.top": False}
_DPI = 100
#: Tiers in chain order, always drawn in the tier-mix chart.
TIERS = ("remote", "local", "none")


def _figure(width: float, height: float) -> Figure:
    # A bare Figure on an Agg canvas: no pyplot state, so no GUI backend and no global figure
    # registry to leak or share between threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def interest_chart(
    categories: Sequence[str], model: Sequence[float], history: Sequence[float]
) -> str:
    """Grouped horizontal bars: the model's category interest beside the history's mix.

    Args:
        categories: Category names, top first.
        model: The model's predicted interest per category (a distribution).
        history: The category mix of the history (a distribution; all zero when empty).

    Returns:
        A base64-encoded PNG.
    """
    import matplotlib as mpl
    import numpy as np
    from matplotlib.ticker import PercentFormatter

    with mpl.rc_context(_RC):
        n = max(len(categories), 1)
        fig = _figure(6.5, 0.8 + 0.28 * n)
        ax = fig.add_subplot()
        y = np.arange(len(categories))
        ax.barh(y - 0.2, model, height=0.4, color=MODEL_COLOUR, label="model interest")
        ax.barh(y + 0.2, history, height=0.4, color=HISTORY_COLOUR, label="history mix")
        ax.set_yticks(y, [_short(c) for c in categories])
        ax.invert_yaxis()  # top category first
        ax.set_xlabel("share")
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.legend(loc="lower right", frameon=False)
        ax.spines["right"].set_visible(False)
        return _png(fig)


def timeline_chart(
    positions: Sequence[int], ratings: Sequence[float | None], dates: Sequence[float | None]
) -> str:
    """Ratings over the history (by date when every entry has one, else by position).

    Entries without a rating are drawn as ticks along the bottom, so views still show.
    """
    import datetime as dt

    import matplotlib as mpl
    import numpy as np

    use_dates = bool(dates) and all(d is not None and d > 0 for d in dates)
    xs: list[Any] = (
        [dt.datetime.fromtimestamp(float(d), dt.UTC) for d in dates if d is not None]
        if use_dates
        else list(positions)
    )
    rated = [(x, r) for x, r in zip(xs, ratings, strict=True) if r is not None]
    unrated = [x for x, r in zip(xs, ratings, strict=True) if r is None]
    with mpl.rc_context(_RC):
        fig = _figure(6.5, 2.2)
        ax = fig.add_subplot()
        if rated:
            rx, ry = zip(*rated, strict=True)
            ax.scatter(rx, ry, s=10, alpha=0.6, color=MODEL_COLOUR, label="rating")
            if len(ry) >= 5:
                w = min(10, len(ry))
                mean = np.convolve(np.asarray(ry, float), np.ones(w) / w, mode="valid")
                ax.plot(rx[w - 1 :], mean, color=HISTORY_COLOUR, label=f"mean of {w}")
        if unrated:
            floor = min([r for _, r in rated], default=0.0) - 0.5
            ax.scatter(unrated, [floor] * len(unrated), marker="|", color="grey", label="no rating")
        ax.set_xlabel("date" if use_dates else "position in history")
        ax.set_ylabel("rating")
        if rated or unrated:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        if use_dates:
            fig.autofmt_xdate()
        return _png(fig)


def tier_mix_chart(counts: Mapping[str, int]) -> str:
    """Bars: how many lists each tier produced (every tier shown, so a zero is visible)."""
    import matplotlib as mpl
    from matplotlib.ticker import MaxNLocator

    with mpl.rc_context(_RC):
        fig = _figure(4.0, 2.2)
        ax = fig.add_subplot()
        names = [*TIERS, *(n for n in counts if n not in TIERS)]
        values = [counts.get(n, 0) for n in names]
        ax.bar(names, values, width=0.6, color=MODEL_COLOUR)
        for i, v in enumerate(values):
            ax.annotate(str(v), (i, v), ha="center", va="bottom")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("lists")
        ax.set_title("tier mix")
        return _png(fig)


def latency_chart(latencies_ms: Sequence[float]) -> str:
    """Histogram of per-list latency in milliseconds."""
    import matplotlib as mpl
    from matplotlib.ticker import MaxNLocator

    with mpl.rc_context(_RC):
        fig = _figure(4.5, 2.2)
        ax = fig.add_subplot()
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.hist(
            list(latencies_ms), bins=min(30, max(5, len(latencies_ms) // 2)), color=MODEL_COLOUR
        )
        ax.set_xlabel("latency per list (ms)")
        ax.set_ylabel("lists")
        ax.set_title("latency")
        return _png(fig)


def contributions_chart(rows: Sequence[tuple[str, Sequence[tuple[str, float]]]]) -> str | None:
    """Horizontal bars: for each recommended item, the history items whose removal lowers its
    model score most, and by how much (the counterfactual evidence behind "because you liked").

    Args:
        rows: ``(item title, [(history title, score drop), ...])`` per item, best item first.

    Returns:
        A base64-encoded PNG, or None when no item has a contribution.
    """
    import matplotlib as mpl

    bars = [(item, hist, drop) for item, found in rows for hist, drop in found]
    if not bars:
        return None
    with mpl.rc_context(_RC):
        fig = _figure(6.5, 0.6 + 0.24 * len(bars))
        ax = fig.add_subplot()
        items = list(dict.fromkeys(item for item, _, _ in bars))
        colours = [MODEL_COLOUR if items.index(item) % 2 == 0 else HISTORY_COLOUR
                   for item, _, _ in bars]  # fmt: skip
        ax.barh(range(len(bars)), [d for _, _, d in bars], color=colours, height=0.7)
        ax.set_yticks(
            range(len(bars)),
            [f"{_short(item, 22)}  ←  {_short(hist, 22)}" for item, hist, _ in bars],
        )
        ax.invert_yaxis()
        ax.set_xlabel("score drop without the history item")
        ax.spines["right"].set_visible(False)
        return _png(fig)
