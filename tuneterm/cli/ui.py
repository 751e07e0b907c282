"""``tuneterm`` (no arguments) and ``tuneterm ui``: open the terminal app.

Textual is imported only inside :func:`open_app`, so every other command starts without it. The app
needs a terminal: with stdin or stdout redirected (a pipe, CI) it refuses with one line and exit 2
instead of drawing escape codes into a file or waiting for keys that never come.
"""

from __future__ import annotations

import sys

import typer

from tuneterm.cli import app
from tuneterm.errors import TunetermError
from tuneterm.exit_codes import ExitCode

SCREENS = ("home", "gpus", "plan", "runs", "doctor")


def open_app(demo: bool, runs_dir: str | None = None, screen: str | None = None) -> int:
    """Run the terminal app until the user quits; return the exit code.

    Args:
        demo: open on a sample run shipped with the package (and list the samples as runs).
        runs_dir: where runs live (default ``$TUNETERM_RUNS_DIR`` or ``./runs``).
        screen: the screen to open on (``home``, ``gpus``, ``plan``, ``runs``, ``doctor``); default ``home``.

    Raises:
        TunetermError: no terminal to draw on (exit 2), or the sample runs are missing with ``demo``.
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise TunetermError(
            "the terminal app needs a terminal (stdin and stdout are not a TTY); "
            "for scripts use `tuneterm doctor`, `tuneterm check`, `tuneterm runs` or `tuneterm --help`"
        )
    if screen is not None and screen not in SCREENS:
        raise TunetermError(f"unknown screen {screen!r}; choose one of {', '.join(SCREENS)}")
    from tuneterm.tui.app import demo_exists, run_app  # deferred: imports textual

    if demo and not demo_exists():
        raise TunetermError("no sample runs found in tuneterm/samples (broken install?)")
    return run_app(runs_dir=runs_dir, demo=demo, initial=screen)


@app.command("ui")
def ui_cmd(
    demo: bool = typer.Option(False, "--demo", help="Open on a sample run shipped with tuneterm."),
    runs_dir: str | None = typer.Option(None, "--runs-dir", help="Where runs live (default $TUNETERM_RUNS_DIR or ./runs)."),
    screen: str | None = typer.Option(None, "--screen", metavar="home|gpus|plan|runs|doctor", help="The screen to open on (default home)."),
) -> int:
    """Open the terminal app: Home (GPUs, live and recent runs), GPUs, Plan, Runs (live run view), Doctor.

    Keys: h Home, g GPUs, p Plan, r Runs, d Doctor, ? help, ctrl+p command palette, q quit. Quitting
    never stops a training run. Exit codes: 0 after quitting, 2 without a terminal.
    """
    return int(open_app(demo, runs_dir=runs_dir, screen=screen) or ExitCode.OK)
