"""The ``tuneterm doctor`` report: a diagnosis a person reads in a terminal (Rich + plotext).

Layout, after flutter doctor and brew doctor (research/aesthetics.md §5)::

    ✗ 1 error, 2 warnings in runs/x/trainer_state.json (SFT, 500 steps)
      SFT · llama · step 500/500 · epoch 0.09 of 1 · batch 1×8 = 8 · LoRA r16/α32 · nf4

    gradients
      ✗ G101 zero-grad-norm  grad_norm is 0.0 at all 50 logged steps (steps 10–500)
          evidence  zero_steps 50 · total 50
          causes    1. frozen adapters ...
          fixes     gradient_checkpointing_kwargs: {"use_reentrant": false}  # why ...
    ...
    loss  ▄ train  • eval                          (charts, finding steps marked)
    ...
    1 error, 2 warnings, 1 info hidden (-v) · 22 rules checked

Severity marks: ``✗`` error, ``!`` warning, ``•`` info (infos only with ``-v``). Everything that
came from the input (paths, messages, evidence strings, notes) is passed through
:func:`tuneterm.textsafe.inert` and printed as :class:`rich.text.Text`, never as markup, so
``[bold red]`` in a log is shown literally and escape sequences are removed. The Console decides
colour: none under ``NO_COLOR``, none when piped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.text import Text

from tuneterm.version import __version__
from tuneterm.engine.model import Finding, Fix, Severity
from tuneterm.logs.model import Run
from tuneterm.report.prescription import Prescription, show
from tuneterm.report.result import CheckResult, Tally, command_prompt, display_path, elide_path, plural
from tuneterm.textsafe import inert, inert_line

MARKS = {Severity.ERROR: "✗", Severity.WARNING: "!", Severity.INFO: "•"}
ASCII_MARKS = {Severity.ERROR: "x", Severity.WARNING: "!", Severity.INFO: "*"}
STYLES = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "cyan"}
_TRAINER_LABEL = {"sft": "SFT", "dpo": "DPO", "grpo": "GRPO", "classification": "classification", "unknown": "trainer unknown"}


def make_console(width: int | None = None, file: Any = None) -> Console:
    """A Console for reports: no markup, no emoji codes, no auto-highlighting of numbers.

    ``markup=False`` / ``emoji=False`` matter: log text such as ``[bold]`` or ``:fire:`` must be
    printed as written. Colour follows Rich's detection (``NO_COLOR``, ``TERM=dumb``, not a TTY).
    """
    return Console(file=file, width=width, markup=False, emoji=False, highlight=False, soft_wrap=False)


def _marks(console: Console) -> Mapping[Severity, str]:
    enc = (console.encoding or "").lower()
    return MARKS if enc.startswith("utf") else ASCII_MARKS


def fmt_value(value: Any) -> str:
    """A compact, inert rendering of an evidence value.

    >>> fmt_value(0.000123456)
    '0.0001235'
    >>> fmt_value([[10, 0.0], [20, 0.0], [30, 0.0]])
    '10: 0, 20: 0, 30: 0'
    """
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{inert_line(k, 40)} {fmt_value(v)}" for k, v in list(value.items())[:8])
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = list(value)
        pairs = bool(items) and all(
            isinstance(x, Sequence) and not isinstance(x, str | bytes) and len(x) == 2 for x in items
        )
        limit = 6 if pairs else 8
        if pairs:
            shown = ", ".join(f"{fmt_value(a)}: {fmt_value(b)}" for a, b in items[:limit])
        else:
            shown = ", ".join(fmt_value(x) for x in items[:limit])
        more = len(items) - limit
        return shown + (f" … (+{more})" if more > 0 else "")
    return inert_line(value, 160)


def shown_evidence(evidence: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The evidence items worth a reader's eye: ``X_text`` is dropped when ``X`` is there too (the
    text form exists for message templates; ``X`` carries the values)."""
    return [(k, v) for k, v in evidence.items() if not (k.endswith("_text") and k[: -len("_text")] in evidence)]


