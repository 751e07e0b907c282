"""``tuneterm doctor`` (a diagnosis for people) and ``tuneterm check`` (the CI gate).

Both go *path -> subject handler -> CheckResult -> emitter* (:mod:`tuneterm.report`). Exit codes
(DESIGN.md): 0 nothing at or above ``--fail-on``; 1 findings at or above it; 2 a bad flag, a bad
rule file or an unreadable path (the readable paths are still reported); 3 no path had training
metrics. stdout carries only the report; every diagnostic is one ``tuneterm: ...`` line on stderr.

Module import stays light (typer only): the parsers, the engine, Rich and plotext load inside the
commands.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

from typing import TYPE_CHECKING

import click
import typer

from tuneterm.cli import app
from tuneterm.exit_codes import ExitCode

if TYPE_CHECKING:  # annotations only: the report package loads inside the commands
    from tuneterm.report.result import CheckResult


class OutputFormat(str, Enum):
    """``check --format`` values."""

    text = "text"
    json = "json"
    sarif = "sarif"
    github = "github"
    junit = "junit"


class FailOn(str, Enum):
    """``--fail-on`` values: the least severe finding that fails the gate."""

    error = "error"
    warning = "warning"
    info = "info"


def split_names(values: list[str] | None) -> tuple[str, ...]:
    """Flatten repeatable, comma-separated ``--select``/``--ignore`` values.

    >>> split_names(["zero-grad-norm,G1", " L101 ", ""])
    ('zero-grad-norm', 'G1', 'L101')
    """
    out: list[str] = []
    for v in values or ():
        out.extend(p.strip() for p in v.split(","))
    return tuple(p for p in out if p)


def warn(message: str) -> None:
    """One ``tuneterm: warning: ...`` line on stderr."""
    from tuneterm.textsafe import inert_line

    print(f"tuneterm: warning: {inert_line(message, 400)}", file=sys.stderr)


def gather(
    paths: list[str], select: list[str] | None, ignore: list[str] | None, **subject_options: object
) -> tuple[list, ExitCode | None]:
    """Check every path; report unreadable and empty ones on stderr.

    Returns the results (command-line order) and the exit code that overrides the findings'
    verdict: USAGE if any path was unreadable, NO_METRICS if no path had metrics, else None.

    Raises:
        TunetermError: a problem with the rules themselves (bad rule file, unknown --select
            name): nothing can be checked, so the command stops with exit 2.
    """
    from tuneterm.cli import error
    from tuneterm.errors import NoMetricsError, TunetermError
    from tuneterm.report import CheckOptions, check_subject

    options = CheckOptions(select=split_names(select), ignore=split_names(ignore), **subject_options)  # type: ignore[arg-type]
    options.ruleset()  # fail once, before any path, on a bad rule file or an unknown rule name
    results = []
    empty: list[str] = []
    unreadable = False
    from tuneterm.runs.info import run_or_path

    for path in paths:
        try:
            results.append(check_subject(run_or_path(path), options))
        except NoMetricsError as exc:
            empty.append(str(exc))
        except TunetermError as exc:
            error(str(exc))
            unreadable = True
    if unreadable:
        for msg in empty:
            warn(f"{msg}; skipped")
        return results, ExitCode.USAGE
    if not results and empty:
        for msg in empty:
            error(msg)
        return results, ExitCode.NO_METRICS
    for msg in empty:
        warn(f"{msg}; skipped")
    return results, None


def _write_stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:  # a non-UTF-8 terminal: degrade characters, not the report
        enc = sys.stdout.encoding or "ascii"
        sys.stdout.write(text.encode(enc, "replace").decode(enc))
    sys.stdout.flush()


@app.command("check")
def check_cmd(
    paths: list[str] = typer.Argument(..., metavar="PATH", help="Training logs (files, run or checkpoint directories), training configs (YAML) or datasets."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="Output format."),
    fail_on: FailOn = typer.Option(FailOn.error, "--fail-on", help="Exit 1 on findings at or above this severity."),
    select: list[str] | None = typer.Option(None, "--select", metavar="NAMES", help="Only these rules: names, codes or code prefixes (comma-separated, repeatable)."),
    ignore: list[str] | None = typer.Option(None, "--ignore", metavar="NAMES", help="Skip these rules: names, codes or code prefixes (comma-separated, repeatable)."),
    output: Path | None = typer.Option(None, "--output", "-o", metavar="FILE", help="Write the report to FILE instead of stdout."),
    gpu_memory: str | None = typer.Option(None, "--gpu-memory", metavar="SIZE", help="Configs: memory of one GPU for the fit check, e.g. 24GiB (default: the GPUs found)."),
    gpus: int | None = typer.Option(None, "--gpus", min=1, metavar="N", help="Configs: number of data-parallel GPUs (default: the GPUs found)."),
    trainer: str | None = typer.Option(None, "--trainer", metavar="KIND", help="Configs and datasets: sft, dpo or grpo (default: inferred)."),
    model: str | None = typer.Option(None, "--model", metavar="PATH|ID", help="Datasets: the model whose tokenizer and chat template render the data."),
    max_length: int | None = typer.Option(None, "--max-length", min=1, metavar="N", help="Datasets: truncation length (default: TRL's 1024)."),
    sample: int | None = typer.Option(None, "--sample", min=1, metavar="N", help="Datasets: check a random sample of N rows."),
    sarif_category: str | None = typer.Option(None, "--sarif-category", metavar="ID", help="SARIF: automationDetails.id, GitHub's analysis category (keeps several uploads per commit apart)."),
) -> None:
    """Check training logs, configs or datasets against the rules; the exit code says whether to fail CI.

    Exit codes: 0 clean, 1 findings at or above --fail-on, 2 bad usage or unreadable input,
    3 no training metrics in any path. The report goes to stdout (or --output); diagnostics
    go to stderr.
    """
    from tuneterm.engine.model import Severity
    from tuneterm.errors import TunetermError
    from tuneterm.report import fails, render

    gpu_memory_gib = None
    if gpu_memory is not None:
        from tuneterm.plan.sizes import parse_size_gib

        gpu_memory_gib = parse_size_gib(gpu_memory)
    from tuneterm.kinds import TRAINERS

    if trainer is not None and trainer not in TRAINERS:
        raise click.BadParameter(f"{trainer!r} is not one of sft, dpo, grpo", param_hint="--trainer")
    results, override = gather(
        paths, select, ignore, gpu_memory_gib=gpu_memory_gib, gpus=gpus, trainer=trainer,
        model=model, max_length=max_length, sample=sample,
    )
    threshold = Severity(fail_on.value)
    if results and fmt is OutputFormat.json:
        from tuneterm.preflight.advice_context import advise_results

        results = advise_results(results)
    if results and fmt is OutputFormat.text and output is None:
        # A dataset check's text output is a report a person reads (counts, length histogram,
        # worst rows); the concise finding lines follow for every subject.
        _print_data_reports(results)
    if results:
        text = render(fmt.value, results, threshold, as_array=len(paths) > 1, sarif_category=sarif_category)
        if output is not None:
            try:
                output.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise TunetermError(f"cannot write {output}: {exc.strerror or exc}") from None
        else:
            _write_stdout(text)
    if override is not None:
        raise typer.Exit(int(override))
    raise typer.Exit(int(ExitCode.FINDINGS if fails(results, threshold) else ExitCode.OK))


def _print_data_reports(results: list) -> None:
    details = [r.detail for r in results if r.subject == "data" and r.detail is not None]
    if not details:
        return
    from tuneterm.preflight.data import render_data_report
    from tuneterm.report.doctor import make_console

    console = make_console(None)
    for report in details:
        render_data_report(report, console)


def demo_paths() -> list[str]:
    """The sample runs shipped in ``tuneterm/samples/`` (each subdirectory is one run).

    Raises:
        InputError: no sample run is shipped (a broken install, or samples not generated yet).
    """
    from tuneterm.errors import InputError
    from tuneterm.resources import samples_dir

    root = samples_dir()
    runs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))) if root.is_dir() else []
    if not runs:
        raise InputError(f"no sample runs found in {root} (broken install?); give a PATH instead")
    return [str(p) for p in runs]


@app.command("doctor")
def doctor_cmd(
    paths: list[str] | None = typer.Argument(None, metavar="PATH", help="Training logs: files or run/checkpoint directories."),
    demo: bool = typer.Option(False, "--demo", help="Diagnose the sample runs shipped with tuneterm."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show info findings, all causes and fixes, references."),
    select: list[str] | None = typer.Option(None, "--select", metavar="NAMES", help="Only these rules (names, codes, code prefixes; comma-separated)."),
    ignore: list[str] | None = typer.Option(None, "--ignore", metavar="NAMES", help="Skip these rules (names, codes, code prefixes; comma-separated)."),
    width: int | None = typer.Option(None, "--width", min=40, max=400, metavar="N", help="Render at this many columns (default: the terminal's)."),
    fail_on: FailOn = typer.Option(FailOn.error, "--fail-on", help="Exit 1 on findings at or above this severity."),
    charts: bool = typer.Option(True, "--charts/--no-charts", help="Draw metric charts."),
    fix: bool = typer.Option(False, "--fix", help="Write the prescription as a config to train with (needs -o FILE)."),
    output: Path | None = typer.Option(None, "--output", "-o", metavar="FILE", help="With --fix: where to write the fixed config (YAML)."),
) -> None:
    """Diagnose a training run: what went wrong, from which step, why, and what to change.

    Ends with the prescription: one consistent set of changes for this run and the steps to take
    first. `--fix -o FILE` writes the run's config with those changes applied (`tuneterm train
    FILE` starts a new run; `--resume-from RUN` continues the old one where that is sound).

    Exit codes as `tuneterm check`: 0 clean, 1 errors found (see --fail-on), 2 bad input,
    3 no training metrics. `--demo` alone exits 0 once the sample runs are diagnosed.
    """
    from tuneterm.preflight.advice_context import advise_results
    from tuneterm.engine.model import Severity
    from tuneterm.report import fails
    from tuneterm.report.doctor import make_console, render_doctor

    targets = list(paths or [])
    if demo:
        targets += demo_paths()
    if not targets:
        raise click.UsageError("give a PATH to diagnose, or --demo to see the sample runs")
    if fix and (output is None or len(targets) != 1):
        raise click.UsageError("--fix writes one run's fixed config: give one PATH and -o FILE")
    if output is not None and not fix:
        raise click.UsageError("-o FILE goes with --fix")
    from tuneterm.runs.pipeline import expand_pipelines

    results, override = gather(expand_pipelines(targets), select, ignore)
    results = advise_results(results, build_schema=fix)
    if results:
        render_doctor(results, make_console(width), verbose=verbose, charts=charts)
    if fix and results and output is not None:
        _write_fix(results[0], output)
    if override is not None:
        raise typer.Exit(int(override))
    if demo and not paths:
        # The sample runs are broken on purpose; the demo's exit code says whether it ran.
        raise typer.Exit(int(ExitCode.OK))
    raise typer.Exit(int(ExitCode.FINDINGS if fails(results, Severity(fail_on.value)) else ExitCode.OK))


def _write_fix(result: CheckResult, output: Path) -> None:
    """Write ``doctor --fix``'s config; say on stderr what was written, or why nothing was."""
    from tuneterm.advise.apply import fix_document
    from tuneterm.preflight.advice_context import context_of, key_schema
    from tuneterm.errors import TunetermError

    p = result.prescription
    ctx = context_of(result, key_schema(build=True))
    text = fix_document(p, ctx) if p is not None and ctx is not None else None
    if text is None:
        why = "; ".join(p.blockers) if p is not None and p.blockers else "the prescription holds no config change"
        warn(f"nothing written to {output}: {why}")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TunetermError(f"cannot write {output}: {exc.strerror or exc}") from None
    kind = "fixed config" if ctx is not None and ctx.config_kind in ("tuneterm", "trl") else "config fragment (no run config found)"
    print(f"tuneterm: wrote the {kind} to {output}: tuneterm train {output}", file=sys.stderr)
