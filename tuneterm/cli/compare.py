"""``tuneterm compare RUN RUN...``: runs side by side (curves, config diff, findings diff, verdict).

Exit codes: 0 compared; 2 fewer than two runs, an unknown ``--x`` or an unreadable source (one line
on stderr); 3 a source holds no training metrics. Heavy imports (parsers, rules, Rich, plotext)
happen inside the command.
"""

from __future__ import annotations

import json
import sys
from enum import Enum

import typer

from tuneterm.cli import app
from tuneterm.exit_codes import ExitCode


class XAxis(str, Enum):
    """``--x`` values."""

    step = "step"
    epoch = "epoch"
    tokens = "tokens"


class CompareFormat(str, Enum):
    """``--format`` values."""

    text = "text"
    json = "json"


@app.command("compare")
def compare_cmd(
    runs: list[str] = typer.Argument(..., metavar="RUN RUN...", help="Two or more runs: run names, run directories, trainer_state.json, W&B runs, console logs."),
    x: XAxis = typer.Option(XAxis.step, "--x", help="Align curves by optimizer step, epoch or tokens seen."),
    fmt: CompareFormat = typer.Option(CompareFormat.text, "--format", help="text (tables and charts) or json."),
    runs_dir: str | None = typer.Option(None, "--runs-dir", help="Where run names are looked up (default $TUNETERM_RUNS_DIR or ./runs)."),
    width: int | None = typer.Option(None, "--width", min=40, max=400, metavar="N", help="Render at this many columns (default: the terminal's)."),
    charts: bool = typer.Option(True, "--charts/--no-charts", help="Draw the overlaid metric charts."),
) -> None:
    """Compare runs: curves overlaid, the config keys that differ, the findings that differ, a verdict."""
    import click

    from tuneterm.report.compare import compare
    from tuneterm.runs.info import resolve_target

    if len(runs) < 2:
        raise click.UsageError("give at least two runs to compare")
    paths = [resolve_target(r, runs_dir) for r in runs]
    result = compare(paths, x=x.value, names=[p.name if p.name else r for p, r in zip(paths, runs, strict=True)])
    empty = [r.name for r in result.runs if r.last_step is None]
    if empty:
        print(f"tuneterm: no training metrics in {', '.join(empty)}", file=sys.stderr)
        raise typer.Exit(int(ExitCode.NO_METRICS))
    if fmt is CompareFormat.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=1, allow_nan=False) + "\n")
    else:
        from tuneterm.report.compare_text import render_comparison
        from tuneterm.report.doctor import make_console

        render_comparison(result, make_console(width), charts=charts)
    raise typer.Exit(int(ExitCode.OK))
