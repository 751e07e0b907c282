"""The terminal rendering of a :class:`~tuneterm.report.compare.Comparison` (``tuneterm compare``).

Top to bottom: the verdict line, the runs (label, name, format, trainer, steps, final loss), the
config diff as a table, the findings diff (first step per run, ``-`` where it did not fire), then a
plotext chart per metric with one line per run (different markers and colours, so it reads under
``NO_COLOR``). Every string that came from a log goes through :func:`tuneterm.textsafe.inert_line`.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console, RenderableType
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


def comparison_renderables(cmp: Comparison, width: int, *, charts: bool = True) -> list[RenderableType]:
    """``cmp`` as Rich renderables, top to bottom (what :func:`render_comparison` prints; the
    terminal app shows the same list in a scrolling view)."""
    out: list[RenderableType] = [Text(inert_line(cmp.verdict, 600), style="bold"), Text()]
    runs = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for col in ("run", "name", "format", "trainer", "steps", "final loss"):
        runs.add_column(col)
    for r in cmp.runs:
        runs.add_row(r.label, inert_line(r.name, 50), r.format, r.trainer,
                     f"{r.last_step:,}" if r.last_step is not None else "-", _cell(r.final.get("loss")))
    out += [runs, Text()]
    labels = [r.label for r in cmp.runs]
    if cmp.config:
        table = Table(box=None, header_style="bold")
        table.add_column("key")
        for lab in labels:
            table.add_column(lab)
        for c in cmp.config:
            table.add_row(c.key, *(_cell(v) for v in c.values))
        out += [Text("config (only what differs)", style="bold"), table]
    else:
        out.append(Text("config: no difference is known"))
    out.append(Text())
    if cmp.findings:
        table = Table(box=None, header_style="bold")
        table.add_column("finding")
        for lab in labels:
            table.add_column(lab)
        for f in cmp.findings:
            cells = ["-" if s is None else ("yes" if s < 0 else f"{s:,}") for s in f.first_steps]
            table.add_row(f"{f.severity} {f.code} {f.name}", *cells)
        out += [Text("findings (fired in some runs, not all: first step)", style="bold"), table]
    else:
        out.append(Text("findings: the same rules fired in every run"))
    if charts:
        chart_width = max(40, min(width, 120))
        for m in cmp.metrics[:_MAX_CHARTS]:
            legend = "  ".join(f"{_glyph(i)} {c.label}" for i, c in enumerate(m.curves))
            out += [Text(), Text(f"{m.metric}  {legend}", style="bold"), Text.from_ansi(chart(m, chart_width, cmp.x))]
    return out


def render_comparison(cmp: Comparison, console: Console, *, charts: bool = True) -> None:
    """Print ``cmp`` to ``console``."""
    for item in comparison_renderables(cmp, console.width, charts=charts):
        console.print(item)


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
