"""Terminal charts of a run's metrics for ``tuneterm doctor`` (plotext 6, imported lazily).

Which charts: loss with every eval set's loss, grad_norm, learning rate, and by trainer kind
reward + reward_std (GRPO) or rewards/chosen, rewards/rejected, rewards/margins (DPO). Each chart
is sized to the console width and ~12 rows, with vertical lines at the steps where findings begin
(solid for errors, dotted for warnings), so the eye goes from "from step 110" to the curve.

Lines differ by marker as well as colour (train ``▄``-style half blocks, eval sets ``•``, ``x``,
``+``), so a chart still reads under ``NO_COLOR``. Long series are decimated to two points (min
and max) per bucket: plotting 300,000 points would be slow and no terminal has that many cells,
and keeping the extremes keeps spikes visible.

plotext output is our own drawing of numbers (titles and labels are ours, never log text), so it
is safe to hand to :meth:`rich.text.Text.from_ansi`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tuneterm.engine.model import Finding, Severity
from tuneterm.logs.model import Run, Series

CHART_HEIGHT = 12
_MAX_POINTS = 400  # per line, after decimation
_MAX_MARKS = 8  # vertical finding lines per chart; more would hide the curve
# plotext colour codes (xterm 256): blue, green, magenta, cyan, yellow
_COLORS = (12, 10, 13, 14, 11)
_MARKERS = ("hd", "•", "x", "+", "o")
_MARK_STYLE = {Severity.ERROR: (9, "default"), Severity.WARNING: (11, "dotted"), Severity.INFO: (8, "dotted")}


@dataclass(frozen=True, slots=True)
class Line:
    """One curve of a chart: a label and the series it draws."""

    label: str
    series: Series


@dataclass(frozen=True, slots=True)
class Chart:
    """A rendered chart: its title, the legend entries (label, marker glyph) and ANSI text."""

    title: str
    legend: tuple[tuple[str, str], ...]
    ansi: str
    marks: tuple[tuple[int, str, Severity], ...]  # (step, code, severity) actually drawn


def chart_lines(run: Run) -> list[tuple[str, list[Line]]]:
    """The charts ``doctor`` draws for ``run``: ``(title, lines)``, only where data exists."""
    charts: list[tuple[str, list[Line]]] = []

    def train(name: str, label: str | None = None) -> list[Line]:
        s = run.series(name)
        return [Line(label or name, s)] if s is not None and _plottable(s) else []

    loss = train("loss", "train")
    for eval_set in sorted(run.evals)[:4]:
        s = run.series("loss", eval_set)
        if s is not None and _plottable(s):
            loss.append(Line(eval_set.replace("_", " "), s))
    if loss:
        charts.append(("loss", loss))
    for name, title in (("grad_norm", "grad_norm"), ("learning_rate", "learning rate")):
        lines = train(name)
        if lines:
            charts.append((title, lines))
    kind = run.facts.trainer_kind
    if kind == "grpo":
        lines = train("reward") + train("reward_std")
        if lines:
            charts.append(("reward", lines))
    if kind == "dpo":
        lines = train("rewards/chosen", "chosen") + train("rewards/rejected", "rejected")
        lines += train("rewards/margins", "margins")
        if lines:
            charts.append(("rewards", lines))
    return charts


def _plottable(s: Series) -> bool:
    finite = 0
    for v in s.values:
        if math.isfinite(v):
            finite += 1
            if finite >= 2:
                return True
    return False


def decimate(steps: Sequence[int], values: Sequence[float], max_points: int = _MAX_POINTS) -> tuple[list[int], list[float]]:
    """Finite points of a series, thinned to about ``max_points`` keeping each bucket's extremes.

    >>> decimate([1, 2, 3], [1.0, float("nan"), 3.0])
    ([1, 3], [1.0, 3.0])
    >>> xs, ys = decimate(list(range(1000)), [float(i % 10) for i in range(1000)], 100)
    >>> len(xs) <= 100 and max(ys) == 9.0 and min(ys) == 0.0
    True
    """
    pts = [(s, v) for s, v in zip(steps, values, strict=False) if math.isfinite(v)]
    if len(pts) <= max_points:
        return [p[0] for p in pts], [p[1] for p in pts]
    buckets = max(1, max_points // 2)
    size = math.ceil(len(pts) / buckets)
    xs: list[int] = []
    ys: list[float] = []
    for i in range(0, len(pts), size):
        chunk = pts[i : i + size]
        lo = min(range(len(chunk)), key=lambda j: chunk[j][1])
        hi = max(range(len(chunk)), key=lambda j: chunk[j][1])
        for j in sorted({lo, hi}):
            xs.append(chunk[j][0])
            ys.append(chunk[j][1])
    return xs, ys


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[int]:
    """Round integer tick positions covering ``[lo, hi]`` (steps are integers).

    >>> nice_ticks(0, 500)
    [0, 100, 200, 300, 400, 500]
    """
    span = max(hi - lo, 1)
    raw = span / max(target - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), 10 * mag)
    step = max(1, int(round(step)))
    first = math.ceil(lo / step) * step
    return list(range(int(first), int(hi) + 1, step))


def flat_axis(lo: float, hi: float) -> tuple[tuple[float, float], list[float]] | None:
    """For a chart whose values are all equal (a constant learning rate), the y range and ticks
    centred on that value; ``None`` otherwise.

    plotext draws a flat line on a -1..1 axis whose middle tick reads "0.0": a constant rate of
    2e-4 would look like a rate of zero. The range is the value +- half of it (+-1 around 0) and
    the ticks are labelled with the value itself.

    >>> flat_axis(2e-4, 2e-4)
    ((0.0001, 0.00030000000000000003), [0.0001, 0.0002, 0.00030000000000000003])
    >>> flat_axis(1.0, 2.0) is None
    True
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo > 1e-12 * max(abs(lo), abs(hi)):
        return None
    v = (lo + hi) / 2
    pad = abs(v) / 2 if v else 1.0
    return (v - pad, v + pad), [v - pad, v, v + pad]


