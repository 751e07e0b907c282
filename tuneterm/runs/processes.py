"""Is a run's process still there? ``/proc`` reading shared by the status reader and the stopper.

Process identity and liveness only; signalling lives in :mod:`tuneterm.runs.control`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` tuneterm uses."""

    ppid: int
    pgrp: int
    start: int
    zombie: bool


def has_proc() -> bool:
    """True on Linux with ``/proc`` mounted (elsewhere only the pid itself can be probed)."""
    return sys.platform.startswith("linux") and PROC.is_dir()


def proc_stat(pid: int) -> ProcStat | None:
    """Parsed ``/proc/PID/stat`` (``None`` when the process is gone or unreadable).

    The command name (field 2) is in parentheses and may itself contain spaces and ``)``, so the
    fields are split after the *last* ``)``.
    """
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    try:
        rest = raw[raw.rindex(b")") + 2 :].split()
        # rest[0] is field 3 (state), so field N is rest[N - 3].
        return ProcStat(ppid=int(rest[1]), pgrp=int(rest[2]), start=int(rest[19]), zombie=rest[0] in (b"Z", b"X"))
    except (ValueError, IndexError):
        return None


def pid_alive(pid: int | None) -> bool:
    """True when a process ``pid`` exists and has not exited.

    On Linux a zombie (exited, not yet reaped by its parent) counts as gone: in a container whose
    init does not reap orphans an exited supervisor stays a zombie for ever. Elsewhere a zombie
    counts as alive until reaped.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if has_proc():
        st = proc_stat(pid)
        if st is not None and st.zombie:
            return False
    return True


def proc_start(pid: int | None) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or ``None``: with the
    pid it pins the process, so a pid reused after the process exited is never taken for it."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not has_proc():
        return None
    st = proc_stat(pid)
    return None if st is None or st.zombie else st.start


def same_process_alive(pid: int | None, start: int | None) -> bool:
    """True while ``pid`` runs and, when ``start`` is known (and ``/proc`` is there), is still the
    process that started at ``start`` (not a zombie, not a reuse of the pid)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if start is None or not has_proc():
        return pid_alive(pid)
    st = proc_stat(pid)
    return st is not None and not st.zombie and st.start == start


def boot_id() -> str | None:
    """The kernel's boot id (Linux), or ``None``: start times compare only within one boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip() or None
    except OSError:
        return None
