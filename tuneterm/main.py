"""The ``tuneterm`` program: the commands (:mod:`tuneterm.cli`) and the terminal app
(:mod:`tuneterm.tui`) put together.

The commands and the app are independent layers; this module, above both, is the console-script
entry point (``[project.scripts]``) and ``python -m tuneterm``. It adds ``tuneterm ui`` to the
commands and opens the app when no command is given. Textual is imported only inside
:func:`open_app`, so every other command starts without it. The app needs a terminal: with stdin or
stdout redirected (a pipe, CI) it refuses with one line and exit 2 instead of drawing escape codes
into a file or waiting for keys that never come.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from tuneterm.cli import app
from tuneterm.cli import main as run_commands
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


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: ``tuneterm`` alone opens the app (as ``tuneterm ui``); any
    arguments run the commands, with the exit-code contract of :func:`tuneterm.cli.main`."""
    args = list(sys.argv[1:] if argv is None else argv)
    run_commands(args or ["ui"])
