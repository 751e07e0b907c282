"""Time to first frame of the terminal app (target: about a second).

Two figures:

1. **real terminal**: the console script ``tuneterm ui`` started inside a fresh tmux pane (100x30);
   the clock stops when the pane first shows the navigation bar and the footer (the app's first
   painted frame); for the home screen, when it shows the GPU state (a GPU line or the no-GPU
   line) and the last of six runs. This includes Python start-up, imports and Textual's first layout, i.e. what
   a user waits for after pressing enter. Also measured for ``--demo`` (the run view on a sample
   run, until its charts are drawn by the worker).
2. **in process**: importing ``tuneterm.tui.app`` and mounting the app headless until the first
   screen is composed.

Usage: ``python benchmarks/bench_tui_first_frame.py [--repeat N]``. Needs tmux for (1).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _runs_dir_with_runs(n: int = 6) -> str:
    """A runs directory with ``n`` finished runs of 40 logged steps (what a GPU box collects)."""
    import json

    root = Path(tempfile.mkdtemp(prefix="tuneterm-bench-home-"))
    for k in range(n):
        d = root / f"bench-run-{k}"
        d.mkdir()
        status = {"state": "finished", "step": 40, "max_steps": 40, "started": f"2026-01-01T10:0{k}:00Z",
                  "ended": f"2026-01-01T10:0{k}:30Z", "exit_code": 0}
        (d / "status.json").write_text(json.dumps(status))
        rows = [json.dumps({"loss": 2.0 - 0.02 * s, "grad_norm": 1.0, "learning_rate": 1e-4, "step": s, "time": 1767261600 + s})
                for s in range(1, 41)]
        (d / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    return str(root)


def tmux_first_frame(
    args: list[str], ready: tuple[str, ...], runs_dir: str, timeout: float = 30.0, size: tuple[int, int] = (100, 30)
) -> float:
    """Seconds from starting ``tuneterm ARGS`` in a tmux pane until every string of ``ready`` shows."""
    exe = str(Path(sys.executable).parent / "tuneterm")
    sock = f"tuneterm-bench-{os.getpid()}-{time.monotonic_ns()}"  # a fresh server each time

    def tmux(*a: str) -> str:
        return subprocess.run(["tmux", "-L", sock, *a], capture_output=True, text=True, check=False).stdout

    cmd = f"TERM=xterm-256color TUNETERM_RUNS_DIR={runs_dir} {exe} {' '.join(args)}; sleep 30"
    t0 = time.perf_counter()
    tmux("-f", "/dev/null", "new-session", "-d", "-s", "b", "-x", str(size[0]), "-y", str(size[1]), "sh", "-c", cmd)
    try:
        while time.perf_counter() - t0 < timeout:
            screen = tmux("capture-pane", "-p", "-t", "b")
            if all(r in screen for r in ready):
                return time.perf_counter() - t0
            time.sleep(0.01)
        raise RuntimeError(f"no frame within {timeout} s:\n{screen}")
    finally:
        tmux("kill-server")


def in_process() -> tuple[float, float]:
    """(import seconds, mount seconds) for the app in this process, headless."""
    t0 = time.perf_counter()
    from tuneterm.tui.app import TunetermApp

    t1 = time.perf_counter()

    async def mount() -> float:
        app = TunetermApp(runs_dir=tempfile.mkdtemp())
        s = time.perf_counter()
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            return time.perf_counter() - s

    return t1 - t0, asyncio.run(mount())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs = tempfile.mkdtemp(prefix="tuneterm-bench-runs-")
    with_runs = _runs_dir_with_runs()
    if shutil.which("tmux"):
        home = [
            tmux_first_frame(["ui"], ("GiB", "bench-run-5", "^p palette"), with_runs, size=(100, 30))
            for _ in range(args.repeat)
        ]
        print(f"{'tuneterm ui (home at 100x30: GPU line + 6 runs)':45s} median {statistics.median(home):.3f} s  "
              f"min {min(home):.3f}  max {max(home):.3f}  (n={len(home)})")
        for label, argv, ready in (
            ("tuneterm ui (home, empty runs dir)", ["ui"], ("h Home", "^p palette")),
            ("tuneterm ui --demo (first frame)", ["ui", "--demo"], ("g GPUs", "^p palette")),
            ("tuneterm ui --demo (sample run charted)", ["ui", "--demo"], ("Charts", "┤")),
        ):
            times = [tmux_first_frame(argv, ready, runs) for _ in range(args.repeat)]
            print(f"{label:45s} median {statistics.median(times):.3f} s  min {min(times):.3f}  max {max(times):.3f}  (n={len(times)})")
    else:
        print("tmux not installed: real-terminal figures skipped")
    imp, mount = in_process()
    print(f"{'import tuneterm.tui.app':45s} {imp:.3f} s")
    print(f"{'headless mount to first screen':45s} {mount:.3f} s")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
