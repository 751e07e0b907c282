"""Fixtures for the TUI tests: crafted run directories, a fake NVML, an app factory, screen text.

Run directories are written file by file following the schema in ``tuneterm/runs/layout.py``
(fast, deterministic); ``tiny_run`` makes a real one with ``tuneterm train configs/tiny.yaml``
(slow). The fake NVML is the planner tests' own (``tests/plan/conftest.py``) installed as
``pynvml``, which is what ``tuneterm.plan.gpu.probe`` imports.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.plan.conftest import make_fake_nvml

GIB = 2**30
H100 = dict(name="NVIDIA H100 80GB HBM3", total=80 * GIB, used=12 * GIB, util=87, temp=61, power_mw=350_000,
            limit_mw=700_000, cc=(9, 0))
T4 = dict(name="Tesla T4", total=15 * GIB, used=1 * GIB, util=3, temp=40, power_mw=None, limit_mw=70_000, cc=(7, 5))
EVIL = "\x1b[31m[bold red]EVIL[/bold red]\x1b]0;pwned\x07"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Offline, no user runs dir, a stable theme: every TUI test sees the same world."""
    monkeypatch.setenv("TUNETERM_OFFLINE", "1")
    monkeypatch.delenv("TUNETERM_RUNS_DIR", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLORTERM", "")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Install a fake ``pynvml``: ``fake_nvml([gpu, ...], init_error=None)``."""

    def install(gpus: list[dict[str, Any]], *, init_error: str | None = None) -> Any:
        mod = make_fake_nvml(gpus, init_error=init_error)
        monkeypatch.setitem(sys.modules, "pynvml", mod)
        return mod

    return install


def write_run(
    root: Path,
    name: str,
    *,
    state: str = "finished",
    steps: int = 40,
    nan_at: int | None = None,
    pid: int | None = None,
    trainer: str = "sft",
    evil: bool = False,
) -> Path:
    """Write a run directory as ``tuneterm train`` would leave it (see train/rundir.py)."""
    d = root / name
    d.mkdir(parents=True)
    import socket

    (d / "config.yaml").write_text("model_name_or_path: tuneterm:tiny-llama\nmax_steps: %d\n" % steps)
    (d / "launch.json").write_text(json.dumps({"trainer": trainer, "method": "full", "gpus": 1}))
    status = {
        "state": state, "name": name, "run_dir": str(d), "pid": pid, "pgid": pid, "worker_pid": None,
        "step": steps, "max_steps": steps, "epoch": 1.0, "started": "2026-01-01T10:00:00Z",
        "ended": None if state in ("running", "starting") else "2026-01-01T10:05:07Z",
        "exit_code": 0 if state == "finished" else None, "signal": None,
        "error": None, "host": socket.gethostname(), "trainer": trainer, "method": "full", "stop_requested": False,
    }
    (d / "status.json").write_text(json.dumps(status))
    lines, gpu = [], []
    for s in range(1, steps + 1):
        loss = float("nan") if nan_at is not None and s >= nan_at else 2.5 * math.exp(-s / 15) + 0.4
        grad = float("nan") if nan_at is not None and s >= nan_at else 1.0 + 0.2 * math.sin(s)
        row = {"loss": loss, "grad_norm": grad, "learning_rate": 3e-4 * min(1.0, s / 4), "step": s,
               "epoch": s / steps, "time": 1767261600 + s}
        lines.append(json.dumps(row))
        if s % 10 == 0:
            lines.append(json.dumps({"eval_loss": loss + 0.1, "step": s, "epoch": s / steps, "time": 1767261600 + s}))
        gpu.append(json.dumps({"step": s, "time": 1767261600 + s, "device": "cuda:0", "mem_allocated_mib": 4000 + s * 3,
                               "mem_reserved_mib": 5000 + s * 3, "peak_allocated_mib": 4100 + s * 3,
                               "mem_total_mib": 81559, "utilization": 90}))
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (d / "gpu.jsonl").write_text("\n".join(gpu) + "\n")
    completion = f"{EVIL} the answer is 21" if evil else "The answer is 21."
    (d / "samples.jsonl").write_text(
        json.dumps({"step": 10, "time": 1, "prompt": "What is 3 plus 18?", "completion": completion, "n_tokens": 6,
                    "hit_max_tokens": False, "max_new_tokens": 24}) + "\n")
    (d / "stdout.log").write_text("".join(f"step {s} loss ok\n" for s in range(1, 6)) + (f"log says {EVIL}\n" if evil else ""))
    (d / "stderr.log").write_text(" 10%|#  | 1/10\r 50%|#####  | 5/10\r100%|##########| 10/10\n")
    return d


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """A runs directory with a clean finished run and a run whose loss went NaN."""
    root = tmp_path / "runs"
    write_run(root, "clean-sft", steps=40)
    write_run(root, "nan-sft", steps=30, nan_at=22)
    return root


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real process in its own session standing in for a run's supervisor (killed afterwards)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def screen_text(app: Any) -> str:
    """What the terminal shows right now, as plain text (one line per row, trailing spaces cut)."""
    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False,
                      color_system=None, force_terminal=False)
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    console.print(update)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


async def wait_for(pilot: Any, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Let the app run until ``predicate()`` holds (workers are threads: poll, do not sleep blindly)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        await pilot.pause(0.05)
        if predicate():
            await pilot.pause()
            return
    raise AssertionError("condition not met within %.0f s; screen was:\n%s" % (timeout, screen_text(pilot.app)))


async def fill(pilot: Any, selector: str, text: str, *, submit: bool = True) -> None:
    """Focus the Input ``selector``, set its text (typing every key costs ~0.1 s each), submit."""
    widget = pilot.app.screen.query_one(selector)
    widget.focus()
    widget.value = text
    await pilot.pause()
    if submit:
        await pilot.press("enter")


def notes(app: Any) -> str:
    """The notifications the app shows right now (they expire after a few seconds), joined."""
    return "\n".join(n.message for n in app._notifications)


def make_app(**kw: Any) -> Any:
    """A TunetermApp with short polling intervals and a quick stop (tests only), opened on
    ``initial`` (default ``runs``; pass ``initial="home"`` for the app's own first screen)."""
    from tuneterm.tui.app import TunetermApp

    # The app opens on Home; the tests of the other screens name theirs (default: the runs list).
    kw.setdefault("initial", "runs")
    app = TunetermApp(**kw)
    app.gpu_interval = 0.3
    app.runs_interval = 0.3
    app.run_interval = 0.2
    app.stop_grace_s = 5.0
    return app


def tuneterm_exe() -> str:
    exe = Path(sys.executable).parent / "tuneterm"
    return str(exe)


SNAPSHOTS = Path(__file__).parent / "__snapshots__"
UPDATE = os.environ.get("TUNETERM_SNAPSHOT_UPDATE") == "1"
__all__ = ["EVIL", "H100", "REPO", "SNAPSHOTS", "T4", "UPDATE", "make_app", "screen_text", "wait_for", "write_run"]