def fix_text(fix: Fix) -> Text:
    """``key: value  # why`` or ``$ command  # why`` as styled Text (all parts inert)."""
    t = Text()
    if fix.command is not None:
        t.append(f"{command_prompt(fix.command)} {inert_line(fix.command, 300)}", style="bold")
    else:
        value = fix.value if isinstance(fix.value, str) else json.dumps(fix.value, default=str)
        t.append(f"{inert_line(fix.key, 100)}: ", style="bold")
        t.append(inert_line(value, 300), style="bold green")
    t.append(f"  # {inert_line(fix.why, 600)}", style="dim")
    return t


def facts_line(run: Run | None, result: CheckResult) -> str:
    """Trainer kind, model, steps, epochs, batch geometry, LoRA, quantisation, format (inert)."""
    parts: list[str] = []
    if run is None:
        parts.append(f"{result.subject}")
        return " · ".join(parts + [f"format {result.format}"])
    f = run.facts
    kind = _TRAINER_LABEL.get(f.trainer_kind, f.trainer_kind)
    if f.algorithm and f.algorithm.upper() != kind.upper():
        kind += f" ({f.algorithm})"
    parts.append(kind)
    model = f.model_name or f.model_type
    if model:
        parts.append(inert_line(model, 60) + (f" (vocab {f.vocab_size:,})" if f.vocab_size else ""))
    last = run.last_step
    if last is not None:
        state = run.state
        text = f"step {last:,}" + (f"/{f.max_steps:,}" if f.max_steps else "")
        if state in ("stopped", "failed", "died") and f.max_steps and last < f.max_steps:
            text = f"{state} at step {last:,}/{f.max_steps:,} ({100 * last // f.max_steps}%)"
        parts.append(text)
    if f.epoch is not None:
        parts.append(f"epoch {f.epoch:.3g}" + (f" of {f.num_train_epochs:g}" if f.num_train_epochs else ""))
    if f.train_batch_size or f.total_train_batch_size:
        b = f"batch {f.train_batch_size or '?'}"
        if f.gradient_accumulation_steps:
            b += f"×{f.gradient_accumulation_steps}"
        if f.total_train_batch_size:
            b += f" = {f.total_train_batch_size}"
        parts.append(b)
    if f.lora_r is not None:
        lora = "DoRA" if f.use_dora else "LoRA"
        parts.append(f"{lora} r{f.lora_r}" + (f"/α{f.lora_alpha:g}" if f.lora_alpha is not None else ""))
    elif f.peft_type:
        parts.append(inert_line(f.peft_type, 20))
    if f.quantization:
        parts.append(inert_line(f.quantization, 20))
    parts.append(f"format {inert_line(run.format, 30)}")
    from tuneterm.runs.memory import memory_line

    mem = memory_line(run.memory)
    if mem:
        parts.append(inert_line(mem, 160))
    return " · ".join(parts)


def verdict(result: CheckResult, marks: Mapping[Severity, str], verbose: bool, width: int | None = None) -> Text:
    """The first line: what was found, where, for which run.

    With ``width``, a long path gives up leading directories (``…/corpus/file.json``) so the line
    fits: the terminal would otherwise break the file name mid-word.
    """
    t = result.tally
    path = inert_line(display_path(result.source), None)
    steps = result.facts.get("steps")
    trainer = _TRAINER_LABEL.get(str(result.facts.get("trainer")), str(result.facts.get("trainer")))
    context = f" ({trainer}, {plural(steps, 'step')})" if isinstance(steps, int) else f" ({trainer})"
    line = Text()
    if t.errors or t.warnings:
        sev = Severity.ERROR if t.errors else Severity.WARNING
        counts = [plural(n, w) for n, w in ((t.errors, "error"), (t.warnings, "warning")) if n]
        if verbose and t.infos:
            counts.append(plural(t.infos, "info"))
        line.append(f"{marks[sev]} ", style=STYLES[sev])
        line.append(", ".join(counts), style=STYLES[sev])
    else:
        line.append("✓ " if marks is MARKS else "ok ", style="bold green")
        line.append("No problems found", style="bold green")
    if width is not None:
        path = elide_path(path, width - line.cell_len - len(" in ") - len(context))
    line.append(f" in {path}{context}")
    return line


