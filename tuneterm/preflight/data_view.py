"""The human summary of a dataset check (``tuneterm check DATA --model M`` in text form).

Sections: one header line (source, format, trainer, rows), key figures (token percentiles, share
truncated, tokens per epoch), a plotext histogram of token lengths with ``max_length`` drawn as a
vertical line, the worst examples with their line numbers, then each finding with its fixes.

Everything that comes from the dataset or the tokenizer files (paths, previews, token strings,
messages built from them) is passed through :func:`tuneterm.textsafe.inert` and printed as
:class:`rich.text.Text`, never as markup, so ``[bold]`` or ``\\x1b[2J`` inside a row is shown
literally or stripped, never acted on. The histogram is our own drawing of numbers, so its ANSI
colours are safe for :meth:`rich.text.Text.from_ansi`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text

from tuneterm.engine.model import Finding, Fix, Severity
from tuneterm.textsafe import inert, inert_line

if TYPE_CHECKING:
    from rich.console import Console

    from tuneterm.preflight.data import DataReport

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "cyan"}
HIST_HEIGHT = 12


def length_histogram(lengths: list[int], max_length: int | None, width: int, height: int = HIST_HEIGHT) -> str:
    """ANSI text of a histogram of token lengths, ``max_length`` marked with a vertical line.

    Returns an empty string when there is nothing to draw.
    """
    if not lengths:
        return ""
    import plotext as plt  # deferred: only the text report draws

    plt.terminal.limit(False, False)  # size comes from us, not from the (maybe absent) terminal
    fig = plt.figure
    fig.clear()
    fig.theme("simple")
    fig.plot_size(max(width, 30), height)
    lo, hi = min(lengths), max(lengths)
    if max_length is not None:
        hi = max(hi, max_length)
    bins = max(5, min(60, (max(width, 30) - 10) // 2))
    sig = fig.hist(lengths, bins=bins)
    if sig is not None:
        fig.draw(sig)
    if max_length is not None and lo <= max_length <= hi * 1.05:
        fig.line(max_length, orientation="v", pixel=plt.pixel(foreground=9))
    fig.title(f"token lengths ({len(lengths)} examples" + (f"; | = max_length {max_length})" if max_length else ")"))
    ansi = fig.build().string().replace("\x1b[48;5;15m", "")  # drop plotext's white line background
    fig.clear()
    return ansi


def _fix_text(fix: Fix) -> Text:
    from tuneterm.report.doctor import fix_text  # one rendering of fixes (prompt, inertness)

    return Text("    ").append_text(fix_text(fix))


def _finding_text(f: Finding) -> list[Text]:
    where = inert_line(f.source, 160) + (f":{f.line}" if f.line is not None else "")
    head = Text()
    head.append(f"{f.severity.value.upper():7} ", style=_STYLE[f.severity])
    head.append(f"{f.code} {f.name}", style="bold")
    head.append(f"  {where}", style="dim")
    lines = [head, Text("    " + inert_line(f.message, 600))]
    lines.extend(_fix_text(fx) for fx in f.fixes[:4])
    return lines


def _fmt_int(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def render_data_report(report: DataReport, console: Console) -> None:
    """Print ``report`` for a person: counts, histogram, worst examples, findings with fixes."""
    facts = report.facts
    width = console.width or 80
    head = Text()
    head.append(inert_line(report.source, 200), style="bold")
    head.append(f"  {report.format} · {facts.get('trainer', '?')}"
                + (" · conversational" if facts.get("conversational") else "")
                + f" · {_fmt_int(facts.get('rows'))} rows")
    if facts.get("sampled"):
        head.append(f" ({_fmt_int(facts.get('rows_checked'))} sampled)")
    console.print(head)
    tok = facts.get("tokenizer")
    if tok:
        t = Text("tokenizer ", style="dim")
        t.append(inert_line(tok.get("name"), 120))
        t.append(f"  eos {inert_line(tok.get('eos_token'), 30)} · pad {inert_line(tok.get('pad_token'), 30)} · "
                 f"template {inert_line(tok.get('chat_template'), 20)}", style="dim")
        console.print(t)
    if "length_p50" in facts:
        ml = facts.get("max_length")
        line = Text()
        line.append("tokens ", style="dim")
        line.append(f"p50 {_fmt_int(facts['length_p50'])} · p90 {_fmt_int(facts['length_p90'])} · "
                    f"p99 {_fmt_int(facts['length_p99'])} · max {_fmt_int(facts['length_max'])}")
        if ml is not None:
            line.append(f" · {facts['share_truncated'] * 100:.1f}% over max_length {ml}"
                        + (" (TRL default)" if facts.get("max_length_is_trl_default") else ""))
        console.print(line)
        per_epoch = facts.get("tokens_per_epoch", facts.get("prompt_tokens_per_epoch"))
        if per_epoch is not None:
            label = "tokens per epoch" if "tokens_per_epoch" in facts else "prompt tokens per epoch"
            extra = (f" ({_fmt_int(facts['trainable_tokens_per_epoch'])} trained on)"
                     if "trainable_tokens_per_epoch" in facts else "")
            console.print(Text(f"{label} {_fmt_int(per_epoch)}{extra}"))
        hist = length_histogram(report.lengths, ml, min(width, 100))
        if hist:
            console.print(Text.from_ansi(hist))
    for note in facts.get("notes", []):
        console.print(Text("note: " + inert_line(note, 300), style="dim"))
    if report.worst:
        console.print(Text("examples to look at", style="bold"))
        for w in report.worst:
            t = Text("  ")
            t.append(inert_line(w.where, 120), style="bold")
            t.append(f"  {inert_line(w.reason, 80)}" + (f" · {w.tokens:,} tokens" if w.tokens is not None else ""))
            if w.preview:
                t.append("\n    " + inert(w.preview, 120).replace("\n", " "), style="dim")
            console.print(t)
    if report.findings:
        console.print(Text("findings", style="bold"))
        for f in report.findings:
            for t in _finding_text(f):
                console.print(t)
    counts = {s: sum(1 for f in report.findings if f.severity is s) for s in Severity}
    summary = Text()
    if not report.findings:
        summary.append("no problems found", style="bold green")
    else:
        summary.append(", ".join(f"{n} {s.value}{'s' if n != 1 else ''}" for s, n in counts.items() if n))
    console.print(summary)
