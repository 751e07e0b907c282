"""Fixtures for the training tests: the tiny model built once, a tmp runs dir, run helpers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

TINY = REPO / "configs" / "tiny.yaml"
TINY_DPO = REPO / "configs" / "tiny-dpo.yaml"
TINY_GRPO = REPO / "configs" / "tiny-grpo.yaml"


HAS_TRL = importlib.util.find_spec("trl") is not None
"""Whether the train extra is installed; found without importing TRL (seconds of CPU)."""

needs_trl = pytest.mark.skipif(not HAS_TRL, reason="needs the train extra (trl)")


def tuneterm_exe() -> list[str]:
    """The real console script next to the interpreter (falls back to ``python -m tuneterm``)."""
    exe = Path(sys.executable).parent / "tuneterm"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tuneterm"]


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """Build (or reuse) the built-in tiny model once per session; returns its path.

    Reusing a built model imports nothing, so a test that only launches runs keeps TRL out of the
    test process (the training processes import it).
    """
    if not HAS_TRL:
        pytest.skip("needs the train extra (trl)")
    from tuneterm.assets.builtin import resolve_model

    return resolve_model("tuneterm:tiny-llama")


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``tuneterm ARGS`` as a real subprocess in ``cwd``."""
    full_env = dict(os.environ)
    full_env.pop("TUNETERM_FAULT", None)
    full_env.update(env or {})
    return subprocess.run(
        [*tuneterm_exe(), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def status(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "status.json").read_text())


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