def _finding_block(f: Finding, marks: Mapping[Severity, str], verbose: bool) -> RenderableType:
    head = Text()
    head.append(f"{marks[f.severity]} ", style=STYLES[f.severity])
    head.append(f"{inert_line(f.code, 20)} {inert_line(f.name, 60)}", style="bold")
    head.append("  " + inert_line(f.message, 1000))
    if f.first_step is not None:
        span = f"step {f.first_step:,}" if f.last_step in (None, f.first_step) else f"steps {f.first_step:,}–{f.last_step:,}"
        head.append(f" ({span})", style="dim")
    body: list[RenderableType] = []
    if f.evidence:
        ev = Text()
        ev.append("evidence  ", style="dim")
        ev.append(" · ".join(f"{inert_line(k, 40)} {fmt_value(v)}" for k, v in shown_evidence(f.evidence)))
        body.append(ev)
    causes = f.causes if verbose else f.causes[:3]
    if causes:
        body.append(Text("likely causes", style="dim"))
        for i, c in enumerate(causes, 1):
            body.append(Padding(Text(f"{i}. {inert(c, 600)}"), (0, 0, 0, 2), expand=False))
    fixes = f.fixes if verbose else f.fixes[:5]
    if fixes:
        body.append(Text("fixes", style="dim"))
        body.extend(Padding(fix_text(x), (0, 0, 0, 2), expand=False) for x in fixes)
    hidden = (len(f.causes) - len(causes)) + (len(f.fixes) - len(fixes))
    if hidden:
        body.append(Text(f"(+{hidden} more with -v)", style="dim"))
    if f.references and verbose:
        body.append(Text("see  " + ", ".join(inert_line(r, 200) for r in f.references), style="dim"))
    return Group(head, Padding(Group(*body), (0, 0, 0, 4), expand=False))


def render_result(result: CheckResult, console: Console, *, verbose: bool = False, charts: bool = True) -> Tally:
    """Print one diagnosis to ``console``; return the findings shown, counted by severity."""
    marks = _marks(console)
    shown = [f for f in result.findings if verbose or f.severity is not Severity.INFO]
    console.print(verdict(result, marks, verbose, console.width))
    console.print(Padding(Text(facts_line(result.run, result), style="dim"), (0, 0, 0, 2), expand=False))
    for note in result.notes:
        console.print(Padding(Text(f"note: {inert_line(note, 400)}", style="dim"), (0, 0, 0, 2), expand=False))
    categories: dict[str, list[Finding]] = {}
    for f in shown:
        categories.setdefault(f.category, []).append(f)
    for category, items in categories.items():
        console.print()
        console.print(Text(inert_line(category, 40), style="bold underline"))
        for f in items:
            console.print(Padding(_finding_block(f, marks, verbose), (0, 0, 0, 2), expand=False))
    if charts and result.run is not None:
        _print_charts(result, console, verbose)
    if result.prescription is not None:
        print_prescription(result.prescription, console, verbose=verbose)
    return Tally.of(shown)


