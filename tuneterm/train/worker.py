"""The training process: ``python -m tuneterm.train.worker RUN_DIR`` (one per rank).

Started by the supervisor (:mod:`tuneterm.train.child`), directly or through ``accelerate launch``.
Its stdout/stderr are the run's ``stdout.log``/``stderr.log``.

The full config check happens here: the runner's first step
(:func:`tuneterm.train.runner.build_trainer`) instantiates TRL's own dataclasses with the run's
config.yaml (:func:`tuneterm.train.config.instantiate`), so their ``__post_init__`` checks (``bf16``
on a machine without a bf16 GPU ...) run before the model or the data is loaded. The launcher only
checked keys and types from the schema cache, because importing TRL there would cost seconds that
this process pays anyway. A config rejected there, or later while the trainer is built (a missing
dataset file or split, an unknown built-in, a reward function that cannot be imported: every
:class:`~tuneterm.errors.ConfigError`), is a *config error*: ``tuneterm: error: <line>`` goes to
stderr.log (no traceback), rank 0 records ``state: failed``, ``error: <line>``, ``error_kind:
"config"`` and ``exit_code: 2`` in status.json, and the process exits 2 (through ``accelerate
launch`` the supervisor records the launcher's own exit status instead; ``error_kind`` stays).
``tuneterm train --headless`` and the live view report that line and exit 2, exactly as a refusal
by the launcher; ``tuneterm runs`` and ``tuneterm watch`` show it.

Any other exception that escapes training (an error inside TRL, CUDA out of memory) is caught
here too: the full traceback goes to stderr.log, rank 0 records ``state: failed`` with the one-line
error and ``exit_code: 1`` in status.json, and the process exits 1. A death by signal cannot be
caught; the supervisor records it.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

CONFIG_ERROR = "config"
"""``status.json: error_kind`` of a run whose config was rejected before training started."""


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def config_error_line(exc: BaseException, rd: Any) -> str:
    """The first line of a ConfigError's message (at most 400 characters), without a type name:
    what the launcher would have printed after ``tuneterm: error:``.

    The runner checks the run's own copy of the config (``<run>/config.yaml``); the message names
    the user's file instead (launch.json ``config_source``), as the launcher's refusal would.
    """
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    copy = f"{rd.config}: "
    if line.startswith(copy):
        try:
            source = rd.read_launch().get("config_source")
        except Exception:  # noqa: BLE001 - keep the run's path when launch.json is unreadable
            source = None
        if isinstance(source, str) and source:
            line = f"{source}: {line[len(copy):]}"
    return line[:400]


def error_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` (at most 400 characters).

    >>> error_line(ValueError("bad value\\nmore"))
    'ValueError: bad value'
    """
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return line[:400]


def main(argv: list[str] | None = None) -> int:
    """Run training for the run directory in ``argv[0]``; returns the process exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tuneterm.train.worker RUN_DIR", file=sys.stderr)
        return 2
    from tuneterm.errors import ConfigError
    from tuneterm.runs.layout import RunDir
    from tuneterm.runs.writer import now_iso

    rd = RunDir(Path(args[0]))
    is_main = _rank() == 0
    if is_main:
        rd.update_status(worker_pid=os.getpid())
    try:
        from tuneterm.train.runner import train

        final = train(rd)
    except ConfigError as exc:  # rejected before training started: the user's config, not a crash
        line = config_error_line(exc, rd)
        print(f"tuneterm: error: {line}", file=sys.stderr, flush=True)
        if is_main:
            rd.update_status(state="failed", error=line, error_kind=CONFIG_ERROR, exit_code=2, ended=now_iso())
        return 2
    except BaseException as exc:  # the top level: record every way training can end
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise
        traceback.print_exc()
        sys.stderr.flush()
        if is_main:
            code = 130 if isinstance(exc, KeyboardInterrupt) else 1
            rd.update_status(state="failed", error=error_line(exc), exit_code=code, ended=now_iso())
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    if is_main:
        rd.update_status(exit_code=0)
    return 0 if final in ("finished", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
