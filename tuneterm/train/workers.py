"""The writer of a training process's own record, ``worker-<rank>.json`` (schema and reader:
:mod:`tuneterm.runs.workers`), and its watch on the supervisor.

When a rank notices that the supervisor is gone (checked at most every 2 s from the training
callback) it records ``supervisor_lost`` in its record, and rank 0 records it in status.json too;
from then on the training process itself records the run's end in status.json.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from tuneterm.runs.layout import RunDir
from tuneterm.runs.processes import boot_id, proc_start, same_process_alive
from tuneterm.runs.workers import SUPERVISOR_ENV, worker_path
from tuneterm.runs.writer import now_iso, write_json_atomic

class WorkerReporter:
    """Writes this process's ``worker-<rank>.json`` and watches the supervisor.

    Every write goes through :func:`~tuneterm.runs.writer.write_json_atomic`; a failed write
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
        gone = not same_process_alive(self._supervisor, self._supervisor_start)
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
