"""End-to-end speed of ``tuneterm check`` and of start-up (prints figures; not a test).

(a) ``tuneterm check`` (parse + every log rule + JSON report) on a generated 300,000-entry
    ``trainer_state.json`` against a bare ``python -c "json.load(...)"`` of the same file, each as
    its own process (interpreter start-up included on both sides). Target (issue 2): <= 1.5x.
(b) ``tuneterm --help`` and ``tuneterm check`` on a small real log (corpus 014 when present):
    target well under half a second.

The shared 2-core machines are noisy, so both wall and CPU (user+sys of the child) times are
reported, best of ``--repeat`` runs after one untimed warm-up; CPU time is the fairer comparison
under load. Children run as an installed package does: with bytecode caches (a temporary
``PYTHONPYCACHEPREFIX``; ``PYTHONDONTWRITEBYTECODE`` removed), since a wheel is compiled at install
time and a checkout without caches would recompile ~45 modules (~0.07 s) on every start.

Usage: ``python benchmarks/bench_check.py [--entries 300000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_parse import make_trainer_state  # (same generator as the parse benchmark)

REPO = Path(__file__).resolve().parent.parent
SMALL_LOG = REPO.parent / "shared" / "corpus" / "014_tinyllama-sft-eval_trainer_state.json"


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> tuple[float, float, int]:
    """Run argv; return (wall seconds, child CPU seconds, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=ENV)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def best(argv: list[str], repeat: int) -> tuple[float, float, int]:
    timed(argv)  # warm-up: writes the bytecode cache, fills the page cache
    runs = [timed(argv) for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs), runs[-1][2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tuneterm = shutil.which("tuneterm") or str(Path(sys.executable).with_name("tuneterm"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")

    with tempfile.TemporaryDirectory() as tmp:
        ENV["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        path = Path(tmp) / "trainer_state.json"
        make_trainer_state(path, args.entries)
        size_mb = path.stat().st_size / 1e6
        load = [sys.executable, "-c", f"import json; json.load(open({str(path)!r}))"]
        check = [tuneterm, "check", str(path), "--format", "json"]
        jw, jc, _ = best(load, args.repeat)
        cw, cc, code = best(check, args.repeat)
        print(f"(a) {args.entries:,} entries, {size_mb:.1f} MB")
        print(f"    python json.load   wall {jw:6.2f} s   cpu {jc:6.2f} s")
        print(f"    tuneterm check     wall {cw:6.2f} s   cpu {cc:6.2f} s   (exit {code})")
        print(f"    ratio              wall {cw / jw:6.2f} x  cpu {cc / jc:6.2f} x   (target <= 1.5x)")

        print("(b) start-up")
        hw, hc, _ = best([tuneterm, "--help"], args.repeat)
        print(f"    tuneterm --help    wall {hw:6.2f} s   cpu {hc:6.2f} s")
        if SMALL_LOG.is_file():
            sw, sc, code = best([tuneterm, "check", str(SMALL_LOG)], args.repeat)
            print(f"    check small log    wall {sw:6.2f} s   cpu {sc:6.2f} s   (exit {code}; {SMALL_LOG.name})")


if __name__ == "__main__":
    main()
