"""``tuneterm train CONFIG.yaml``: validate a TRL config and launch a run that survives the terminal.

Modes: ``--detach`` prints the run name and returns at once; ``--headless`` prints plain progress
lines, waits, evaluates the run and exits 0 (finished clean) or 1 (an error finding, or the run
failed); the default follows the run in the terminal through :func:`live_view`, where Ctrl-C asks
whether to stop the run (default: keep it running and detach).

Before anything starts the launcher refuses (exit 2, one line) unknown keys, wrong types and
missing essentials, checked against the TRL schema cache (:mod:`tuneterm.preflight.schema`) without
importing TRL or torch, and the pre-flight rules of ``tuneterm check``
(:func:`tuneterm.train.preflight.preflight`, which the TUI's Runs screen runs too; ``--force``
overrides their errors). TRL's own ``__post_init__`` checks run in the training process before the model is
loaded (:mod:`tuneterm.train.worker`); when they reject the config the run ends ``failed`` with
``error_kind: "config"``, and ``--headless`` and the live view print ``tuneterm: error: <line>``
and exit 2, as the launcher's own refusal would; a run started with ``--detach`` shows the line
in ``tuneterm runs`` and ``tuneterm watch``. Light at import: the training stack is never imported
by the launcher (only to build the schema cache, once per installed trl/transformers/peft).

A file with ``stages:`` is a pipeline (several stages, each from the previous one's output, a gate
after each) and goes to :mod:`tuneterm.cli.train_pipeline`; so does ``--resume``.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from tuneterm.cli import app
from tuneterm.exit_codes import ExitCode
from tuneterm.textsafe import inert_line


def _say(text: str) -> None:
    """Print diagnostics to stderr (stdout carries the run name and progress), one inert line per
    line of ``text``."""
    for line in text.splitlines() or [""]:
        print(inert_line(line, 600) if line.strip() else "", file=sys.stderr, flush=True)


def _redact_notify(args: list[str]) -> list[str]:
    """``args`` with the values of ``--notify`` hidden: apprise URLs often carry tokens, and the
    argv is recorded in launch.json.

    >>> _redact_notify(["c.yaml", "--notify", "tgram://bot:secret/1", "--notify=json://h/", "--detach"])
    ['c.yaml', '--notify', '***', '--notify=***', '--detach']
    """
    out: list[str] = []
    hide = False
    for a in args:
        if hide:
            out.append("***")
            hide = False
        elif a == "--notify":
            out.append(a)
            hide = True
        elif a.startswith("--notify="):
            out.append("--notify=***")
        else:
            out.append(a)
    return out


def how_to_follow(run_dir: Any) -> str:
    """The lines that tell a user how to look at and stop a detached run."""
    status = run_dir.read_status()
    pid = status.get("pid")
    return (
        f"  watch:  tuneterm watch {run_dir.path}\n"
        f"  stop:   tuneterm stop {run_dir.path}   (or: kill -TERM {pid})\n"
        f"  logs:   {run_dir.stdout} , {run_dir.stderr}"
    )


def _preflight(config: Any, gpus: int, force: bool) -> dict[str, Any] | None:
    """Run the pre-flight config rules (:func:`tuneterm.train.preflight.preflight`) on the
    resolved config (after --set), print every finding, and refuse on errors unless ``force``.

    Raises:
        ConfigError: error findings and no ``--force`` (exit 2).

    Returns:
        The planner's memory estimate for the config (recorded in launch.json), or None.
    """
    from tuneterm.errors import ConfigError
    from tuneterm.train.preflight import preflight

    result = preflight(config, gpus)
    if result.skipped is not None:
        _say(f"tuneterm: warning: pre-flight check could not run ({result.skipped}); continuing")
        return None
    for line in result.lines():
        _say(f"tuneterm: {line}")
    if not result.ok and not force:
        raise ConfigError(f"{result.summary()}; fix them or pass --force")
    return result.memory_estimate


def live_view(launched: Any, *, stop_on: str, grace_s: float = 30.0, notify: tuple[str, ...] = ()) -> int:
    """Follow a run in the terminal (the default of ``tuneterm train``); returns the exit code.

    Plug point for the watcher: today this prints the same plain progress lines as ``--headless``
    and handles Ctrl-C (ask whether to stop; default keep running and detach). The live view with
    findings and charts replaces the body of this function; keep its contract: return 0 when the
    run finished clean or the user detached, 1 on an error finding or a failed run, 130 when the
    user chose to stop the run; a run whose config the training process rejected raises
    :class:`~tuneterm.errors.ConfigError` (exit 2).
    """
    watch_launched = None
    if sys.stdout.isatty():  # the watcher's live screen (findings, fixes, charts) on a terminal
        try:
            from tuneterm.watch.loop import watch_launched
        except ImportError:
            watch_launched = None
    if watch_launched is not None:
        code = watch_launched(launched, stop_on=stop_on, grace_s=grace_s, notify=notify)
        if code == int(ExitCode.FINDINGS):
            _raise_if_config_failure(launched.run)
        return code
    from tuneterm.runs.control import stop_run
    from tuneterm.train.follow import follow

    rd, proc = launched.run, launched.proc
    while True:
        try:
            outcome = follow(rd, proc, stop_on=stop_on, out=sys.stdout, grace_s=grace_s, notify=notify)
        except KeyboardInterrupt:
            if _ask_stop():
                _say(f"tuneterm: stopping run {rd.name} ...")
                state = stop_run(rd, grace_s=grace_s, proc=proc)
                _say(f"tuneterm: run {rd.name} {state}")
                return int(ExitCode.INTERRUPTED)
            _say(f"tuneterm: run {rd.name} keeps running in the background.\n{how_to_follow(rd)}")
            return int(ExitCode.OK)
        return _report(rd, outcome)


def _ask_stop() -> bool:
    """Ask on the terminal whether to stop the run; no terminal, EOF or a second Ctrl-C mean no."""
    if not sys.stdin or not sys.stdin.isatty():
        return False
    try:
        answer = input("\nStop the training run? [y/N] ")
    except (KeyboardInterrupt, EOFError):
        return False
    return answer.strip().lower() in {"y", "yes"}


def config_failure(rd: Any) -> str | None:
    """The one-line error of a run whose config the training process rejected before training
    (``status.json``: ``state: failed``, ``error_kind: "config"``), else None."""
    status = rd.read_status()
    if status.get("state") != "failed" or status.get("error_kind") != "config":
        return None
    err = status.get("error")
    return err if isinstance(err, str) and err.strip() else f"run {rd.name}: the config was rejected"


def _raise_if_config_failure(rd: Any) -> None:
    """Turn a run that ended on a config error into the launcher's refusal (exit 2)."""
    line = config_failure(rd)
    if line is not None:
        from tuneterm.errors import ConfigError

        raise ConfigError(line)


