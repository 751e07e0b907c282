"""``tuneterm rules`` (the catalogue) and ``tuneterm rule NAME|CODE`` (one rule explained).

Text goes through Rich as :class:`rich.text.Text` (rule files can be user-supplied, so they are
treated like any other input); JSON is ``Rule.to_dict()`` made strict (:func:`json_safe`).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence

from rich.console import Console, Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from tuneterm.engine.model import Rule
from tuneterm.errors import TunetermError
from tuneterm.report.doctor import STYLES, fix_text, fmt_value
from tuneterm.report.result import json_safe
from tuneterm.textsafe import inert, inert_line


def rules_json(rules: Iterable[Rule]) -> str:
    """The catalogue as a JSON array of rule records."""
    return json.dumps([json_safe(r.to_dict()) for r in rules], indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def rule_json(rule: Rule) -> str:
    """One rule record as a JSON object."""
    return json.dumps(json_safe(rule.to_dict()), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def trainers_label(trainers: Sequence[str]) -> str:
    """Compact trainer list for the table: ``all`` when a rule applies to every kind.

    >>> trainers_label(("sft", "dpo", "grpo", "classification", "unknown"))
    'all'
    >>> trainers_label(("sft", "dpo"))
    'sft,dpo'
    """
    from tuneterm.logs.model import TRAINER_KINDS

    if set(TRAINER_KINDS) <= set(trainers):
        return "all"
    return ",".join(t for t in trainers if t != "unknown") or "unknown"


def render_rules_table(rules: Sequence[Rule], console: Console) -> None:
    """Print the catalogue: code, name, severity, category, trainers, summary.

    Wide consoles (>= 110 columns) get one table row per rule. Narrower ones get the five short
    columns on one line and the summary wrapped under it: a six-column table at 80 columns
    squeezes the summary into a sliver (or drops it).
    """
    rows = [
        (
            inert_line(r.code, 10),
            inert_line(r.name, 60),
            r.severity,
            inert_line(r.category, 30),
            inert_line(trainers_label(r.trainers), 80),
            inert_line(r.summary, 400),
        )
        for r in rules
    ]
    if console.width >= 110:
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", expand=True)
        for name in ("code", "name", "severity", "category", "trainers"):
            table.add_column(name, no_wrap=True)
        table.add_column("summary", ratio=1)
        for code, name, sev, category, trainers, summary in rows:
            table.add_row(code, Text(name, style="bold"), Text(sev.value, style=STYLES[sev]), category, trainers, summary)
        console.print(table)
    else:
        widths = [max([len(h)] + [len(str(row[i] if i != 2 else row[i].value)) for row in rows]) for i, h in enumerate(("code", "name", "severity", "category"))]
        header = "  ".join(h.ljust(w) for h, w in zip(("code", "name", "severity", "category"), widths, strict=True)) + "  trainers"
        console.print(Text(header, style="bold"), overflow="fold")
        for code, name, sev, category, trainers, summary in rows:
            line = Text()
            line.append(code.ljust(widths[0]) + "  ")
            line.append(name.ljust(widths[1]) + "  ", style="bold")
            line.append(sev.value.ljust(widths[2]) + "  ", style=STYLES[sev])
            line.append(category.ljust(widths[3]) + "  " + trainers)
            console.print(line, overflow="fold")
            console.print(Padding(Text(summary, style="dim"), (0, 0, 0, widths[0] + 2), expand=False))
    console.print(Text(f"{len(rules)} rules · tuneterm rule NAME explains one", style="dim"))


def _section(title: str, body: Text | Group) -> Group:
    return Group(Text(""), Text(title, style="bold underline"), Padding(body, (0, 0, 0, 2), expand=False))


def render_rule(rule: Rule, console: Console) -> None:
    """Explain one rule: what, why, example, causes, fixes, parameters, references."""
    head = Text()
    head.append(f"{inert_line(rule.code, 10)} {inert_line(rule.name, 60)}", style="bold")
    head.append(f"  ({rule.severity.value} · {inert_line(rule.category, 30)} · ", style="dim")
    head.append(f"{inert_line(', '.join(rule.trainers), 80)}; since {inert_line(rule.since, 20)})", style="dim")
    parts: list[Group | Text] = [head]
    parts.append(_section("What it detects", Text(inert(rule.summary, 2000))))
    parts.append(_section("Why it matters", Text(inert(rule.why, 4000))))
    if rule.example:
        parts.append(_section("Example (log excerpt)", Text(inert(rule.example, 4000).rstrip("\n"), no_wrap=False)))
    if rule.causes:
        parts.append(_section("Likely causes", Text("\n".join(f"{i}. {inert_line(c, 600)}" for i, c in enumerate(rule.causes, 1)))))
    if rule.fixes:
        parts.append(_section("Fixes", Group(*(fix_text(f) for f in rule.fixes))))
    params = Text(f"detector {inert_line(rule.detector, 60)}", style="bold")
    for k, v in rule.params.items():
        params.append(f"\n{inert_line(k, 60)}: {fmt_value(v)}")
    params.append(f"\nscope {inert_line(rule.scope, 20)}")
    parts.append(_section("Parameters", params))
    if rule.references:
        parts.append(_section("References", Text("\n".join(inert_line(r, 300) for r in rule.references))))
    where = _where(rule)
    if where.plain:
        parts.append(_section("Where it lives", where))
    console.print(Group(*parts))


def _where(rule: Rule) -> Text:
    """The rule's record file, its detector's module and (in a source checkout, beside ``tests/``)
    the file with its cases; a line is left out when it is unknown (e.g. a record not shipped)."""
    from tuneterm.engine.catalogue import case_files, detector_module, record_files
    from tuneterm.resources import rules_dir

    root = rules_dir()
    lines = []
    if (record := record_files(root).get(rule.code)) is not None:
        lines.append(f"record    {record}")
    if (module := detector_module(rule)) is not None:
        lines.append(f"detector  tuneterm/{module} ({inert_line(rule.detector, 60)})")
    if (cases := case_files(root.parent / "tests", [rule]).get(rule.code)) is not None:
        lines.append(f"cases     {cases}")
    return Text("\n".join(lines))


def find_rule(rules: Sequence[Rule], query: str) -> Rule:
    """The rule whose name or code is ``query`` (codes case-insensitive).

    Raises:
        TunetermError: no such rule; the message suggests the closest name or code.
    """
    q = query.strip()
    for r in rules:
        if r.name == q or r.code.upper() == q.upper():
            return r
    candidates = [r.name for r in rules] + [r.code for r in rules]
    close = difflib.get_close_matches(q, candidates, n=1, cutoff=0.5) or difflib.get_close_matches(
        q.upper(), [r.code for r in rules], n=1, cutoff=0.5
    )
    shown = inert_line(q, 60)
    if close:
        raise TunetermError(f"unknown rule '{shown}'; did you mean '{close[0]}'?")
    raise TunetermError(f"unknown rule '{shown}' ('tuneterm rules' lists them)")
