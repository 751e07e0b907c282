"""What each training process records about itself: ``worker-<rank>.json`` in the run directory,
and how a reader judges it (the writer is :class:`tuneterm.train.workers.WorkerReporter`).

The supervisor (:mod:`tuneterm.train.child`) records how the training process ended, but the
supervisor can die first (the kernel's OOM killer, a stray ``kill -9``) while training goes on. So
every rank also records its *own* identity, progress and end, atomically (temp file +
``os.replace``), in a file of its own (no two processes ever write the same file)::

    {"rank": 0, "pid": 4242, "start": 123456, "boot_id": "...", "host": "gpu-box",
     "state": "running" | "finished" | "failed" | "stopped",
     "step": 4628, "max_steps": 20000, "started": ISO, "updated": ISO, "ended": ISO | null,
     "exit_code": int | null, "error": str | null, "supervisor_lost": ISO | null}

``start`` is the process's start time in clock ticks since boot and ``boot_id`` the kernel's boot
id, so a pid reused after the process exited (or after a reboot) is never taken for it. A reader
(``tuneterm runs``, ``watch``, ``stop``, ``doctor``) derives a run's state from these records *and*
the supervisor's pid: the run is alive while either is (:func:`alive_workers`).

When a rank notices that the supervisor is gone (checked at most every 2 s from the training
callback) it records ``supervisor_lost`` here, and rank 0 records it in status.json too; from then
on the training process itself records the run's end in status.json (it always records finished,
stopped and failed; only a death by signal needs the supervisor).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneterm.runs.processes import boot_id, same_process_alive

SUPERVISOR_ENV = "TUNETERM_SUPERVISOR_PID"
"""The supervisor's pid, given to every process of the run (the worker's parent may be a launcher)."""

_PREFIX = "worker-"


def worker_path(run_dir: Path, rank: int) -> Path:
    """``<run_dir>/worker-<rank>.json``."""
    return run_dir / f"{_PREFIX}{rank}.json"


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """One rank's ``worker-<rank>.json`` as read back (fields as in the module docstring)."""

    rank: int
    pid: int | None
    start: int | None
    boot_id: str | None
    host: str | None
    state: str | None
    step: int | None
    ended: str | None
    exit_code: int | None
    error: str | None
    supervisor_lost: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerRecord | None:
        """The record in ``data``, or ``None`` when it is not one (wrong types are dropped)."""

        def _int(key: str) -> int | None:
            v = data.get(key)
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        def _str(key: str) -> str | None:
            v = data.get(key)
            return v if isinstance(v, str) and v else None

        rank = _int("rank")
        if rank is None:
            return None
        return cls(
            rank=rank, pid=_int("pid"), start=_int("start"), boot_id=_str("boot_id"), host=_str("host"),
            state=_str("state"), step=_int("step"), ended=_str("ended"), exit_code=_int("exit_code"),
            error=_str("error"), supervisor_lost=_str("supervisor_lost"),
        )


def read_workers(run_dir: Path) -> list[WorkerRecord]:
    """Every readable ``worker-*.json`` of ``run_dir``, by rank (unreadable or corrupt files are
    skipped: a reader never fails on them)."""
    out: list[WorkerRecord] = []
    try:
        paths = sorted(run_dir.glob(f"{_PREFIX}*.json"))
    except OSError:
        return []
    for p in paths:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rec = WorkerRecord.from_json(data) if isinstance(data, dict) else None
        if rec is not None:
            out.append(rec)
    return sorted(out, key=lambda r: r.rank)


def record_alive(rec: WorkerRecord) -> bool:
    """True while the process ``rec`` names runs on this machine: same host, same boot, same pid
    *and* start time, whatever state it recorded (a process that recorded its end may still be
    finishing). A record from another host is never judged (False: not known alive here)."""
    if rec.pid is None:
        return False
    if rec.host and rec.host != socket.gethostname():
        return False
    here = boot_id()
    if rec.boot_id and here and rec.boot_id != here:
        return False  # the machine rebooted since: every process of that boot is gone
    return same_process_alive(rec.pid, rec.start)


def alive_workers(run_dir: Path) -> list[WorkerRecord]:
    """The records of ``run_dir`` whose process is alive on this machine."""
    return [r for r in read_workers(run_dir) if record_alive(r)]
