"""The ``tuneterm`` command line (Typer). Imports nothing heavy at module load.

Each command lives in its own module and registers itself on :data:`app`; :func:`main` runs them
and owns the exit-code contract (tuneterm/exit_codes.py): library errors
become one ``tuneterm: error: ...`` line on stderr with their exit code, Ctrl-C is 130, and an
unexpected exception is reported in one line (exit 2) unless ``TUNETERM_DEBUG=1`` asks for the
traceback.
"""

from __future__ import annotations

import os
import sys

import click
import typer

try:  # typer >= 0.26 vendors click as typer._click; catch whichever click raised
    from typer._click import exceptions as _vendored_click  # type: ignore[import-not-found]

    _EXIT: tuple[type[BaseException], ...] = (click.exceptions.Exit, _vendored_click.Exit)
    _CLICK_ERROR: tuple[type[BaseException], ...] = (click.ClickException, _vendored_click.ClickException)
    _ABORT: tuple[type[BaseException], ...] = (click.exceptions.Abort, _vendored_click.Abort)
except ImportError:
    _EXIT, _CLICK_ERROR, _ABORT = (click.exceptions.Exit,), (click.ClickException,), (click.exceptions.Abort,)

from tuneterm.version import __version__
from tuneterm.errors import TunetermError
from tuneterm.exit_codes import ExitCode

app = typer.Typer(
    name="tuneterm",
    help="Terminal diagnostic assistant for LLM fine-tuning: plan, check, watch and diagnose runs.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


_NO_DIAGNOSIS = frozenset({"gpu", "plan", "rules", "rule"})
"""Commands that judge no run: they skip loading the rule engine for the out-of-memory sizing."""


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tuneterm {__version__}")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """With no command, print this help (the program, :mod:`tuneterm.main`, opens the app instead)."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    if ctx.invoked_subcommand not in _NO_DIAGNOSIS:
        from tuneterm.plan.oom import install

        install()  # the out-of-memory rule sizes its fixes with the planner's memory estimator


def _register() -> None:
    # Each module adds its commands to `app` at import. Keep these imports light: heavy libraries
    # (textual, torch, transformers) are imported inside the command functions.
    import importlib

    for name in ("diagnose", "rules", "plan", "train", "watch", "evaluate", "compare"):
        try:
            importlib.import_module(f"tuneterm.cli.{name}")
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name != f"tuneterm.cli.{name}":
                raise


_register()


def error(message: str) -> None:
    """Print one diagnostic line to stderr (never to stdout, which is data)."""
    from tuneterm.textsafe import inert_line

    print(f"tuneterm: error: {inert_line(message, 400)}", file=sys.stderr)


def _fd_identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _quiet_pipe_exit() -> None:
    """Point stdout at /dev/null so that nothing more (the interpreter's final flush included)
    is written to the closed pipe: no ``Exception ignored`` line, no traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> None:
    """Run the commands on ``argv`` (default ``sys.argv``) and exit with the documented code; the
    console script (:func:`tuneterm.main.main`) calls it after adding ``tuneterm ui``.

    A closed pipe (``tuneterm doctor RUN | head``) is a quiet exit 0 for every command, whether
    ``print`` raised ``BrokenPipeError``, Rich's console turned it into ``SystemExit(1)`` after
    pointing stdout at /dev/null, or only the final flush found the pipe closed.
    """
    stdout_at_start = _fd_identity(1)
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="tuneterm")
        code = int(rv) if isinstance(rv, int) else 0
    except SystemExit as exc:
        devnull = _fd_identity(os.open(os.devnull, os.O_RDONLY))
        now = _fd_identity(1)
        if exc.code == 1 and now is not None and now != stdout_at_start and now == devnull:
            code = ExitCode.OK  # Rich's on_broken_pipe: it already redirected stdout to /dev/null
        else:
            raise
    except _EXIT as exc:
        code = exc.exit_code  # type: ignore[attr-defined]
    except _CLICK_ERROR as exc:
        exc.show()  # type: ignore[attr-defined]
        code = exc.exit_code  # type: ignore[attr-defined]
    except (KeyboardInterrupt, *_ABORT):
        print("tuneterm: interrupted", file=sys.stderr)
        code = ExitCode.INTERRUPTED
    except TunetermError as exc:
        error(str(exc))
        code = exc.exit_code
    except BrokenPipeError:
        # stdout closed early (`tuneterm check ... | head`): not an error worth a message.
        _quiet_pipe_exit()
        code = ExitCode.OK
    except Exception as exc:  # the one place that turns bugs into a clean line
        if os.environ.get("TUNETERM_DEBUG"):
            raise
        error(f"internal error: {type(exc).__name__}: {exc} (set TUNETERM_DEBUG=1 for a traceback)")
        code = ExitCode.USAGE
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_pipe_exit()  # everything was produced: the command's own exit code stands
    except (OSError, ValueError):
        pass
    sys.exit(code)