def _report(rd: Any, outcome: Any) -> int:
    """Print the final state and findings; return the exit code of ``--headless``.

    Raises:
        ConfigError: the training process rejected the config before training (exit 2).
    """
    from tuneterm.report.text import finding_summary

    _raise_if_config_failure(rd)

    findings = outcome.findings or []
    for f in findings:
        print(finding_summary(f, limit=400), flush=True)
    errors = [f for f in findings if f.severity.value == "error"]
    if outcome.state == "finished":
        _say(f"tuneterm: run {rd.name} finished ({rd.path})")
    elif outcome.stopped_on_error:
        _say(f"tuneterm: run {rd.name} stopped on an error finding ({rd.path})")
    else:
        _say(f"tuneterm: run {rd.name} {outcome.state}: {outcome.error or 'no error recorded'} ({rd.path})")
    for note in outcome.notes:
        _say(f"tuneterm: warning: {note}")
    if outcome.findings is None:
        _say("tuneterm: note: the run was not evaluated by the rules")
    if errors:
        import shlex

        _say(f"tuneterm: what to change: tuneterm doctor {shlex.quote(str(rd.path))} --fix -o fixed.yaml")
    if outcome.state != "finished" or errors:
        return int(ExitCode.FINDINGS)
    return int(ExitCode.OK)


def _resume(cfg: Any, run: str, runs_dir: str | None) -> Any:
    """``cfg`` set to resume ``run``'s checkpoint before its first bad step (ConfigError: none)."""
    import dataclasses

    from tuneterm.preflight.advice_context import resume_checkpoint
    from tuneterm.errors import ConfigError

    point = resume_checkpoint(run, cfg.values, runs_dir)
    if point.checkpoint is None:
        raise ConfigError(f"--resume-from {run}: {point.reason}")
    _say(f"tuneterm: resuming from {point.checkpoint} ({point.reason})")
    # absolute: the training process runs in the new run's directory, not in the caller's
    return dataclasses.replace(cfg, values={**cfg.values, "resume_from_checkpoint": str(point.checkpoint.resolve())})


