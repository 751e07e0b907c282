"""``tuneterm rules`` lists every diagnostic rule; ``tuneterm rule NAME|CODE`` explains one.

Unknown rule: exit 2 with ``unknown rule 'x'; did you mean 'y'?``. Light at import (typer only).
"""

from __future__ import annotations

import typer

from tuneterm.cli import app
from tuneterm.cli.diagnose import _write_stdout


def _check_format(fmt: str) -> None:
    import click

    if fmt not in ("text", "json"):
        raise click.BadParameter(f"{fmt!r} is not one of 'text', 'json'", param_hint="'--format'")


@app.command("rules")
def rules_cmd(
    fmt: str = typer.Option("text", "--format", "-f", help="text or json."),
    width: int | None = typer.Option(None, "--width", min=40, max=400, help="Render at this many columns."),
) -> None:
    """List every diagnostic rule: code, name, severity, category, trainers, summary."""
    from tuneterm.engine import load_rules

    _check_format(fmt)
    rules = load_rules().rules
    if fmt == "json":
        from tuneterm.report.rules_view import rules_json

        _write_stdout(rules_json(rules))
        return
    from tuneterm.report.doctor import make_console
    from tuneterm.report.rules_view import render_rules_table

    render_rules_table(rules, make_console(width))


@app.command("rule")
def rule_cmd(
    name: str = typer.Argument(..., metavar="NAME|CODE", help="A rule name (zero-grad-norm) or code (G101)."),
    fmt: str = typer.Option("text", "--format", "-f", help="text or json."),
    width: int | None = typer.Option(None, "--width", min=40, max=400, help="Render at this many columns."),
) -> None:
    """Explain one rule: what it detects, why it matters, an example, causes, fixes, parameters."""
    from tuneterm.engine import load_rules
    from tuneterm.report.rules_view import find_rule

    _check_format(fmt)
    rule = find_rule(load_rules().rules, name)
    if fmt == "json":
        from tuneterm.report.rules_view import rule_json

        _write_stdout(rule_json(rule))
        return
    from tuneterm.report.doctor import make_console
    from tuneterm.report.rules_view import render_rule

    render_rule(rule, make_console(width))
