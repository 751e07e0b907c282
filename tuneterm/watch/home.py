"""What the app's home screen shows about each run, beyond ``tuneterm runs``: the recent loss
values (a sparkline), the speed, the ETA and the latest finding or the verdict.

Everything is read from the run directory's own files (the tail of metrics.jsonl, findings.json),
never from memory, and cheaply: a home screen refreshes every run every two seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneterm.runs.files import tail_rows
from tuneterm.runs.info import RunInfo
from tuneterm.runs.layout import LIVE_STATES
from tuneterm.textsafe import inert_line

_TAIL_BYTES = 32 * 1024
RECENT = 8
"""Finished (stopped, failed, died) runs shown on the home screen."""


@dataclass(frozen=True, slots=True)
class HomeRun:
    """One run on the home screen.

    Attributes:
        info: the ``tuneterm runs`` row.
        losses: the last logged training losses, oldest first (finite values only).
        steps_per_s: optimizer steps per second over the last logged lines, or None.
        eta_s: seconds to ``max_steps`` at that speed (live runs only), or None.
        latest: the latest finding (``error N101 nan-or-inf``) of a live run, or the verdict of
            an ended one (``clean``, ``2 errors: nan-or-inf``), inert; None when unknown.
    """

    info: RunInfo
    losses: tuple[float, ...]
    steps_per_s: float | None
    eta_s: float | None
    latest: str | None

    @property
    def live(self) -> bool:
        return self.info.state in LIVE_STATES


def speed(rows: Sequence[dict[str, Any]]) -> float | None:
    """Steps per second between the first and the last row that carry ``step`` and ``time``.

    >>> speed([{"step": 10, "time": 100.0}, {"step": 30, "time": 110.0}])
    2.0
    """
    pts = [(r["step"], r["time"]) for r in rows if isinstance(r.get("step"), int) and isinstance(r.get("time"), (int, float))]
    if len(pts) < 2:
        return None
    (s0, t0), (s1, t1) = pts[0], pts[-1]
    if t1 <= t0 or s1 <= s0:
        return None
    return (s1 - s0) / (t1 - t0)


def verdict(info: RunInfo) -> str | None:
    """The latest finding of a live run, or the verdict of an ended one (see :class:`HomeRun`).

    >>> from dataclasses import replace
    >>> base = RunInfo("r", "/r", "finished", "finished", None, 10, 10, 1.0, 0, 0, None, None, None, None, "evaluated")
    >>> verdict(base), verdict(replace(base, errors=2, worst="nan-or-inf"))
    ('clean', '2 errors: nan-or-inf')
    """
    if info.state in LIVE_STATES:
        return info.latest
    if info.errors is None:
        return None
    if not info.errors and not info.warnings:
        return "clean"
    top = f": {info.worst}" if info.worst else ""
    if info.errors:
        return inert_line(f"{info.errors} error{'s' if info.errors != 1 else ''}{top}", 80)
    return inert_line(f"{info.warnings} warning{'s' if info.warnings != 1 else ''}{top}", 80)


def home_run(info: RunInfo) -> HomeRun:
    """The home-screen record of one run."""
    d = Path(info.path)
    rows = tail_rows(d / "metrics.jsonl", _TAIL_BYTES)[-60:]
    losses = tuple(float(r["loss"]) for r in rows if isinstance(r.get("loss"), (int, float)) and not isinstance(r.get("loss"), bool) and math.isfinite(r["loss"]))
    rate = speed(rows)
    eta = None
    if info.state in LIVE_STATES and rate and info.max_steps and info.step is not None and info.max_steps > info.step:
        eta = (info.max_steps - info.step) / rate
    return HomeRun(info=info, losses=losses[-30:], steps_per_s=rate, eta_s=eta, latest=verdict(info))


def home_runs(infos: Sequence[RunInfo], recent: int = RECENT) -> tuple[list[HomeRun], list[HomeRun]]:
    """(live runs, the ``recent`` newest ended runs), in the order of ``infos`` (newest first)."""
    live = [home_run(i) for i in infos if i.state in LIVE_STATES]
    ended = [home_run(i) for i in infos if i.state not in LIVE_STATES][:recent]
    return live, ended


def loss_fractions(losses: Sequence[float]) -> list[float]:
    """Losses scaled to 0..1 between their min and max, for a sparkline.

    >>> loss_fractions([2.0, 1.0, 1.5])
    [1.0, 0.0, 0.5]
    """
    if not losses:
        return []
    lo, hi = min(losses), max(losses)
    if hi <= lo:
        return [0.5 for _ in losses]
    return [(v - lo) / (hi - lo) for v in losses]