def render_charts(
    run: Run, findings: Sequence[Finding], width: int, *, height: int = CHART_HEIGHT, with_infos: bool = False
) -> list[Chart]:
    """Render every chart of :func:`chart_lines` at ``width`` x ``height`` cells.

    Findings with a ``first_step`` inside a chart's step range are drawn as vertical lines
    (infos only when ``with_infos``). Returns ANSI-coloured text; the caller decides whether
    colour reaches the terminal (Rich drops it under NO_COLOR or when piped).
    """
    import plotext as plt  # deferred: only doctor draws charts

    plt.terminal.limit(False, False)  # size comes from us, not from the (maybe absent) terminal
    fig = plt.figure
    marks_all: dict[int, tuple[str, Severity]] = {}
    for f in sorted(findings, key=lambda f: -f.severity.rank):
        if f.first_step is None or (f.severity is Severity.INFO and not with_infos):
            continue
        marks_all.setdefault(f.first_step, (f.code, f.severity))
    out: list[Chart] = []
    for title, lines in chart_lines(run):
        fig.clear()
        fig.theme("simple")
        fig.plot_size(max(width, 30), height)
        fig.legend(active=False)
        legend: list[tuple[str, str]] = []
        lo, hi = math.inf, -math.inf
        ylo, yhi = math.inf, -math.inf
        for i, line in enumerate(lines):
            xs, ys = decimate(line.series.steps, line.series.values)
            if len(xs) < 2 and i == 0:
                continue
            finite = [y for y in ys if math.isfinite(y)]
            if finite:
                ylo, yhi = min(ylo, min(finite)), max(yhi, max(finite))
            marker = _MARKERS[i % len(_MARKERS)]
            sig = fig.signal(xs, ys, marker=plt.marker(marker, pixel=_COLORS[i % len(_COLORS)]))
            sig.lines()
            fig.draw(sig)
            legend.append((line.label, "▄" if marker == "hd" else marker))
            lo, hi = min(lo, xs[0]), max(hi, xs[-1])
        if not legend:
            continue
        marks = sorted((s, c, sev) for s, (c, sev) in marks_all.items() if lo <= s <= hi)[:_MAX_MARKS]
        for step, _code, sev in marks:
            colour, style = _MARK_STYLE[sev]
            fig.line(step, orientation="v", pixel=plt.pixel(foreground=colour), style=style)
        if hi > lo:
            fig.ruler("x").ticks(nice_ticks(lo, hi, max(3, min(8, width // 12))))
        flat = flat_axis(ylo, yhi)
        if flat is not None:
            (y0, y1), ticks = flat
            fig.ruler("y").lim(y0, y1)
            fig.ruler("y").ticks(ticks, [f"{v:.3g}" for v in ticks])
        ansi = fig.build().string()
        # plotext paints the background of vertical lines white (48;5;15) whatever the pixel
        # says; on a dark terminal that is a glaring bar, so drop it.
        ansi = ansi.replace("\x1b[48;5;15m", "")
        out.append(Chart(title, tuple(legend), ansi, tuple(marks)))
    fig.clear()
    return out
