"""How a watch looks: plain lines (``--headless``, pipes) or a Rich Live screen (a terminal).

Both show each new finding once, with its fixes, as it fires. Plain mode prints to stdout::

    error N101 nan-or-inf (step 12-12): grad_norm is nan at 1 of 12 logged steps ...
      fix: bf16: true  # bf16 has the range of fp32 ...

and status lines (start, stop, end) to stderr. The live screen redraws in place (Rich ``Live``, at
most 4 times a second) a header (run, state, step, loss, elapsed), plotext charts of the run's
metrics with the finding steps marked, and the findings so far; each finding is also printed
above the live area when it fires, so the scroll-back keeps the record. Everything from the log
goes through :func:`tuneterm.textsafe.inert` and is printed as :class:`rich.text.Text`, never as
markup.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, TYPE_CHECKING, Any

from tuneterm.engine.model import Finding, Fix
from tuneterm.logs.model import RunStatus
from tuneterm.progress import step_text
from tuneterm.report.text import finding_summary
from tuneterm.textsafe import inert_line

if TYPE_CHECKING:
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    from tuneterm.logs.model import Run
    from tuneterm.runs.live import LiveEvaluator


def fix_line(fix: Fix) -> str:
    """``key: value  # why`` or ``$ command  # why`` (inert, one line)."""
    if fix.command is not None:
        return inert_line(f"$ {fix.command}  # {fix.why}", 600)
    value = fix.value if isinstance(fix.value, str) else json.dumps(fix.value, default=str)
    return inert_line(f"{fix.key}: {value}  # {fix.why}", 600)


