"""Run the CLI in-process (fast) or as the real console script (end to end), and make logs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuneterm.cli import main

TUNETERM = Path(sys.executable).with_name("tuneterm")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``tuneterm ARGS`` through :func:`tuneterm.cli.main` (exit-code mapping included)."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 0), out, err


def run_script(*args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user or CI runs it."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("TUNETERM_DEBUG", None)
    return subprocess.run(
        [str(TUNETERM), *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120, check=False
    )


def write_trainer_state(path: Path, entries: list[dict], **top: object) -> Path:
    """A trainer_state.json with ``entries`` as log_history (NaN written as JSON ``NaN``)."""
    state = {"global_step": max((e.get("step", 0) for e in entries), default=0), "log_history": entries, **top}
    path.write_text(json.dumps(state, allow_nan=True), encoding="utf-8")
    return path


def nan_run(path: Path, steps: int = 100) -> Path:
    """An SFT run whose loss and grad_norm turn NaN at step 30 and stay NaN: an error."""
    entries = []
    for s in range(1, steps + 1):
        bad = s >= 30
        entries.append(
            {
                "loss": math.nan if bad else 2.0 - 0.01 * s,
                "grad_norm": math.nan if bad else 1.0,
                "learning_rate": 1e-4,
                "epoch": s / steps,
                "step": s,
            }
        )
    return write_trainer_state(path, entries, max_steps=steps, logging_steps=1)
