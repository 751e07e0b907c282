"""``tuneterm train PIPELINE.yaml`` and ``tuneterm train PIPELINE|DIR --resume``: start (or continue)
a multi-stage pipeline and follow it (see :mod:`tuneterm.train.pipeline`).

Every stage is validated and pre-flight-checked before anything starts (exit 2 with one line,
``--force`` overrides pre-flight errors as for one run). The pipeline then runs in a detached driver
process; ``--detach`` prints the pipeline's name and returns; otherwise its log is followed here
until it ends: exit 0 when every stage passed its gate, 1 when a gate failed or a stage failed or
was stopped; Ctrl-C asks whether to stop the pipeline (default: keep it running, detach).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tuneterm.exit_codes import ExitCode
from tuneterm.textsafe import inert_line


def _say(text: str) -> None:
    for line in text.splitlines() or [""]:
        print(inert_line(line, 600) if line.strip() else "", file=sys.stderr, flush=True)


def how_to_follow(path: Path, pid: Any) -> str:
    """The lines that tell a user how to look at and stop a detached pipeline."""
    return (
        f"  watch:  tuneterm watch {path}      (stage after stage)\n"
        f"  runs:   tuneterm runs               (every stage, as <pipeline>/<NN-stage>)\n"
        f"  stop:   tuneterm stop {path}   (stops the running stage and the pipeline; or: kill -TERM {pid})\n"
        f"  log:    {path / 'pipeline.log'}"
    )


def _preflight_all(prepared: Any, gpus: int, force: bool) -> None:
    from tuneterm.cli.train import _preflight

    for cfg in prepared.configs:
        _preflight(cfg, gpus, force)


def train_pipeline(
    config: str, *, resume: bool, runs_dir: str | None, name: str | None, detach: bool, force: bool,
    options: dict[str, Any],
) -> int:
    """Start or resume a pipeline; follow it unless ``detach``. Returns the exit code."""
    from tuneterm.train import pipeline as pl

    if resume:
        pd = pl.find_pipeline(config, runs_dir, name)
        prepared = pl.prepare(config) if Path(config).is_file() else None
        if prepared is not None:
            _preflight_all(prepared, int(options.get("gpus") or 1), force)
        started, first = pl.resume(pd, prepared)
        _say(f"tuneterm: resuming pipeline {pd.name} at stage {first} ({pd.path})")
    else:
        prepared = pl.prepare(config)
        _preflight_all(prepared, int(options.get("gpus") or 1), force)
        started = pl.start(prepared, runs_dir=runs_dir, name=name, options=options)
        stages = ", ".join(f"{c.trainer}" for c in prepared.configs)
        _say(f"tuneterm: launched pipeline {started.pipeline.name} ({stages}) in {started.pipeline.path} "
             f"(driver pid {started.proc.pid})")
    pd = started.pipeline
    print(pd.name, flush=True)
    if detach:
        _say(how_to_follow(pd.path, started.proc.pid))
        return int(ExitCode.OK)
    while True:
        try:
            state = pl.follow_pipeline(started, sys.stdout)
            break
        except KeyboardInterrupt:
            from tuneterm.cli.train import _ask_stop

            if _ask_stop():
                _say(f"tuneterm: stopping pipeline {pd.name} ...")
                _say(f"tuneterm: pipeline {pd.name} {pl.stop_pipeline(pd)}")
                return int(ExitCode.INTERRUPTED)
            _say(f"tuneterm: pipeline {pd.name} keeps running in the background.\n{how_to_follow(pd.path, started.proc.pid)}")
            return int(ExitCode.OK)
    data = pd.read()
    if state == "finished":
        _say(f"tuneterm: pipeline {pd.name} finished ({pd.path})")
        return int(ExitCode.OK)
    _say(f"tuneterm: pipeline {pd.name} {state}: {data.get('error') or 'no error recorded'} ({pd.path})")
    return int(ExitCode.FINDINGS)
