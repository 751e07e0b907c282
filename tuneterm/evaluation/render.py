"""Terminal and JSON rendering of an :class:`~tuneterm.evaluation.results.EvalReport`.

The terminal report (Rich) has four parts: the headline verdict, the metrics table (base vs
fine-tuned, delta and 95% bootstrap CI), the forgetting probe (perplexity and pass rates by
category), the findings with fixes, and side-by-side examples worst first. Every string that came
from a dataset or a model goes through :func:`tuneterm.textsafe.inert` and into a
:class:`rich.text.Text`, so escape sequences are stripped and ``[bold]`` is shown, not obeyed.
"""

from __future__ import annotations

import json
import math
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tuneterm.engine.model import Finding, Severity
from tuneterm.evaluation.metrics import PairedDelta
from tuneterm.evaluation.results import METRIC_LABELS, EvalReport
from tuneterm.textsafe import inert, inert_line

_SEV_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_SEV_MARK = {Severity.ERROR: "✖", Severity.WARNING: "▲", Severity.INFO: "•"}
_VERDICT_STYLE = {"better": "green", "worse": "red", "unclear": "dim"}


def _num(v: float | None, digits: int = 3) -> str:
    """A number for people: fixed digits, or 3 significant digits once it is huge (a collapsed
    model's perplexity can be 1e200, which fixed-point would print as a 200-digit integer)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if abs(v) >= 1e6:
        return f"{v:.3g}"
    return f"{v:.{digits}f}"


def _signed(v: float, digits: int = 3) -> str:
    return "–" if math.isnan(v) else f"{v:+.{digits}f}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def headline(report: EvalReport) -> Text:
    """One sentence: did the fine-tune help on the held-out task, and is the difference real?"""
    d = report.delta("rougeL")
    t = Text()
    if d is None or d.n == 0:
        return Text("no examples were scored")
    span = f"(95% CI {_signed(d.ci_low)} to {_signed(d.ci_high)}, n={d.n})"
    if d.verdict == "better":
        t.append("The fine-tune improved ROUGE-L ", style="bold")
        t.append(f"{_signed(d.delta)} ", style="bold green")
        t.append(f"{span}: a real improvement on these examples.")
    elif d.verdict == "worse":
        t.append("The fine-tune made ROUGE-L worse ", style="bold")
        t.append(f"{_signed(d.delta)} ", style="bold red")
        t.append(f"{span}: a real regression on these examples.")
    else:
        t.append("No clear difference in ROUGE-L ", style="bold")
        t.append(f"{_signed(d.delta)} {span}: the interval contains 0; more examples may tell.")
    return t


def _delta_cells(d: PairedDelta | None, digits: int = 3, lower_is_better: bool = False) -> list[Text]:
    if d is None or d.n == 0:
        return [Text("–"), Text("–"), Text("")]
    verdict = d.verdict
    if lower_is_better and verdict != "unclear":
        verdict = "worse" if verdict == "better" else "better"
    return [
        Text(_signed(d.delta, digits)),
        Text(f"[{_signed(d.ci_low, digits)}, {_signed(d.ci_high, digits)}]"),
        Text(verdict, style=_VERDICT_STYLE[verdict]),
    ]


def metrics_table(report: EvalReport) -> Table:
    """Base vs fine-tuned metrics with deltas and 95% bootstrap CIs."""
    b, f = report.base, report.finetuned
    table = Table(title=f"Held-out task ({report.selection.n} examples)", title_justify="left", expand=False)
    for col, just in (("metric", "left"), ("base", "right"), ("fine-tuned", "right"), ("Δ", "right"),
                      ("95% CI", "right"), ("", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for key in ("rouge1", "rouge2", "rougeL"):
        table.add_row(METRIC_LABELS[key], _num(b.rouge[key]), _num(f.rouge[key]), *_delta_cells(report.delta(key)))
    if b.exact_match_n:
        table.add_row(f"exact match (n={b.exact_match_n})", _num(b.exact_match), _num(f.exact_match),
                      *_delta_cells(report.delta("exact_match")))
    table.add_row("length, mean words", _num(b.lengths.mean_words, 1), _num(f.lengths.mean_words, 1),
                  *_delta_cells(report.delta("words"), 1)[:2], "")
    table.add_row("length, median words", _num(b.lengths.median_words, 1), _num(f.lengths.median_words, 1), "", "", "")
    table.add_row("hit token limit", _pct(b.lengths.limit_share), _pct(f.lengths.limit_share), "", "", "")
    table.add_row("empty", _pct(b.degenerate.empty_share), _pct(f.degenerate.empty_share), "", "", "")
    table.add_row("degenerate", _pct(b.degenerate.degenerate_share), _pct(f.degenerate.degenerate_share),
                  *_delta_cells(report.delta("degenerate"), 2, lower_is_better=True))
    return table


def probe_table(report: EvalReport) -> Table | None:
    """The forgetting probe: perplexity, degenerate share and pass rate per category."""
    pr = report.probes
    if pr is None:
        return None
    table = Table(title=f"General ability (probe set: {inert_line(pr.name, 60)})", title_justify="left")
    for col, just in (("check", "left"), ("base", "right"), ("fine-tuned", "right"), ("change", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    if pr.base_perplexity is not None and pr.base_perplexity.tokens:
        bp, fp = pr.base_perplexity.value, pr.finetuned_perplexity.value if pr.finetuned_perplexity else None
        ratio = pr.perplexity_ratio
        style = "red" if ratio is not None and ratio >= 1.5 else ""
        table.add_row("general-text perplexity", _num(bp, 2), _num(fp, 2),
                      Text("–" if ratio is None else f"x{_num(ratio, 2)}", style=style))
    if pr.results:
        db, df = pr.base_degenerate.degenerate_share, pr.finetuned_degenerate.degenerate_share
        table.add_row("degenerate answers", _pct(db), _pct(df),
                      Text(f"{100 * (df - db):+.0f} pts", style="red" if df - db >= 0.2 else ""))
        for cat in pr.categories:
            cb, cf = pr.pass_rate("base", cat), pr.pass_rate("finetuned", cat)
            n = sum(r.probe.category == cat for r in pr.results)
            change = (cf or 0) - (cb or 0)
            table.add_row(f"  {inert_line(cat, 30)} (n={n})", _pct(cb), _pct(cf),
                          Text(f"{100 * change:+.0f} pts", style="red" if change <= -0.2 else ""))
        cb, cf = pr.consistency("base"), pr.consistency("finetuned")
        if cb is not None and cf is not None:
            table.add_row("  paraphrase groups consistent", _pct(cb), _pct(cf), f"{100 * (cf - cb):+.0f} pts")
        pb, pf = pr.pass_rate("base"), pr.pass_rate("finetuned")
        change = (pf or 0) - (pb or 0)
        table.add_row(Text("probes passed", style="bold"), _pct(pb), _pct(pf),
                      Text(f"{100 * change:+.0f} pts", style="red" if change <= -0.2 else ""))
    return table


def finding_block(f: Finding) -> Group:
    """A finding: mark, code, name, severity, message, then its fixes."""
    head = Text()
    head.append(f"{_SEV_MARK[f.severity]} {f.code} {f.name} ", style=_SEV_STYLE[f.severity])
    head.append(f"[{f.severity.value}] ", style=_SEV_STYLE[f.severity])
    head.append(inert(f.message, 600))
    parts: list[Any] = [head]
    for fix in f.fixes[:5]:
        line = Text("    fix: ", style="bold")
        if fix.command is not None:
            line.append(inert_line(fix.command, 200), style="cyan")
        else:
            line.append(f"{inert_line(fix.key, 80)}: {inert_line(json.dumps(fix.value), 160)}", style="cyan")
        line.append(f"  {inert_line(fix.why, 300)}", style="dim")
        parts.append(line)
    examples = f.evidence.get("examples") or f.evidence.get("lost")
    if isinstance(examples, list):
        for ex in examples[:2]:
            parts.append(Text(f"    e.g. {inert_line(ex, 140)}", style="dim"))
    return Group(*parts)


def example_block(i: int, e: Any, width: int) -> Group:
    """Prompt, reference, and base | fine-tuned side by side for one example."""
    title = Text(f"#{i} {inert_line(e.example.id, 40)}  ", style="bold")
    title.append(f"ROUGE-L base {e.base_scores['rougeL']:.2f} → fine-tuned {e.finetuned_scores['rougeL']:.2f}")
    if e.finetuned_check.reasons:
        title.append(f"  fine-tuned: {', '.join(e.finetuned_check.reasons)}", style="red")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("prompt", Text(inert(e.example.prompt, 400)))
    grid.add_row("reference", Text(inert(e.example.reference, 400)))
    side = Table(show_header=True, header_style="bold", expand=True, show_lines=False, box=None, padding=(0, 1))
    side.add_column("base", ratio=1, overflow="fold")
    side.add_column("fine-tuned", ratio=1, overflow="fold")
    side.add_row(Text(inert(e.base.text, 500) or "(empty)"), Text(inert(e.finetuned.text, 500) or "(empty)"))
    return Group(title, grid, side, Text(""))


def render(report: EvalReport, console: Console, *, examples: int = 5) -> None:
    """Print the terminal report on ``console``."""
    t = report.target
    head = Text("tuneterm eval ", style="bold")
    head.append(inert_line(str(t.get("spec")), 120))
    head.append(f"  ({t.get('kind')}{', adapter' if t.get('is_adapter') and t.get('kind') == 'run' else ''}) vs base ")
    head.append(inert_line(report.base_name, 120))
    console.print(head)
    sel = report.selection
    how = {"split": f"split {sel.split!r}", "file": "file used whole",
           "holdout": f"held out {_pct(sel.holdout_fraction)} with seed {sel.seed}"}[sel.how]
    info = Text(f"data: {inert_line(sel.source, 100)} · {how} · {sel.n} examples", style="dim")
    if sel.overlap_removed:
        info.append(f" · {sel.overlap_removed} dropped (in the run's training data)")
    s = report.settings
    rt = s.get("runtime", {})
    info.append(f" · greedy, {s.get('max_new_tokens')} new tokens · {rt.get('device')} {rt.get('dtype')}")
    console.print(info)
    for note in sel.notes:
        console.print(Text(f"note: {inert_line(note, 200)}", style="dim"))
    console.print()
    console.print(headline(report))
    console.print()
    console.print(metrics_table(report))
    pt = probe_table(report)
    if pt is not None:
        console.print()
        console.print(pt)
    console.print()
    if report.findings:
        console.print(Text("Findings", style="bold underline"))
        for f in report.findings:
            console.print(finding_block(f))
    else:
        console.print(Text("No findings: no forgetting and no degenerate output detected.", style="green"))
    if examples > 0 and report.examples:
        console.print()
        shown = report.worst_examples(examples)
        console.print(Text(f"Examples, worst first ({len(shown)} of {len(report.examples)})", style="bold underline"))
        for i, e in enumerate(shown, 1):
            console.print(example_block(i, e, console.width))
    summ = report.summary()
    console.print(Text(f"{summ['error']} errors, {summ['warning']} warnings, {summ['info']} infos", style="bold"))


def to_json(report: EvalReport) -> str:
    """The full report as JSON (non-finite numbers as strings, valid JSON always)."""
    from tuneterm.report.result import json_safe

    return json.dumps(json_safe(report.to_dict()), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
