"""What each training process records about itself: ``worker-<rank>.json`` in the run directory.

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
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneterm.train.control import ProcRef, pid_alive, proc_alive, proc_start
from tuneterm.train.rundir import RunDir, now_iso, write_json_atomic

SUPERVISOR_ENV = "TUNETERM_SUPERVISOR_PID"
"""The supervisor's pid, given to every process of the run (the worker's parent may be a launcher)."""

_PREFIX = "worker-"


def worker_path(run_dir: Path, rank: int) -> Path:
    """``<run_dir>/worker-<rank>.json``."""
    return run_dir / f"{_PREFIX}{rank}.json"


def boot_id() -> str | None:
    """The kernel's boot id (Linux), or ``None``: start times are only comparable within one boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip() or None
    except OSError:
        return None


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
    if rec.start is None:
        return pid_alive(rec.pid)
    return proc_alive(ProcRef(rec.pid, rec.start))


def alive_workers(run_dir: Path) -> list[WorkerRecord]:
    """The records of ``run_dir`` whose process is alive on this machine."""
    return [r for r in read_workers(run_dir) if record_alive(r)]


class WorkerReporter:
    """Writes this process's ``worker-<rank>.json`` and watches the supervisor.

    Every write goes through :func:`~tuneterm.train.rundir.write_json_atomic`; a failed write
    (disk full) is swallowed, because losing this record must never end a healthy training run.
    """

    def __init__(self, rd: RunDir, rank: int) -> None:
        self.rd = rd
        self.rank = rank
        self.path = worker_path(rd.path, rank)
        pid = os.getpid()
        self._data: dict[str, Any] = {
            "rank": rank, "pid": pid, "start": proc_start(pid), "boot_id": boot_id(), "host": socket.gethostname(),
            "state": "running", "step": 0, "max_steps": None, "started": now_iso(), "updated": now_iso(),
            "ended": None, "exit_code": None, "error": None, "supervisor_lost": None,
        }
        self._supervisor = _env_pid(SUPERVISOR_ENV)
        self._supervisor_start = proc_start(self._supervisor) if self._supervisor else None

    def _write(self, **fields: Any) -> None:
        self._data.update(fields, updated=now_iso())
        try:
            write_json_atomic(self.path, self._data)
        except OSError:
            pass

    def begin(self) -> None:
        """Record this process as running."""
        self._write()

    def progress(self, step: int, max_steps: int | None) -> None:
        """Record the step reached (called at most every 2 s and at each log event)."""
        self._write(step=int(step), max_steps=max_steps)

    def end(self, state: str, *, step: int | None = None, exit_code: int | None = None, error: str | None = None) -> None:
        """Record how this process ended (``finished``/``stopped``/``failed``)."""
        fields: dict[str, Any] = {"state": state, "ended": now_iso(), "exit_code": exit_code, "error": error}
        if step is not None:
            fields["step"] = int(step)
        self._write(**fields)

    @property
    def supervisor_lost(self) -> bool:
        """True once :meth:`check_supervisor` found the supervisor gone."""
        return self._data["supervisor_lost"] is not None

    def check_supervisor(self) -> bool:
        """Record the supervisor's death the first time it is seen; True when it is gone.

        Rank 0 also records it in status.json (``supervisor_lost``), so ``runs`` and ``doctor``
        can say what happened; from then on this process records the run's end itself.
        """
        if self.supervisor_lost:
            return True
        if not self._supervisor:
            return False
        if self._supervisor_start is not None:
            gone = not proc_alive(ProcRef(self._supervisor, self._supervisor_start))
        else:
            gone = not pid_alive(self._supervisor)
        if not gone:
            return False
        when = now_iso()
        self._write(supervisor_lost=when)
        print(
            f"tuneterm: the supervisor (pid {self._supervisor}) is gone; training continues and this "
            "process records the run's end",
            file=sys.stderr,
            flush=True,
        )
        if self.rank == 0:
            try:
                self.rd.update_status(supervisor_lost=when)
            except OSError:
                pass
        return True


def _env_pid(name: str) -> int | None:
    try:
        pid = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return pid if pid > 0 else None
