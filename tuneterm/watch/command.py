"""``tuneterm watch -- COMMAND ...``: run any training command under tuneterm, in a run directory.

The command (a user's script, ``llamafactory-cli train x.yaml``, ``axolotl train x.yaml``) gets a
fresh run directory and is started by tuneterm's supervisor (:mod:`tuneterm.train.child`, the same
one ``tuneterm train`` uses): ``subprocess.Popen`` with an argv list (never a shell), a new session
(no controlling terminal, so neither Ctrl-C in the viewer nor a closed SSH session reaches it),
stdin from /dev/null, ``PYTHONUNBUFFERED=1`` so Python output arrives line by line. The command's
stdout *and* stderr go to ``stdout.log``, interleaved as a terminal would show them (a trainer's
metric dicts on stdout and its tqdm bars on stderr must stay in order for the console parser to
step them right); ``stderr.log`` holds only the supervisor's own messages. ``launch.json`` records
``{"kind": "command", "command": [...], "cwd": ...}``; the supervisor records pid, the exit
status and a death by signal in ``status.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tuneterm.version import __version__
from tuneterm.errors import InputError
from tuneterm.runs.layout import RunDir, create_run_dir, initial_status, runs_root
from tuneterm.runs.writer import write_json_atomic


@dataclass(frozen=True, slots=True)
class Started:
    """A command started under tuneterm: its run directory and the supervisor process."""

    run: RunDir
    proc: subprocess.Popen[bytes]


def _stem(argv: list[str]) -> str:
    """A readable run-name stem: the script name for ``python x.py``, else the program name."""
    prog = Path(argv[0]).name
    if prog.startswith("python") and len(argv) > 1:
        for a in argv[1:]:
            if a == "-m":
                continue
            if not a.startswith("-"):
                return Path(a).stem
    return prog


def start_command(
    argv: list[str],
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> Started:
    """Create a run directory and start ``argv`` in it under the detached supervisor.

    Args:
        argv: the command and its arguments (no shell: ``["python", "train.py", "--lr", "1e-4"]``).
        runs_dir: the runs directory (``--runs-dir``; default ``$TUNETERM_RUNS_DIR`` or ``./runs``).
        name: the run name (default ``<script>-<date>-<time>``).

    Raises:
        InputError: empty command, a program that is not found, or the run directory cannot be made.
    """
    if not argv:
        raise InputError("no command given after '--' (e.g. tuneterm watch -- python train.py)")
    program = argv[0]
    if os.sep not in program and shutil.which(program) is None:
        raise InputError(f"command not found: {program}")
    if os.sep in program and not os.access(program, os.X_OK):
        raise InputError(f"not an executable file: {program}")
    rd = create_run_dir(runs_root(runs_dir), name, _stem(argv))
    launch = {
        "kind": "command",
        "command": list(argv),
        "trainer": None,
        "method": None,
        "gpus": 1,
        "cwd": os.getcwd(),
        "argv": ["tuneterm", "watch", "--", *argv],
        "tuneterm_version": __version__,
    }
    rd.launch.write_text(json.dumps(launch, indent=1) + "\n", encoding="utf-8")
    sup = [sys.executable, "-m", "tuneterm.train.child", str(rd.path.resolve())]
    status = initial_status(rd, trainer="unknown", method="unknown", command=list(argv))
    write_json_atomic(rd.status_file, status)
    rd.stderr.touch()
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    with open(rd.stdout, "ab") as out:
        proc = subprocess.Popen(  # argv list, no shell
            sup,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            close_fds=True,
            start_new_session=True,
            cwd=os.getcwd(),
            env=env,
        )
    rd.update_status(pid=proc.pid, pgid=proc.pid, state="running")
    return Started(run=rd, proc=proc)
