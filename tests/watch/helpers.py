"""Build run directories for the watch tests (crafted status.json / stderr.log / metrics.jsonl)."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")
TUNETERM = Path(sys.executable).with_name("tuneterm")


def cli_env() -> dict[str, str]:
    """The environment for a ``tuneterm`` subprocess: no debug tracebacks, no runs directory
    inherited from the caller."""
    env = dict(os.environ)
    env.pop("TUNETERM_DEBUG", None)
    env.pop("TUNETERM_RUNS_DIR", None)
    return env


def make_run_dir(
    root: Path,
    name: str,
    *,
    status: dict[str, Any] | None = None,
    stderr: str = "",
    steps: int = 10,
    config: str = "",
    samples: list[dict[str, Any]] | None = None,
) -> Path:
    """A run directory with ``steps`` healthy metrics lines, the given status and stderr text."""
    d = root / name
    d.mkdir(parents=True)
    with open(d / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for s in range(1, steps + 1):
            # a healthy cross-entropy: falls, flattens, never goes below 0 (negative-loss would fire)
            loss = 2.0 - 0.05 * s if s <= 30 else 0.5 * 0.99 ** (s - 30)
            fh.write(json.dumps({"loss": loss, "grad_norm": 1.0, "learning_rate": 1e-4, "step": s, "epoch": s / 100}) + "\n")
    st = {"state": "running", "pid": None, "host": socket.gethostname(), "step": steps, "max_steps": 100,
          "started": "2025-01-01T00:00:00Z", "ended": None, "exit_code": None, "error": None}
    st.update(status or {})
    (d / "status.json").write_text(json.dumps(st), encoding="utf-8")
    (d / "stderr.log").write_text(stderr, encoding="utf-8")
    (d / "stdout.log").write_text("", encoding="utf-8")
    if config:
        (d / "config.yaml").write_text(config, encoding="utf-8")
    if samples is not None:
        (d / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in samples), encoding="utf-8")
    return d


def traceback(last_line: str) -> str:
    """A Python traceback ending in ``last_line``."""
    return (
        "Traceback (most recent call last):\n"
        '  File "train.py", line 88, in <module>\n'
        "    trainer.train()\n"
        f"{last_line}\n"
    )
