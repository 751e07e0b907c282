"""The training process: ``python -m tuneterm.train.worker RUN_DIR`` (one per rank).

Started by the supervisor (:mod:`tuneterm.train.child`), directly or through ``accelerate launch``.
Its stdout/stderr are the run's ``stdout.log``/``stderr.log``. Any exception that escapes training
(an error inside TRL, CUDA out of memory, a bad dataset) is caught here: the full traceback goes to
stderr.log, rank 0 records ``state: failed`` with the one-line error and ``exit_code: 1`` in
status.json, and the process exits 1. A death by signal cannot be caught; the supervisor records it.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


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
    from tuneterm.train.rundir import RunDir, now_iso

    rd = RunDir(Path(args[0]))
    is_main = _rank() == 0
    if is_main:
        rd.update_status(worker_pid=os.getpid())
    try:
        from tuneterm.train.runner import train

        final = train(rd)
    except BaseException as exc:  # noqa: BLE001 - the top level: record every way training can end
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