def print_prescription(p: Prescription, console: Console, *, verbose: bool = False) -> None:
    """The "Prescription" section: what no config change cures, the diagnostic steps, the patch as
    a short diff (``key: old → new  # why · fixes CODE``), the overruled values and the
    assumptions. Every part goes through :func:`inert_line`: keys and values may come from a log."""
    console.print()
    console.print(Text("Prescription", style="bold underline"))
    if p.empty:
        console.print(Padding(Text("nothing to change: no finding calls for a config change or a step", style="dim"), (0, 0, 0, 2)))
        return
    for b in p.blockers:
        console.print(Padding(Text(f"must change: {inert(b, 800)}", style="bold red"), (0, 0, 0, 2), expand=False))
    if p.steps:
        console.print(Padding(Text("first, in order", style="dim"), (0, 0, 0, 2)))
        for i, st in enumerate(p.steps, 1):
            t = Text(f"{i}. ")
            t.append(f"{command_prompt(st.command)} {inert_line(st.command, 300)}", style="bold")
            t.append(f"  # {inert_line(st.why, 400)}", style="dim")
            console.print(Padding(t, (0, 0, 0, 4), expand=False))
    if p.changes:
        console.print(Padding(Text("then change", style="dim"), (0, 0, 0, 2)))
        for c in p.changes:
            t = Text()
            t.append(f"{inert_line(c.key, 100)}: ", style="bold")
            t.append(inert_line(show(c.was), 120), style="red")
            t.append(" → ")
            t.append(inert_line(show(c.value), 200), style="bold green")
            t.append(f"  # {inert_line(c.why, 400)} · fixes {inert_line(', '.join(c.findings), 80)}", style="dim")
            console.print(Padding(t, (0, 0, 0, 4), expand=False))
    for conflict in p.conflicts if verbose else p.conflicts[:3]:
        console.print(Padding(Text(f"decided {inert_line(conflict.describe(), 400)}", style="dim"), (0, 0, 0, 2), expand=False))
    for a in p.assumptions if verbose else p.assumptions[:4]:
        console.print(Padding(Text(f"assumed: {inert_line(a, 400)}", style="dim"), (0, 0, 0, 2), expand=False))


def _print_charts(result: CheckResult, console: Console, verbose: bool) -> None:
    from tuneterm.report.charts import render_charts

    assert result.run is not None  # noqa: S101 - narrows the type; charts are drawn only for runs
    try:
        charts = render_charts(result.run, result.findings, console.width, with_infos=verbose)
    except Exception as exc:  # noqa: BLE001 - a chart library failure must not lose the diagnosis
        console.print(Text(f"(charts unavailable: {type(exc).__name__}: {inert_line(exc, 200)})", style="dim"))
        return
    marked: dict[int, str] = {}
    for chart in charts:
        console.print()
        title = Text(chart.title, style="bold")
        if len(chart.legend) > 1 or chart.legend[0][0] != chart.title.replace(" ", "_"):
            for label, glyph in chart.legend:
                title.append(f"   {glyph} {label}")
        console.print(title)
        console.print(Text.from_ansi(chart.ansi), crop=True, overflow="crop", no_wrap=True)
        marked.update((step, code) for step, code, _ in chart.marks)
    if marked:
        m = Text("marked: ", style="dim")
        m.append(", ".join(f"{code} at step {step:,}" for step, code in sorted(marked.items())), style="dim")
        m.append("  (│ error, ┊ warning)", style="dim")
        console.print(m)


def render_doctor(
    results: Sequence[CheckResult], console: Console, *, verbose: bool = False, charts: bool = True
) -> None:
    """Print every diagnosis, separated by a rule line, then one tally line for all of them."""
    total = Tally()
    hidden = 0
    rules_checked = 0
    for i, r in enumerate(results):
        if i:
            console.print()
            console.rule(style="dim")
        total = total + render_result(r, console, verbose=verbose, charts=charts)
        hidden += 0 if verbose else r.tally.infos
        rules_checked += len(r.rules)
    console.print()
    line = Text(total.describe(with_infos=verbose), style="bold")
    if hidden:
        line.append(f", {plural(hidden, 'info')} hidden (-v to show)")
    files = f" in {plural(len(results), 'file')}" if len(results) != 1 else ""
    line.append(f"{files} · {plural(rules_checked, 'rule check')} · tuneterm {__version__}", style="dim")
    console.print(line)
