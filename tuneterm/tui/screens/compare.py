"""Compare: two runs marked in the runs list (``m`` on each), side by side.

Shown: what ``tuneterm compare A B`` prints (verdict, curves on a common axis, config and findings
diffs; :func:`tuneterm_comparison`), then the rows of :func:`side_by_side`, which reads only the
two run directories: the state and the step each reached, the last and lowest training loss, the
last eval loss, the findings, the duration, and every config key whose value differs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from tuneterm.progress import step_text
from tuneterm.textsafe import inert_line
from tuneterm.tui.screens.base import NavBar

Row = tuple[str, str, str]


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return "nan" if math.isnan(v) else f"{v:.4g}"


def _losses(d: Path) -> tuple[float | None, float | None, float | None]:
    """(last loss, lowest finite loss, last eval loss) from metrics.jsonl."""
    from tuneterm.runs.files import JsonlRows

    rows = list(JsonlRows(d / "metrics.jsonl"))
    train = [float(r["loss"]) for r in rows if isinstance(r.get("loss"), (int, float)) and not isinstance(r.get("loss"), bool)]
    evals = [float(r["eval_loss"]) for r in rows if isinstance(r.get("eval_loss"), (int, float)) and not isinstance(r.get("eval_loss"), bool)]
    finite = [v for v in train if math.isfinite(v)]
    return (train[-1] if train else None, min(finite) if finite else None, evals[-1] if evals else None)


def _config(d: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def side_by_side(a: Path, b: Path) -> list[Row]:
    """``(what, run a, run b)`` rows comparing two run directories (all text inert)."""
    from tuneterm.runs.info import fmt_duration, run_info

    ia, ib = run_info(a), run_info(b)
    rows: list[Row] = [("run", inert_line(ia.name, 60), inert_line(ib.name, 60)), ("state", ia.state, ib.state)]
    rows.append(("step", step_text(ia.step, ia.max_steps, ia.state), step_text(ib.step, ib.max_steps, ib.state)))
    la, lb = _losses(a), _losses(b)
    for k, label in enumerate(("last loss", "lowest loss", "last eval loss")):
        rows.append((label, _num(la[k]), _num(lb[k])))

    def found(i: Any) -> str:
        if i.errors is None:
            return "-"
        head = f"{i.errors}E {i.warnings}W"
        return head + (f" ({i.worst})" if i.worst else "")

    rows.append(("findings", found(ia), found(ib)))
    rows.append(("duration", fmt_duration(ia.duration_s), fmt_duration(ib.duration_s)))
    ca, cb = _config(a), _config(b)
    for key in sorted(set(ca) | set(cb)):
        if key == "output_dir" or ca.get(key) == cb.get(key):
            continue
        rows.append((inert_line(key, 40), inert_line(str(ca.get(key, "-")), 60), inert_line(str(cb.get(key, "-")), 60)))
    return rows


def rows_table(rows: list[Row]) -> Table:
    """The :func:`side_by_side` rows as a table (values that differ in yellow)."""
    t = Table(box=None, pad_edge=False, header_style="bold", show_header=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    t.add_column(overflow="fold")
    for n, (what, va, vb) in enumerate(rows):
        style = "yellow" if n > 2 and va != vb else ""
        t.add_row(Text(what), Text(va, style=style), Text(vb, style=style))
    return t


def tuneterm_comparison(a: Path, b: Path, width: int) -> list[Any]:
    """What ``tuneterm compare A B`` shows (verdict, curves, config and findings diffs), as
    renderables (one line instead when a run cannot be read)."""
    from tuneterm.errors import TunetermError
    from tuneterm.report.compare import compare
    from tuneterm.report.compare_text import comparison_renderables

    try:
        return list(comparison_renderables(compare([a, b]), width))
    except (TunetermError, ValueError) as exc:
        return [Text(inert_line(f"tuneterm compare: {exc}", 300), style="yellow")]


class CompareScreen(Screen[None]):
    """Two runs side by side (module docstring); ``esc`` goes back to the runs list."""

    BINDINGS = [Binding("escape,q", "back", "Back")]

    def __init__(self, a: str, b: str) -> None:
        super().__init__()
        self.a, self.b = Path(a), Path(b)
        self.rows: list[Row] = []

    def compose(self) -> ComposeResult:
        yield NavBar("runs", "compare · esc back")
        with VerticalScroll(id="compare-scroll"):
            yield Static(Text("reading both runs ...", style="dim"), id="compare-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#compare-scroll").focus()
        width = max(40, self.app.size.width - 4)
        self.run_worker(lambda: self._build(width), thread=True, exclusive=True, group="compare",
                        exit_on_error=False, description="Comparing two runs.")

    def _build(self, width: int) -> None:
        """Compute the comparison (in a worker thread: both runs are read and diagnosed)."""
        self.rows = side_by_side(self.a, self.b)
        parts: list[Any] = [rows_table(self.rows)]
        full = tuneterm_comparison(self.a, self.b, width)
        parts = [*full, Text(), Text("run directories", style="bold"), *parts]
        from rich.console import Group

        self.app.call_from_thread(self.query_one("#compare-body", Static).update, Group(*parts))

    def action_back(self) -> None:
        self.app.pop_screen()
