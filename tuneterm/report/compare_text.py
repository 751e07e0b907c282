"""The terminal rendering of a :class:`~tuneterm.report.compare.Comparison` (``tuneterm compare``).

Top to bottom: the verdict line, the runs (label, name, format, trainer, steps, final loss), the
config diff as a table, the findings diff (first step per run, ``-`` where it did not fire), then a
plotext chart per metric with one line per run (different markers and colours, so it reads under
``NO_COLOR``). Every string that came from a log goes through :func:`tuneterm.textsafe.inert_line`.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuneterm.report.charts import CHART_HEIGHT, decimate, nice_ticks
from tuneterm.report.compare import Comparison, MetricCurves
from tuneterm.textsafe import inert_line

_COLORS = (12, 13, 10, 14, 11)
_MARKERS = ("hd", "•", "x", "+", "o")
_MAX_CHARTS = 8


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return inert_line(",".join(str(x) for x in v), 60)
    return inert_line(str(v), 60)


def render_comparison(cmp: Comparison, console: Console, *, charts: bool = True) -> None:
    """Print ``cmp`` to ``console``."""
    console.print(Text(inert_line(cmp.verdict, 600), style="bold"))
    console.print()
    runs = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for col in ("run", "name", "format", "trainer", "steps", "final loss"):
        runs.add_column(col)
    for r in cmp.runs:
        runs.add_row(r.label, inert_line(r.name, 50), r.format, r.trainer,
                     f"{r.last_step:,}" if r.last_step is not None else "-", _cell(r.final.get("loss")))
    console.print(runs)
    console.print()
    labels = [r.label for r in cmp.runs]
    if cmp.config:
        console.print(Text("config (only what differs)", style="bold"))
        table = Table(box=None, header_style="bold")
        table.add_column("key")
        for lab in labels:
            table.add_column(lab)
        for c in cmp.config:
            table.add_row(c.key, *(_cell(v) for v in c.values))
        console.print(table)
    else:
        console.print("config: no difference is known")
    console.print()
    if cmp.findings:
        console.print(Text("findings (fired in some runs, not all: first step)", style="bold"))
        table = Table(box=None, header_style="bold")
        table.add_column("finding")
        for lab in labels:
            table.add_column(lab)
        for f in cmp.findings:
            cells = ["-" if s is None else ("yes" if s < 0 else f"{s:,}") for s in f.first_steps]
            table.add_row(f"{f.severity} {f.code} {f.name}", *cells)
        console.print(table)
    else:
        console.print("findings: the same rules fired in every run")
    if charts:
        width = max(40, min(console.width, 120))
        for m in cmp.metrics[:_MAX_CHARTS]:
            console.print()
            console.print(Text(f"{m.metric}  " + "  ".join(f"{_glyph(i)} {c.label}" for i, c in enumerate(m.curves)), style="bold"))
            console.print(Text.from_ansi(chart(m, width, cmp.x)))


def _glyph(i: int) -> str:
    marker = _MARKERS[i % len(_MARKERS)]
    return "▄" if marker == "hd" else marker


def chart(m: MetricCurves, width: int, x: str, height: int = CHART_HEIGHT) -> str:
    """One metric's curves overlaid, as ANSI text (plotext)."""
    import plotext as plt  # deferred: only drawing needs it

    plt.terminal.limit(False, False)
    fig = plt.figure
    fig.clear()
    fig.theme("simple")
    fig.plot_size(width, height)
    fig.legend(active=False)
    lo, hi = math.inf, -math.inf
    for i, c in enumerate(m.curves):
        if x == "step":
            xs, ys = decimate([int(v) for v in c.xs], c.ys)
        else:
            xs, ys = list(c.xs), list(c.ys)
        sig = fig.signal(xs, ys, marker=plt.marker(_MARKERS[i % len(_MARKERS)], pixel=_COLORS[i % len(_COLORS)]))
        sig.lines()
        fig.draw(sig)
        if xs:
            lo, hi = min(lo, xs[0]), max(hi, xs[-1])
    if x == "step" and hi > lo:
        fig.ruler("x").ticks(nice_ticks(lo, hi, max(3, min(8, width // 12))))
    out = fig.build().string()
    fig.clear()
    return out
