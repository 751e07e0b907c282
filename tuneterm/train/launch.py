"""Launch a run: create its directory, write config/launch/status, start the detached supervisor.

:func:`launch` returns as soon as the supervisor process exists; the caller decides whether to
follow it (``--headless``, the live view) or to return at once (``--detach``). The supervisor is
started without a shell, in a new session (``start_new_session=True``), with stdin from /dev/null
and stdout/stderr appended to the run's log files, so it survives the terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneterm.version import __version__
from tuneterm.train.config import TUNETERM_DEFAULTS, TrainConfig
from tuneterm.runs.layout import RunDir, create_run_dir, initial_status, runs_root
from tuneterm.runs.writer import write_json_atomic


@dataclass(frozen=True, slots=True)
class Launched:
    """A started run: its directory and the supervisor process (``proc.pid`` == status pid)."""

    run: RunDir
    proc: subprocess.Popen[bytes]
    config: TrainConfig


def resolved_values(config: TrainConfig, rd: RunDir) -> tuple[dict[str, Any], list[str]]:
    """The config as launched: ``config.values`` plus tuneterm's defaults where the user set none.

    Returns the mapping and the keys that were defaulted (listed in config.yaml's header).
    """
    values = dict(config.values)
    applied: list[str] = []
    if not values.get("output_dir"):
        values["output_dir"] = str(rd.output.resolve())
        applied.append("output_dir")
    for key, value in TUNETERM_DEFAULTS.items():
        if key not in values:
            values[key] = value
            applied.append(key)
    return values, applied


def write_config(rd: RunDir, config: TrainConfig) -> dict[str, Any]:
    """Write the run's config.yaml (with a header comment) and return the mapping written."""
    values, applied = resolved_values(config, rd)
    header = [
        f"# tuneterm run {rd.name}: the resolved config as launched (trainer: {config.trainer}, "
        f"method: {config.method})",
        f"# source: {config.source}",
    ]
    if applied:
        header.append(f"# set by tuneterm (absent from the source): {', '.join(applied)}")
    body = yaml.safe_dump(values, sort_keys=False, default_flow_style=False, allow_unicode=True)
    if config.env:
        body += yaml.safe_dump({"env": config.env}, sort_keys=False)
    rd.config.write_text("\n".join(header) + "\n" + body, encoding="utf-8")
    return values


def launch(
    config: TrainConfig,
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    gpus: int = 1,
    accelerate_config: str | None = None,
    sample_every: int = 0,
    stop_on: str = "never",
    argv: list[str] | None = None,
    memory_estimate: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    notify: tuple[str, ...] = (),
) -> Launched:
    """Create the run directory for ``config`` and start its supervisor (detached).

    ``memory_estimate`` (the pre-flight's planner estimate, :attr:`tuneterm.train.preflight.
    PreflightResult.memory_estimate`) is recorded in launch.json, so that every run on a GPU sets
    the planner against its measured peak (``tuneterm doctor RUN``,
    ``benchmarks/estimate_vs_measured.py``).

    ``extra`` adds keys to launch.json: a pipeline stage records ``pipeline`` (the pipeline's
    directory, the stage's index and name), ``data`` (template options) and ``init_adapter``.

    ``notify`` (``--notify`` URLs) reaches the supervisor through ``$TUNETERM_NOTIFY`` in its
    environment, never through a file: apprise URLs often carry tokens. The supervisor notifies
    the run's end (:func:`tuneterm.train.child.notify_end`), also when nobody is watching.

    Raises:
        InputError: the run directory cannot be created or the name is taken.
    """
    rd = create_run_dir(runs_root(runs_dir), name, Path(config.source).stem)
    write_config(rd, config)
    launch_info = {
        "trainer": config.trainer,
        "method": config.method,
        "gpus": gpus,
        "accelerate_config": str(Path(accelerate_config).resolve()) if accelerate_config else None,
        "sample_every": sample_every,
        "stop_on": stop_on,
        "config_source": config.source,
        "cwd": os.getcwd(),
        "argv": list(argv or []),
        "tuneterm_version": __version__,
        "memory_estimate": memory_estimate,
        **(extra or {}),
    }
    rd.launch.write_text(json.dumps(launch_info, indent=1) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "tuneterm.train.child", str(rd.path.resolve())]
    write_json_atomic(rd.status_file, initial_status(rd, trainer=config.trainer, method=config.method, command=cmd))
    env = dict(os.environ)
    env.update(config.env)
    env["PYTHONUNBUFFERED"] = "1"
    if notify:
        env["TUNETERM_NOTIFY"] = " ".join([*notify, env.get("TUNETERM_NOTIFY", "")]).strip()
    with open(rd.stdout, "ab") as out, open(rd.stderr, "ab") as err:
        proc = subprocess.Popen(  # fixed argv, no shell
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            close_fds=True,
            start_new_session=True,
            cwd=os.getcwd(),
            env=env,
        )
    rd.update_status(pid=proc.pid, pgid=proc.pid)
    return Launched(run=rd, proc=proc, config=config)