@app.command("train")
def train_cmd(
    config: str = typer.Argument(..., metavar="CONFIG.yaml", help="A TRL config (configs/tiny.yaml runs anywhere), a pipeline file (stages:), or with --resume a pipeline directory."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a config field (repeatable)."),
    runs_dir: str | None = typer.Option(None, "--runs-dir", help="Where runs live (default $TUNETERM_RUNS_DIR or ./runs)."),
    name: str | None = typer.Option(None, "--name", help="Run name (default: <config>-<date>-<time>)."),
    detach: bool = typer.Option(False, "--detach", help="Start the run and return at once."),
    headless: bool = typer.Option(False, "--headless", help="Plain progress lines; exit 0 clean, 1 on an error."),
    stop_on: str = typer.Option("never", "--stop-on", metavar="error|never", help="Stop the run on the first error finding."),
    gpus: int = typer.Option(1, "--gpus", min=1, max=1024, help="Processes to launch (accelerate launch when > 1)."),
    trainer: str | None = typer.Option(None, "--trainer", metavar="sft|dpo|grpo", help="Default: inferred from the keys."),
    accelerate_config: str | None = typer.Option(
        None, "--accelerate-config", help="An accelerate config (configs/accelerate/*.yaml: DDP, ZeRO-2/3, FSDP)."
    ),
    sample_every: int = typer.Option(0, "--sample-every", min=0, help="Greedy samples every N steps (0: ~4 per run)."),
    force: bool = typer.Option(False, "--force", help="Launch despite error-severity pre-flight findings."),
    notify: list[str] = typer.Option([], "--notify", metavar="URL", help="Apprise URL to notify when the run ends, fails, dies, stalls or an error finding fires (repeatable; also $TUNETERM_NOTIFY and ~/.config/tuneterm/config.yaml)."),
    resume_from: str | None = typer.Option(
        None, "--resume-from", metavar="RUN",
        help="Continue RUN (the run `doctor --fix` diagnosed) from its last checkpoint saved before its first bad step.",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Pipelines: continue at the first stage that has not passed its gate."
    ),
    templates: str | None = typer.Option(
        None, "--templates", metavar="random",
        help="Instruction rows: render each with one of 4 prompt templates, seeded (template randomisation).",
    ),
    template_seed: int = typer.Option(0, "--template-seed", help="Seed of --templates' per-row choice."),
) -> int:
    """Validate CONFIG (or a PIPELINE.yaml of stages) and launch training that survives SSH drops.

    `--resume-from RUN` starts from RUN's last checkpoint saved before the first step a finding
    marks as bad, when the config's changes allow it (not a changed learning rate, optimizer,
    scheduler, model or adapter shape: a checkpoint restores the old ones); otherwise it refuses
    (exit 2) and says why. `--resume` continues a pipeline at its first stage that has not passed.
    """
    import click

    from tuneterm.errors import InputError
    from tuneterm.preflight.pipeline_spec import is_pipeline_file

    if resume or is_pipeline_file(config):
        if stop_on != "never" or trainer is not None or set_ or templates is not None or resume_from is not None:
            raise click.BadParameter(
                "a pipeline takes no --set, --trainer, --stop-on, --templates or --resume-from: set them per stage in the "
                "pipeline file (a stage's 'set:', 'trainer:', 'data: {templates: random}'; stages always stop "
                "at their first error finding)",
                param_hint="'CONFIG.yaml'",
            )
        if detach and headless:
            raise click.BadParameter("--detach and --headless exclude each other", param_hint="'--detach'")
        if notify:  # pipeline.json records the options; notification URLs carry tokens
            raise click.BadParameter("a pipeline takes no --notify: set $TUNETERM_NOTIFY, which every stage "
                                     "inherits", param_hint="'--notify'")
        from tuneterm.cli.train_pipeline import train_pipeline

        return train_pipeline(
            config, resume=resume, runs_dir=runs_dir, name=name, detach=detach, force=force,
            options={"gpus": gpus, "accelerate_config": accelerate_config, "sample_every": sample_every},
        )

    if stop_on not in ("error", "never"):
        raise click.BadParameter(f"{stop_on!r} is not one of 'error', 'never'", param_hint="'--stop-on'")
    if templates not in (None, "random"):
        raise click.BadParameter(f"{templates!r}: only 'random' (own templates: a pipeline stage's data.templates)",
                                 param_hint="'--templates'")
    if detach and headless:
        raise click.BadParameter("--detach and --headless exclude each other", param_hint="'--detach'")
    if accelerate_config is not None:
        from pathlib import Path

        if not Path(accelerate_config).is_file():
            raise InputError(f"{accelerate_config}: no such accelerate config file")

    from tuneterm.train.config import parse_set, resolve
    from tuneterm.train.launch import launch

    cfg = resolve(config, overrides=parse_set(set_), trainer=trainer)
    if resume_from is not None:
        cfg = _resume(cfg, resume_from, runs_dir)
    estimate = _preflight(cfg, gpus, force)
    launched = launch(
        cfg,
        runs_dir=runs_dir,
        name=name,
        gpus=gpus,
        accelerate_config=accelerate_config,
        sample_every=sample_every,
        stop_on=stop_on,
        argv=["tuneterm", "train", *_redact_notify(sys.argv[2:])] if len(sys.argv) > 1 else [],
        memory_estimate=estimate,
        notify=tuple(notify),
        extra={"data": {"templates": [templates], "template_seed": template_seed}} if templates else None,
    )
    rd = launched.run
    print(rd.name, flush=True)
    _say(f"tuneterm: launched {cfg.trainer} ({cfg.method}) run {rd.name} in {rd.path} (pid {launched.proc.pid})")
    if detach:
        _say(how_to_follow(rd))
        return int(ExitCode.OK)
    if headless:
        from tuneterm.train.follow import follow

        try:
            outcome = follow(rd, launched.proc, stop_on=stop_on, out=sys.stdout, notify=tuple(notify))
        except KeyboardInterrupt:
            _say(f"tuneterm: interrupted; run {rd.name} keeps running in the background.\n{how_to_follow(rd)}")
            return int(ExitCode.INTERRUPTED)
        return _report(rd, outcome)
    return live_view(launched, stop_on=stop_on, notify=tuple(notify))
