"""What the screens show, computed off the UI thread: pure functions, no Textual.

The TUI adds screens, not logic: every function here calls the library (``report.doctor``,
``report.charts``, ``report.rules_view``, ``runs.live``, ``plan``) and turns its answer into
something a widget can paint: a :class:`rich.text.Text`, a Rich table, or a frozen
:class:`RunSnapshot`. Workers call them in threads and post the result; nothing here touches a
widget, so the same functions are tested without a terminal.

Untrusted text (log lines, sample generations, run names, paths, process command lines) is passed
through :func:`tuneterm.textsafe.inert` / :func:`~tuneterm.textsafe.inert_line` and only ever
placed in :class:`~rich.text.Text`, never parsed as markup.

plotext draws into one global figure, so every chart drawn here takes :data:`PLOT_LOCK`: the run
view and the Doctor screen render in different worker threads.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, RenderableType
from rich.text import Text

from tuneterm.logs.model import Run, RunStatus
from tuneterm.runs.files import JsonlRows, tail
from tuneterm.runs.layout import GPU, STDERR, STDOUT
from tuneterm.textsafe import inert, inert_line

if TYPE_CHECKING:
    from tuneterm.engine.model import Finding, Rule
    from tuneterm.plan.gpu import SystemProfile
    from tuneterm.plan.recommend import Plan
    from tuneterm.plan.verdict import FitVerdict
    from tuneterm.preflight.plan_request import PlanRequest
    from tuneterm.report.result import CheckResult
    from tuneterm.train.preflight import PreflightResult

PLOT_LOCK = threading.Lock()
"""Held while plotext draws (its figure is process-global)."""

LOG_TAIL_LINES = 200
_TAIL_BYTES = 64 * 1024
SAMPLES_SHOWN = 12
CHART_HEIGHT = 10


# ------------------------------------------------------------------------------- Rich capture
def capture(draw: Callable[[Console], Any], width: int) -> Text:
    """Run ``draw(console)`` on an off-screen 256-colour console ``width`` wide; return its output.

    The library's renderers print to a Console (``render_doctor``, ``render_rule``). Capturing the
    ANSI and reading it back with :meth:`Text.from_ansi` keeps their exact layout; their text was
    already made inert, so the ANSI we read back is only our own styling. Textual then maps the
    colours to the terminal (and drops them under ``NO_COLOR``).
    """
    buf = io.StringIO()
    console = Console(
        file=buf, width=max(int(width), 40), force_terminal=True, color_system="256", markup=False,
        emoji=False, highlight=False, soft_wrap=False, legacy_windows=False,
    )
    draw(console)
    return Text.from_ansi(buf.getvalue(), no_wrap=True)


# ------------------------------------------------------------------------------- rules
@lru_cache(maxsize=1)
def rules() -> tuple[Rule, ...]:
    """The shipped log and eval rules (what ``tuneterm runs``/``watch`` evaluate), loaded once."""
    from tuneterm.engine import load_rules

    return tuple(load_rules(scopes=["log", "eval"]).rules)


def rule_text(code: str, width: int) -> Text:
    """``tuneterm rule CODE`` as Text; a one-line note when no shipped rule has that code."""
    from tuneterm.report.rules_view import render_rule

    for r in rules():
        if r.code == code:
            return capture(lambda c: render_rule(r, c), width)
    return Text(f"no rule {inert_line(code, 20)} in the shipped rules")


# ------------------------------------------------------------------------------- doctor
def doctor_text(results: Sequence[CheckResult], width: int, *, verbose: bool = False) -> Text:
    """The ``tuneterm doctor`` report of ``results`` at ``width`` columns (charts included)."""
    from tuneterm.report.doctor import render_doctor

    with PLOT_LOCK:
        return capture(lambda c: render_doctor(results, c, verbose=verbose, charts=True), width)


def check_path(path: str) -> CheckResult:
    """Check one log file or directory as ``tuneterm doctor PATH`` does.

    Raises:
        TunetermError: unreadable path, no metrics (NoMetricsError), a bad rule file.
    """
    from tuneterm.preflight.advice_context import advise_results
    from tuneterm.report import CheckOptions, check_subject

    # with the prescription, as `tuneterm doctor` ends its report
    return advise_results([check_subject(os.path.expanduser(path.strip()), CheckOptions())])[0]


# ------------------------------------------------------------------------------- GPUs
def _bar(frac: float | None, width: int = 20) -> Text:
    if frac is None:
        return Text("n/a".ljust(width), style="dim")
    frac = min(max(frac, 0.0), 1.0)
    full = int(round(frac * width))
    style = "red" if frac >= 0.9 else "yellow" if frac >= 0.7 else "green"
    t = Text("█" * full, style=style)
    t.append("░" * (width - full), style="dim")
    return t


_SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 30) -> str:
    """The last ``width`` values (each 0..1) as block characters.

    >>> sparkline([0.0, 0.5, 1.0])
    '▁▅█'
    """
    vals = list(values)[-width:]
    return "".join(_SPARK[min(len(_SPARK) - 1, max(0, int(round(v * (len(_SPARK) - 1)))))] for v in vals)


def gpu_renderables(profile: SystemProfile, history: dict[int, list[tuple[float, float]]]) -> list[RenderableType]:
    """One panel per GPU (memory, utilisation, temperature, power, processes) and a host line.

    ``history`` maps GPU index to recent ``(memory fraction, utilisation fraction)`` samples,
    drawn as sparklines. With no GPU, one panel says why and what tuneterm still does.
    """
    from rich.panel import Panel
    from rich.table import Table

    from tuneterm.plan.gpu import GIB

    out: list[RenderableType] = []
    if not profile.gpus:
        body = Text()
        body.append("No GPU: ", style="bold")
        body.append(inert_line(profile.gpu_error or "none found", 300))
        body.append("\n\nWhat tuneterm can still do on this machine:\n", style="bold")
        for key, what in (
            ("d", "Doctor: diagnose any training log or checkpoint directory"),
            ("p", "Plan: estimate memory and settings for a GPU you name (GPU memory field)"),
            ("r", "Runs: start and watch CPU runs (configs/tiny.yaml trains on CPU)"),
            ("", "CLI: tuneterm check LOG in CI, tuneterm rules, tuneterm plan --gpu-memory 24GiB"),
        ):
            body.append(f"  {key:>1}  " if key else "     ", style="bold")
            body.append(what + "\n")
        out.append(Panel(body, title="GPUs", title_align="left", border_style="yellow"))
    else:
        head = f"driver {profile.driver_version or 'n/a'} · CUDA {profile.cuda_version or 'n/a'} · {len(profile.gpus)} GPU(s)"
        out.append(Text(inert_line(head, 200), style="dim"))
    for g in profile.gpus:
        t = Table.grid(padding=(0, 1))
        t.add_column(style="bold", no_wrap=True)
        t.add_column(no_wrap=True)
        t.add_column(no_wrap=True)
        mem_frac = g.used_bytes / g.total_bytes if g.total_bytes else None
        util = None if g.utilization_pct is None else g.utilization_pct / 100
        hist = history.get(g.index, [])
        t.add_row("memory", _bar(mem_frac),
                  Text(f"{g.used_bytes / GIB:.1f} / {g.total_bytes / GIB:.1f} GiB  ({g.free_bytes / GIB:.1f} free)  ")
                  + Text(sparkline([h[0] for h in hist]), style="cyan"))
        t.add_row("util", _bar(util), Text(f"{'n/a' if g.utilization_pct is None else f'{g.utilization_pct}%':>4}              ")
                  + Text(sparkline([h[1] for h in hist]), style="cyan"))
        temp = "n/a" if g.temperature_c is None else f"{g.temperature_c} C"
        power = "n/a" if g.power_w is None else f"{g.power_w:.0f} W" + (f" / {g.power_limit_w:.0f} W" if g.power_limit_w else "")
        cc = "n/a" if g.compute_capability is None else f"{g.compute_capability[0]}.{g.compute_capability[1]}"
        t.add_row("temp", Text(temp), Text(f"power {power} · cc {cc} · bf16 {'yes' if g.bf16 else 'no' if g.bf16 is False else 'n/a'}"))
        if g.processes:
            for p in g.processes:
                used = "?" if p.used_bytes is None else f"{p.used_bytes / GIB:.2f} GiB"
                t.add_row("process" if p is g.processes[0] else "", Text(f"pid {p.pid}"),
                          Text(f"{used}  {inert_line(p.command or '(command not visible)', 120)}"))
        else:
            t.add_row("process", Text("none"), Text(""))
        title = Text(f"GPU {g.index} · {inert_line(g.name, 60)}")
        out.append(Panel(t, title=title, title_align="left", border_style="blue"))
    ram_t, ram_a = profile.ram_total_bytes, profile.ram_available_bytes
    ram = "RAM n/a" if ram_t is None else f"RAM {0 if ram_a is None else ram_a / GIB:.1f} GiB free of {ram_t / GIB:.1f} GiB"
    out.append(Text(inert_line(f"host {profile.hostname} · CPU {profile.cpu_model or 'unknown'} x {profile.cpu_count or '?'} · {ram}", 300), style="dim"))
    return out


# ------------------------------------------------------------------------------- Plan
@dataclass(frozen=True, slots=True)
class PlanForm:
    """The Plan form: what the user typed (read into a request by :func:`make_plan`)."""

    model: str
    method: str = "lora"
    trainer: str = "sft"
    seq_len: str = "1024"
    batch: str = ""
    gpu_memory: str = ""


@dataclass(frozen=True, slots=True)
class PlanView:
    """A plan and its verdict, as the Plan screen shows them.

    Attributes:
        plan: the planner's answer.
        where: one line (inert) saying which memory the plan was fitted to.
        verdict: :func:`tuneterm.plan.verdict.fit_verdict`'s answer, the one ``tuneterm plan``
            prints; its ``gpus`` carry each detected GPU's free memory now.
    """

    plan: Plan
    where: str
    verdict: FitVerdict


def make_plan(form: PlanForm, profile: SystemProfile | None) -> PlanView:
    """Run the planner for the form through ``tuneterm plan``'s own flow
    (:func:`tuneterm.preflight.plan_request.plan_for`): the same plan and verdict for the same inputs.

    The capacity is the typed GPU memory, else the *total* memory of the smallest detected GPU
    (:func:`tuneterm.plan.verdict.gpu_target`), else unknown. Memory that other processes hold
    right now does not change the verdict; the verdict's note says when it matters.

    Args:
        form: what the user typed.
        profile: the GPUs probed; None probes them.

    Returns:
        A :class:`PlanView`.

    Raises:
        TunetermError: unknown model, bad numbers (ConfigError / InputError), one line.
    """
    from tuneterm.preflight.plan_request import plan_for

    if profile is None:
        from tuneterm.plan.gpu import probe

        profile = probe()
    outcome = plan_for(plan_request(form, profile), profile)
    cap, target = outcome.plan.capacity_gib, outcome.target
    if target is None:
        where = f"{cap:.1f} GiB (typed)"
    elif target.gpu is not None:
        where = f"the total memory of {inert_line(target.source, 120)}"
    else:
        where = f"no GPU ({inert_line(profile.gpu_error or 'none found', 120)}): type a GPU memory (24GiB) to check the fit"
    return PlanView(plan=outcome.plan, where=where, verdict=outcome.verdict)


def plan_request(form: PlanForm, profile: SystemProfile) -> PlanRequest:
    """The form as the planner's request: whole numbers checked, the GPUs found as the GPU count
    (``tuneterm plan --gpus``' default), everything else at ``tuneterm plan``'s defaults.

    Raises:
        ConfigError: no model, or a number that is not a whole number of at least 1 (one line).
    """
    from tuneterm.errors import ConfigError
    from tuneterm.preflight.plan_request import PlanRequest

    def positive(text: str, what: str) -> int:
        try:
            v = int(text.strip())
        except ValueError:
            raise ConfigError(f"{what} must be a whole number, got {inert_line(text, 20)!r}") from None
        if v < 1:
            raise ConfigError(f"{what} must be at least 1")
        return v

    if not form.model.strip():
        raise ConfigError("type a model: a local directory, a config.json, or a hub id such as Qwen/Qwen2.5-0.5B")
    return PlanRequest(model=form.model, method=form.method, trainer=form.trainer,
                       seq_len=positive(form.seq_len or "1024", "sequence length"),
                       batch_size=positive(form.batch, "batch") if form.batch.strip() else None,
                       gpus=len(profile.gpus) or None,
                       gpu_memory=form.gpu_memory.strip() or None)


def plan_renderables(view: PlanView) -> list[RenderableType]:
    """The plan as the screen shows it: summary, verdict (and what other processes hold), the
    breakdown against the GPUs, recommendations."""
    from rich.table import Table

    plan, verdict = view.plan, view.verdict
    est, m, s = plan.estimate, plan.model, plan.setup
    out: list[RenderableType] = []
    head = Text()
    head.append(inert_line(m.name, 80), style="bold")
    head.append(f"  {m.size_b:.2f}B params · {m.layers} layers · facts from {inert_line(m.source, 20)}", style="dim")
    out.append(head)
    if m.is_guess:
        out.append(Text(f"WARNING: architecture GUESSED from the name ({inert_line(m.source_detail, 160)}): the estimate is rough",
                        style="bold red"))
    out.append(Text(f"{s.trainer.upper()} {s.method} · batch {s.batch_size} x {s.seq_len} tokens x GA {s.grad_accum} · "
                    f"checkpointing {'on' if s.gradient_checkpointing else 'off'} · {s.optimizer}"))
    line = Text()
    peak = est.peak_gib
    if verdict.label is None:
        line.append(f"peak {peak:.2f} GiB per GPU", style="bold")
    else:
        line.append(verdict.label, style="bold green" if verdict.fits else "bold red")
        line.append(f"  peak {peak:.2f} GiB per GPU ({verdict.headroom:.0%} headroom)", style="bold")
    line.append(f"  against {view.where}", style="dim")
    out.append(line)
    if verdict.note:
        out.append(Text(f"note: {inert_line(verdict.note, 400)}", style="yellow"))
    scale = max([peak] + [g.total_gib for g in verdict.gpus] + [plan.capacity_gib or 0.0]) or 1.0
    bars = Table.grid(padding=(0, 1))
    bars.add_column(no_wrap=True, style="bold")
    bars.add_column(no_wrap=True)
    bars.add_column(no_wrap=True)
    bars.add_row("needed", _gauge(peak / scale, 30, "magenta"), Text(f"{peak:.2f} GiB"))
    for g in verdict.gpus:  # held by other processes (yellow), then free now (green when the plan fits in it)
        bars.add_row(f"GPU {g.index}", _split_gauge(g.held_gib / scale, g.free_gib / scale, 30, "green" if g.fits_free else "red"),
                     Text(f"{g.total_gib:.1f} GiB total, {g.free_gib:.1f} free, {g.held_gib:.1f} held"))
    if not verdict.gpus and plan.capacity_gib is not None:
        bars.add_row("capacity", _gauge(plan.capacity_gib / scale, 30, "green" if plan.fits else "red"),
                     Text(f"{plan.capacity_gib:.2f} GiB"))
    out.append(bars)
    t = Table(title="memory per GPU", title_justify="left", show_header=True, header_style="bold", box=None,
              pad_edge=False, expand=True)
    t.add_column("part", no_wrap=True)
    t.add_column("GiB", justify="right", no_wrap=True)
    t.add_column("phase", no_wrap=True)
    t.add_column("how", ratio=1)
    for c in est.components:
        t.add_row(inert_line(c.name, 40), f"{c.gib:.2f}", c.phase, Text(inert_line(c.detail, 200), style="dim"))
    out.append(t)
    for note in (*est.notes, *plan.warnings):
        out.append(Text(f"note: {inert_line(note, 300)}", style="yellow"))
    for i, ch in enumerate(plan.to_fit, 1):  # the cheapest changes that make it fit, each with its peak
        keys = ", ".join(f"{k}: {json.dumps(v)}" for k, v in ch.set.items())
        fix = Text(f"to fit {i}: ", style="bold")
        fix.append(inert_line(keys, 200), style="green")
        fix.append(f" -> {ch.peak_gib:.1f} GiB ({inert_line(ch.cost, 200)})", style="dim")
        out.append(fix)
    r = Table(title="recommendations", title_justify="left", show_header=True, header_style="bold", box=None,
              pad_edge=False, expand=True)
    r.add_column("key", no_wrap=True)
    r.add_column("value", no_wrap=True)
    r.add_column("why", ratio=1)
    for rec in plan.recommendations:
        value = rec.value if isinstance(rec.value, str) else json.dumps(rec.value)
        why = Text(inert_line(rec.why, 400))
        why.append(f"  [{inert_line(rec.row, 60)}]", style="dim")
        r.add_row(Text(inert_line(rec.key, 40), style="bold"), Text(inert_line(value, 40), style="green"), why)
    out.append(r)
    return out


def _split_gauge(held: float, free: float, width: int, free_style: str) -> Text:
    """A gauge of two parts: memory held by others (yellow), then free memory (``free_style``)."""
    h = int(round(min(max(held, 0.0), 1.0) * width))
    f = int(round(min(max(free, 0.0), 1.0) * width))
    f = min(f, width - h)
    t = Text("█" * h, style="yellow")
    t.append("█" * f, style=free_style)
    t.append("·" * (width - h - f), style="dim")
    return t


def _gauge(frac: float, width: int, style: str) -> Text:
    full = int(round(min(max(frac, 0.0), 1.0) * width))
    t = Text("█" * full, style=style)
    t.append("·" * (width - full), style="dim")
    return t


# ------------------------------------------------------------------------------- runs
@dataclass(frozen=True, slots=True)
class ChartView:
    """One rendered chart: title line (with legend) and the plotext drawing as Text."""

    title: Text
    body: Text


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """Everything the run view shows at one moment; built in a worker, swapped in whole.

    Attributes:
        name: run name (inert). path: run directory or log path.
        kind: ``run`` (a tuneterm run directory) or ``log`` (any other log or checkpoint dir).
        state: shown state (``running``, ``finished``, ``died`` ..., ``log`` for a plain log).
        stoppable: a live tuneterm run on this host with a recorded pid.
        headline: one status line (trainer, step, loss, elapsed, error).
        findings: the latest evaluation, most severe first.
        charts: loss/eval loss, grad norm, learning rate, rewards, memory.
        log: (file name, last lines) for stdout.log and stderr.log, inert.
        samples: the latest generations (step, prompt, completion, note), inert.
    """

    name: str
    path: str
    kind: str
    state: str
    stoppable: bool
    headline: str
    findings: tuple[Finding, ...] = ()
    charts: tuple[ChartView, ...] = ()
    log: tuple[tuple[str, tuple[str, ...]], ...] = ()
    samples: tuple[tuple[int, str, str, str], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


def tail_lines(path: Path, n: int = LOG_TAIL_LINES, max_bytes: int = _TAIL_BYTES) -> tuple[str, ...]:
    """The last ``n`` lines of a (maybe huge, maybe binary-ish) log, inert, one line each.

    Carriage returns split lines too: tqdm redraws its bar with ``\\r``, and only the last state
    of each bar is worth showing.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "x.log"
    >>> _ = p.write_bytes(b"a\\n 10%\\r 20%\\r\\n\\x1b[31mred\\x1b[0m [bold]x[/]\\n")
    >>> tail_lines(p)
    ('a', '20%', 'red [bold]x[/]')
    """
    out: list[str] = []
    for raw in tail(path, max_bytes):
        line = raw.decode("utf-8", "replace")
        parts = [p for p in line.split("\r") if p.strip()]
        if parts:
            out.append(inert_line(parts[-1], 400))
    return tuple(out[-n:])


def _series_from_jsonl(path: Path, keys: Sequence[str]) -> dict[str, Any]:
    from tuneterm.logs.model import Series

    series = {k: Series(k) for k in keys}
    for row in JsonlRows(path):
        if not isinstance(row.get("step"), int):
            continue
        for k in keys:
            v = row.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                series[k].append(row["step"], float(v))
    return {k: s for k, s in series.items() if len(s)}


def memory_chart(run_dir: Path, width: int, height: int = CHART_HEIGHT) -> ChartView | None:
    """GPU memory (allocated, reserved; MiB) from ``gpu.jsonl``, or the process RSS on CPU runs."""
    path = run_dir / GPU
    if not path.is_file():
        return None
    found = _series_from_jsonl(path, ("mem_allocated_mib", "mem_reserved_mib", "rss_mib"))
    if "mem_allocated_mib" in found or "mem_reserved_mib" in found:
        title, lines = "GPU memory (MiB)", [("allocated", found.get("mem_allocated_mib")), ("reserved", found.get("mem_reserved_mib"))]
    elif "rss_mib" in found:
        title, lines = "process memory, CPU run (RSS MiB)", [("rss", found["rss_mib"])]
    else:
        return None
    from tuneterm.report.charts import decimate, nice_ticks

    with PLOT_LOCK:
        import plotext as plt

        plt.terminal.limit(False, False)
        fig = plt.figure
        fig.clear()
        fig.theme("simple")
        fig.plot_size(max(width, 30), height)
        fig.legend(active=False)
        legend = Text(title, style="bold")
        lo, hi = math.inf, -math.inf
        drawn = 0
        for i, (label, s) in enumerate(lines):
            if s is None:
                continue
            xs, ys = decimate(s.steps, s.values)
            if len(xs) < 2:
                continue
            marker = ("hd", "•")[i % 2]
            sig = fig.signal(xs, ys, marker=plt.marker(marker, pixel=(12, 10)[i % 2]))
            sig.lines()
            fig.draw(sig)
            drawn += 1
            legend.append(f"   {'▄' if marker == 'hd' else marker} {label}")
            lo, hi = min(lo, xs[0]), max(hi, xs[-1])
        if not drawn:
            fig.clear()
            return None
        if hi > lo:
            fig.ruler("x").ticks(nice_ticks(lo, hi, max(3, min(8, width // 12))))
        ansi = fig.build().string()
        fig.clear()
    return ChartView(legend, Text.from_ansi(ansi, no_wrap=True))


def run_charts(run: Run, findings: Sequence[Finding], run_dir: Path | None, width: int) -> tuple[ChartView, ...]:
    """The doctor charts of ``run`` (loss with eval loss, grad norm, LR, rewards) plus memory."""
    from tuneterm.report.charts import render_charts

    views: list[ChartView] = []
    with PLOT_LOCK:
        try:
            charts = render_charts(run, findings, width, height=CHART_HEIGHT)
        except Exception as exc:  # noqa: BLE001 - a chart failure must not lose the run view
            charts = []
            views.append(ChartView(Text("charts unavailable", style="bold"), Text(inert_line(f"{type(exc).__name__}: {exc}", 200), style="dim")))
    for c in charts:
        title = Text(c.title, style="bold")
        if len(c.legend) > 1 or c.legend[0][0] != c.title.replace(" ", "_"):
            for label, glyph in c.legend:
                title.append(f"   {glyph} {inert_line(label, 40)}")
        views.append(ChartView(title, Text.from_ansi(c.ansi, no_wrap=True)))
    if run_dir is not None:
        mem = memory_chart(run_dir, width)
        if mem is not None:
            views.append(mem)
    return tuple(views)


def headline(status: RunStatus, state: str, run: Run | None) -> str:
    """``sft · step 12/30 · loss 5.21 · epoch 0.55 · 1m02s`` plus the recorded error, inert."""
    from tuneterm.runs.info import fmt_duration, parse_time

    parts = [state]
    kind = run.facts.trainer_kind if run is not None else status.trainer
    if kind:
        parts.append(str(kind))
    step = run.last_step if run is not None else None
    if status.step is not None and (step is None or status.step > step):
        step = status.step
    max_steps = status.max_steps if status.max_steps is not None else (run.facts.max_steps if run is not None else None)
    if step is not None:
        from tuneterm.progress import step_text

        parts.append(f"step {step_text(step, max_steps, state)}")
    loss = run.train["loss"].last() if run is not None and "loss" in run.train else None
    if loss is not None:
        parts.append(f"loss {loss:.4g}")
    t0, t1 = parse_time(status.started), parse_time(status.ended)
    if t0 is not None:
        import time

        parts.append(fmt_duration((t1 if t1 is not None else time.time()) - t0))
    if status.error:
        parts.append(f"error: {status.error}")
    return inert_line(" · ".join(parts), 300)


def samples_view(samples: Sequence[dict[str, Any]], n: int = SAMPLES_SHOWN) -> tuple[tuple[int, str, str, str], ...]:
    """The latest ``n`` generations as ``(step, prompt, completion, note)``, newest first, inert."""
    out = []
    for s in list(samples)[-n:][::-1]:
        step = s.get("step") if isinstance(s.get("step"), int) else -1
        note = []
        if isinstance(s.get("n_tokens"), int):
            note.append(f"{s['n_tokens']} tokens")
        if s.get("hit_max_tokens") is True:
            note.append("hit max_new_tokens")
        out.append((step, inert(s.get("prompt", ""), 600), inert(s.get("completion", ""), 2000), ", ".join(note)))
    return tuple(out)


def snapshot(evaluator: Any, width: int, *, demo: bool = False) -> RunSnapshot:
    """Build the run view's :class:`RunSnapshot` from a polled :class:`~tuneterm.runs.live.LiveEvaluator`."""
    from tuneterm.runs.layout import LIVE_STATES, METRICS
    from tuneterm.runs.status import effective_state, same_host

    path = Path(evaluator.path)
    run = evaluator.run
    recorded = evaluator.status if evaluator.is_run_dir else None
    status = recorded if recorded is not None and recorded != RunStatus() else RunStatus()
    is_run = evaluator.is_run_dir and (status != RunStatus() or (path / METRICS).is_file())
    if is_run:
        state = effective_state(status, path)
        kind = "run"
    else:
        state = "sample" if demo else "log"
        kind = "log"
    stoppable = kind == "run" and state in LIVE_STATES and status.pid is not None and same_host(status)
    findings = tuple(evaluator.findings)
    charts = run_charts(run, findings, path if kind == "run" else None, width) if run.has_metrics() else ()
    log: list[tuple[str, tuple[str, ...]]] = []
    if kind == "run":
        for name in (STDERR, STDOUT):
            p = path / name
            if p.is_file():
                log.append((name, tail_lines(p)))
    notes = tuple(inert_line(n, 300) for n in run.notes)
    return RunSnapshot(
        name=inert_line(path.name, 100), path=str(path), kind=kind, state=state, stoppable=stoppable,
        headline=headline(status, state, run), findings=findings, charts=charts, log=tuple(log),
        samples=samples_view(run.samples), notes=notes,
    )


def finding_detail(f: Finding) -> Text:
    """A finding for the detail pane: message, steps, evidence, causes, fixes (all inert)."""
    from tuneterm.report.doctor import STYLES, fix_text, fmt_value

    t = Text()
    t.append(f"{f.severity.value} ", style=STYLES[f.severity])
    t.append(f"{inert_line(f.code, 20)} {inert_line(f.name, 60)}", style="bold")
    if f.first_step is not None:
        span = f"step {f.first_step}" if f.last_step in (None, f.first_step) else f"steps {f.first_step}-{f.last_step}"
        t.append(f"  ({span})", style="dim")
    t.append("\n" + inert(f.message, 1000) + "\n")
    if f.evidence:
        t.append("evidence  ", style="dim")
        t.append(" · ".join(f"{inert_line(k, 40)} {fmt_value(v)}" for k, v in f.evidence.items()) + "\n")
    if f.causes:
        t.append("likely causes\n", style="dim")
        for i, c in enumerate(f.causes[:5], 1):
            t.append(f"  {i}. {inert_line(c, 400)}\n")
    if f.fixes:
        t.append("fixes\n", style="dim")
        for x in f.fixes:
            t.append("  ")
            t.append_text(fix_text(x))
            t.append("\n")
    t.append("enter: read the rule", style="dim")
    return t


def preflight_text(result: PreflightResult) -> RenderableType:
    """The pre-flight findings for the "start a run" modal: errors first, then warnings, each with
    its message and fixes, wrapped under a hanging indent (all inert: messages quote config values)."""
    from rich.console import Group
    from rich.table import Table

    from tuneterm.report.doctor import STYLES, fix_text

    parts: list[RenderableType] = []
    for i, f in enumerate(result.findings):
        head = Text()
        if i:
            head.append("\n")
        head.append(f"{f.severity.value} ", style=STYLES.get(f.severity, "bold"))
        head.append(f"{inert_line(f.code, 20)} {inert_line(f.name, 60)}", style="bold")
        parts.append(head)
        body = Table.grid(padding=(0, 1), expand=True)
        body.add_column(no_wrap=True, style="dim")
        body.add_column(ratio=1)
        body.add_row("", Text(inert(f.message, 1000)))
        for x in f.fixes:
            body.add_row("fix", fix_text(x))
        parts.append(body)
    return Group(*parts)


def preflight_summary(result: PreflightResult) -> str:
    """One line for a notification about findings that do not block a launch (warnings, info):
    ``pre-flight: 2 warnings (not blocking): C104 name, C105 name; tuneterm check CONFIG explains``."""
    n = len(result.findings)
    names = ", ".join(f"{f.code} {f.name}" for f in result.findings)
    word = "warning" if n == 1 else "warnings"
    return inert_line(f"pre-flight: {n} {word} (not blocking): {names}; tuneterm check "
                      f"{result.source} explains them", 400)


def sample_dirs() -> list[Path]:
    """The sample runs shipped in ``tuneterm/samples/`` (``tuneterm ui --demo`` opens on them)."""
    from tuneterm.resources import samples_dir

    root = samples_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")) and any(p.glob("*.json")))