class PlainView:
    """Findings as plain lines on ``out``; status lines on ``err``.

    Args:
        out: where findings go (stdout).
        err: where status lines go (stderr).
        max_fixes: fixes printed under each finding.
    """

    def __init__(
        self, out: IO[str] | None = None, err: IO[str] | None = None, *, max_fixes: int = 3, heartbeat_s: float = 0.0, title: str = ""
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.max_fixes = max_fixes
        self.heartbeat_s = heartbeat_s
        self.title = title
        self._beat_at = time.monotonic()
        self._beat_from: tuple[float, int] | None = None

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def status(self, line: str) -> None:
        """A line about the watch itself (stderr)."""
        print(f"tuneterm: {inert_line(line, 600)}", file=self.err, flush=True)

    def finding(self, f: Finding, *, escalated: bool = False) -> None:
        """Print one new (or escalated) finding with its first fixes."""
        prefix = "escalated: " if escalated else ""
        print(prefix + finding_summary(f), file=self.out, flush=True)
        for fix in f.fixes[: self.max_fixes]:
            print(f"  fix: {fix_line(fix)}", file=self.out, flush=True)

    def refresh(self, live: LiveEvaluator) -> None:
        """Plain mode has no screen to redraw; every ``heartbeat_s`` seconds (0: never) it prints
        one heartbeat line to stderr (:func:`heartbeat_line`), so a quiet healthy run shows it is
        alive."""
        if self.heartbeat_s <= 0:
            return
        now = time.monotonic()
        step = _live_step(live)
        if self._beat_from is None and step is not None:
            self._beat_from = (now, step)
        if now - self._beat_at < self.heartbeat_s:
            return
        self._beat_at = now
        rate = None
        if self._beat_from is not None and step is not None and now > self._beat_from[0]:
            rate = (step - self._beat_from[1]) / (now - self._beat_from[0])
        self.status(heartbeat_line(self.title, live, step, rate))


def _live_step(live: LiveEvaluator) -> int | None:
    step = live.run.last_step
    status = live.status
    st = status.step if status is not None else None
    if isinstance(st, int) and not isinstance(st, bool) and (step is None or st > step):
        step = st
    return step


def heartbeat_line(title: str, live: LiveEvaluator, step: int | None, rate: float | None) -> str:
    """``NAME running · step 37/400 · loss 2.31 · 1.9 steps/s · ETA 3m14s`` (unknowns left out).

    ``rate`` is steps per second over the watch so far.
    """
    from tuneterm.engine.stats import fmt_duration

    run = live.run
    status = live.status or RunStatus()
    state = run.state or status.state or "following"
    max_steps = status.max_steps if status.max_steps is not None else run.facts.max_steps
    parts = [f"{title} {state}".strip()]
    if step is not None:
        parts.append(f"step {step_text(step, max_steps, state)}")
    loss = run.train.get("loss")
    last = loss.last() if loss is not None else None
    if last is not None:
        parts.append(f"loss {last:.4g}")
    if rate is not None:
        parts.append(f"{rate:.2f} steps/s")
        if rate > 0 and max_steps and step is not None and max_steps > step:
            parts.append(f"ETA {fmt_duration((max_steps - step) / rate)}")
    return " · ".join(parts)


class LiveView(PlainView):
    """The Rich Live screen (only on a terminal). Imports Rich and plotext on first use."""

    def __init__(self, title: str, *, max_fixes: int = 3) -> None:
        super().__init__(max_fixes=max_fixes)
        from tuneterm.report.doctor import make_console

        self.title = title
        self.console = make_console()
        self._live: Live | None = None
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._chart_key: tuple[int | None, int, int, int] | None = None
        self._charts: list[Text] = []

    def __enter__(self) -> LiveView:
        from rich.live import Live

        self._live = Live(console=self.console, auto_refresh=False, transient=False, redirect_stdout=False, redirect_stderr=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def status(self, line: str) -> None:
        from rich.text import Text

        self.console.print(Text(f"tuneterm: {inert_line(line, 600)}", style="dim"))

    def finding(self, f: Finding, *, escalated: bool = False) -> None:
        from rich.padding import Padding
        from rich.text import Text

        from tuneterm.report.doctor import STYLES, fix_text

        head = Text()
        head.append("escalated " if escalated else "", style="bold")
        head.append(f"{f.severity.value} {inert_line(f.code, 10)} {inert_line(f.name, 60)}", style=STYLES[f.severity])
        head.append("  " + inert_line(f.message, 600))
        self.console.print(head)
        for fix in f.fixes[: self.max_fixes]:
            self.console.print(Padding(fix_text(fix), (0, 0, 0, 4), expand=False))

    def refresh(self, live: LiveEvaluator) -> None:
        """Redraw the live area from a :class:`~tuneterm.runs.live.LiveEvaluator` (<= 4/s)."""
        if self._live is None:
            return
        now = time.monotonic()
        if now - self._last_draw < 0.25:
            return
        self._last_draw = now
        self._live.update(self._render(live), refresh=True)

    def _render(self, live: LiveEvaluator) -> Group:
        from rich.console import Group
        from rich.text import Text

        run = live.run
        status = live.status
        state = run.state or "following"
        step = run.last_step
        max_steps = run.facts.max_steps or (status.max_steps if status is not None else None)
        loss = run.train.get("loss")
        last = loss.last() if loss is not None else None
        head = Text()
        head.append(inert_line(self.title, 80), style="bold")
        head.append(f"  {inert_line(state, 20)}")
        if step is not None:
            head.append(f"  step {step_text(step, max_steps, state)}")
        if last is not None:
            head.append(f"  loss {last:.4g}")
        head.append(f"  {time.monotonic() - self._started:.0f}s  ", style="dim")
        head.append(f"{len(live.findings)} finding(s)  Ctrl-C: detach/stop", style="dim")
        parts: list[Text] = [head]
        width = max(40, min(self.console.width, 160) - 2)
        key = (run.last_step, sum(len(s) for s in run.train.values()), len(live.findings), width)
        if key != self._chart_key:
            self._chart_key = key
            self._charts = self._draw_charts(run, live.findings, width)
        parts.extend(self._charts)
        return Group(*parts)

    def _draw_charts(self, run: Run, findings: list[Finding], width: int) -> list[Text]:
        from rich.text import Text

        from tuneterm.report.charts import render_charts

        out: list[Text] = []
        try:
            charts = render_charts(run, findings, width, height=8)
        except Exception:  # noqa: BLE001 - a chart must never end a watch
            return out
        for ch in charts[:2]:  # loss and one more: the screen is for the findings too
            legend = "  ".join(f"{m} {inert_line(label, 30)}" for label, m in ch.legend)
            out.append(Text(f"{ch.title}  {legend}", style="bold"))
            out.append(Text.from_ansi(ch.ansi))
        return out
