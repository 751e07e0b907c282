"""Control a running run from outside: is it alive, stop it (graceful, then forced).

The stop protocol (used by ``tuneterm stop``, ``--stop-on error``, Ctrl-C -> stop and the TUI):

1. Snapshot every process of the run (:func:`run_processes`), *before* anything is signalled: the
   supervisor, the accelerate/torch launcher and every rank. torch's elastic launcher starts each
   rank in its own session, so the ranks are not in the supervisor's process group and
   ``os.killpg(pgid)`` does not reach them; they are found instead by the environment variable
   ``TUNETERM_RUN_DIR=<run dir>`` that the supervisor gives every process of the run
   (:mod:`tuneterm.train.child`), and as descendants of the supervisor.
2. SIGTERM to the supervisor (``status.json: pid``). It records ``stop_requested`` and forwards the
   signal to the training process, which ends training at the next step end (all ranks agree on
   the step) and exits; the supervisor then records ``state: stopped``.
3. If anything of the run is still alive after ``grace_s`` seconds: SIGKILL to the process group
   (``pgid``) and to each surviving process of the snapshot (plus any process of the run that
   appeared since), then the state is written here.

A run of ``TunetermCallback`` (launch.json ``kind: callback``) lives in the user's own process,
which goes on after training: SIGTERM asks the callback for a graceful stop, the recorded
``stopped`` ends the wait, and only when nothing is recorded within ``grace_s`` is that one
process SIGKILLed (never its process group, the user's shell job) (:func:`_stop_guest`).

Process identity is (pid, start time) (:class:`ProcRef`): a pid that was reused by an unrelated
process after the run's process exited has a different start time and is never signalled. A
process that exited but was not reaped by its parent (a zombie, common in containers whose init
does not reap orphans) counts as gone. On systems without ``/proc`` (macOS) only the supervisor and
its process group are signalled, as before.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneterm.runs.layout import TERMINAL_STATES, RunDir
from tuneterm.runs.processes import PROC as _PROC
from tuneterm.runs.processes import ProcStat
from tuneterm.runs.processes import has_proc as _has_proc
from tuneterm.runs.processes import pid_alive as pid_alive  # re-exported: callers check pids with it
from tuneterm.runs.processes import proc_stat as _stat
from tuneterm.runs.status import parse_status, supervisor_alive
from tuneterm.runs.workers import WorkerRecord, read_workers, record_alive
from tuneterm.runs.writer import now_iso

if TYPE_CHECKING:
    import subprocess

RUN_DIR_ENV = "TUNETERM_RUN_DIR"


@dataclass(frozen=True, slots=True)
class ProcRef:
    """One process, pinned by its start time so that a reused pid is not mistaken for it.

    Attributes:
        pid: the process id.
        start: start time in clock ticks since boot (``/proc/PID/stat`` field 22).
    """

    pid: int
    start: int


def _pids() -> list[int]:
    try:
        return [int(n) for n in os.listdir(_PROC) if n.isdigit()]
    except OSError:
        return []


def _environ_has(pid: int, entry: bytes) -> bool:
    """True when ``/proc/PID/environ`` holds exactly ``entry`` (``NAME=value``); False when it is
    unreadable (another user's process, gone, a zombie)."""
    try:
        data = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return entry in data.split(b"\0")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _run_dir_values(rd: RunDir, status: dict[str, Any] | None) -> set[str]:
    """The values ``TUNETERM_RUN_DIR`` can have for this run: the supervisor is started with the
    resolved path (launch.py, command.py), which status.json also records as ``run_dir``."""
    values = {str(rd.path.resolve()), os.path.abspath(rd.path)}
    recorded = (status or {}).get("run_dir")
    if isinstance(recorded, str) and recorded and Path(recorded).resolve() == rd.path.resolve():
        values.add(recorded)
    return values


def _is_our_supervisor(pid: int, values: set[str]) -> bool:
    """The pid recorded in status.json still is this run's supervisor (``python -m
    tuneterm.train.child RUN_DIR``): only then are its descendants the run's, not those of an
    unrelated process that reused the pid."""
    argv = _cmdline(pid)
    return "tuneterm.train.child" in argv and any(v in argv for v in values)


def run_processes(rd: RunDir, status: dict[str, Any] | None = None) -> list[ProcRef]:
    """Every live process of the run in ``rd`` (Linux; ``[]`` elsewhere).

    A process belongs to the run when its environment holds ``TUNETERM_RUN_DIR=<run dir>`` (every
    process the supervisor starts inherits it: launcher, ranks, data-loader workers), or when it
    descends from the run's supervisor (``status.json: pid``, checked to still be
    ``tuneterm.train.child`` of this run dir); the supervisor itself is included. Zombies and
    entries that cannot be read (other users' processes, processes that exit during the scan) are
    skipped silently.

    Args:
        rd: the run directory.
        status: its status.json (read when ``None``).

    Returns:
        The processes, sorted by pid.
    """
    if not _has_proc():
        return []
    if status is None:
        status = rd.read_status()
    values = _run_dir_values(rd, status)
    entries = {f"{RUN_DIR_ENV}={v}".encode() for v in values}
    me = os.getpid()
    stats: dict[int, ProcStat] = {}
    children: dict[int, list[int]] = {}
    found: set[int] = set()
    for pid in _pids():
        st = _stat(pid)
        if st is None or st.zombie:
            continue
        stats[pid] = st
        children.setdefault(st.ppid, []).append(pid)
        if pid != me and any(_environ_has(pid, e) for e in entries):
            found.add(pid)
    sup = status.get("pid")
    if isinstance(sup, int) and not isinstance(sup, bool) and sup in stats and sup != me and _is_our_supervisor(sup, values):
        stack = [sup]
        seen: set[int] = set()
        while stack:
            p = stack.pop()
            if p in seen:
                continue
            seen.add(p)
            found.add(p)
            stack.extend(c for c in children.get(p, ()) if c != me)
    return sorted((ProcRef(p, stats[p].start) for p in found if p in stats), key=lambda r: r.pid)


def proc_alive(ref: ProcRef) -> bool:
    """True while the process ``ref`` names runs (same pid *and* start time, not a zombie)."""
    st = _stat(ref.pid)
    return st is not None and not st.zombie and st.start == ref.start


def _signal_ref(ref: ProcRef, sig: int) -> None:
    """Send ``sig`` to ``ref`` only if the pid still is that process.

    With a pidfd (Linux >= 5.3) the check and the signal address the same process, so not even a
    pid reused between the two is hit; without one the window is the few microseconds between
    reading ``/proc/PID/stat`` and ``kill``.
    """
    fd = None
    try:
        fd = os.pidfd_open(ref.pid)
    except (AttributeError, OSError):
        fd = None
    try:
        if not proc_alive(ref):
            return
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(ref.pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        pass  # it exited meanwhile, or it is not ours to signal
    finally:
        if fd is not None:
            os.close(fd)


def group_alive(pgid: int | None) -> bool:
    """True when any process of process group ``pgid`` exists (on Linux: any that is not a zombie)."""
    if not pgid or pgid <= 0:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _has_proc():
        for pid in _pids():
            st = _stat(pid)
            if st is not None and st.pgrp == pgid and not st.zombie:
                return True
        return False
    return True


def run_alive(pgid: int | None, procs: Iterable[ProcRef] = ()) -> bool:
    """True while the process group ``pgid`` or any of ``procs`` (a :func:`run_processes`
    snapshot) is alive."""
    return group_alive(pgid) or any(proc_alive(r) for r in procs)


def stop_run(
    rd: RunDir, *, grace_s: float = 30.0, poll_s: float = 0.2, proc: subprocess.Popen[bytes] | None = None
) -> str:
    """Stop the run in ``rd`` (see the module docstring); returns the final state.

    Args:
        rd: the run directory.
        grace_s: seconds to wait after SIGTERM before SIGKILL (0: SIGKILL at once).
        poll_s: polling interval.
        proc: the supervisor's ``Popen`` when the caller is its parent (the launcher), so the
            exited supervisor is reaped instead of lingering as a zombie.

    Returns the state already recorded if the run had ended. Never raises for a process that
    vanished in the meantime.
    """
    status = rd.read_status()
    if status.get("state") in TERMINAL_STATES:
        return str(status["state"])
    if _is_guest(rd):
        return _stop_guest(rd, status.get("pid"), grace_s=grace_s, poll_s=poll_s)
    pid, pgid = status.get("pid"), status.get("pgid") or status.get("pid")
    procs = run_processes(rd, status)  # before SIGTERM: the supervisor's children are still its own
    ranks = _worker_refs(rd)
    procs = sorted({r.pid: r for r in [*procs, *ranks]}.values(), key=lambda r: r.pid)
    try:
        rd.update_status(stop_requested=True)
    except OSError:
        pass  # a full disk must not keep the run from being stopped
    if supervisor_alive(parse_status(status)):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    else:
        # The supervisor is gone (killed) but the run may still train: ask the training
        # processes themselves to stop at the next step end (they record the stop and the step).
        for r in ranks or procs:
            _signal_ref(r, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()
        alive = run_alive(pgid, procs)
        state = rd.read_status().get("state")
        if state in TERMINAL_STATES and not alive:
            return str(state)
        if not alive:
            break
        time.sleep(poll_s)
    if proc is not None:
        proc.poll()
    if run_alive(pgid, procs):
        _kill_all(rd, pgid, procs, poll_s=poll_s, proc=proc)
    status = rd.read_status()
    if status.get("state") not in TERMINAL_STATES:
        fields: dict[str, Any] = {"state": "stopped", "error": "stopped on request (forced: SIGKILL)", "ended": now_iso(), "signal": "SIGKILL"}
        steps = [w.step for w in _records(rd) if w.step is not None]
        if steps and max(steps) > (status.get("step") if isinstance(status.get("step"), int) else -1):
            fields["step"] = max(steps)  # the step the training process itself recorded last
        rd.update_status(**fields)
        return "stopped"
    return str(status["state"])


def _records(rd: RunDir) -> list[WorkerRecord]:
    return read_workers(rd.path)


def _worker_refs(rd: RunDir) -> list[ProcRef]:
    """The live training processes recorded in the run's ``worker-<rank>.json`` files."""
    return [ProcRef(w.pid, w.start) for w in _records(rd) if w.pid is not None and w.start is not None and record_alive(w)]


def _kill_all(rd: RunDir, pgid: int | None, procs: list[ProcRef], *, poll_s: float, proc: subprocess.Popen[bytes] | None,
              wait_s: float = 5.0) -> None:
    """SIGKILL the process group and every survivor of the run, then wait (at most ``wait_s``)
    until they are gone, so that the caller's next look sees a stopped run."""
    if pgid and pgid > 0:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    # Processes of the run that appeared after the snapshot (a rank started late) are found by a
    # second scan; their parents may be dead by now, but their environment still names the run.
    targets = {r.pid: r for r in procs}
    for r in run_processes(rd):
        targets.setdefault(r.pid, r)
    for r in targets.values():
        _signal_ref(r, signal.SIGKILL)
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        if proc is not None:
            proc.poll()
        if not run_alive(pgid, targets.values()):
            break
        time.sleep(min(poll_s, 0.05))


def _stop_guest(rd: RunDir, pid: Any, *, grace_s: float, poll_s: float) -> str:
    """Stop a TunetermCallback run, which lives in the user's own process: SIGTERM (the callback
    stops training at the next step end and records ``stopped``), then wait for that record, not
    for the process, which goes on after training (saving the model ...). Only when nothing is
    recorded within ``grace_s`` is that one process SIGKILLed (never its process group: that is
    the user's shell job)."""
    rd.update_status(stop_requested=True)
    alive = pid_alive(pid) if isinstance(pid, int) else False
    if alive:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            alive = False
    deadline = time.monotonic() + grace_s
    while alive and time.monotonic() < deadline:
        state = rd.read_status().get("state")
        if state in TERMINAL_STATES:
            return str(state)
        alive = pid_alive(pid)
        time.sleep(poll_s)
    state = rd.read_status().get("state")
    if state in TERMINAL_STATES:
        return str(state)
    if alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    rd.update_status(state="stopped", error="stopped on request (forced: SIGKILL)" if alive else "stopped on request",
                     ended=now_iso(), signal="SIGKILL" if alive else None)
    return "stopped"


def _is_guest(rd: RunDir) -> bool:
    """True for a run written by TunetermCallback inside the user's own process (launch.json
    ``kind: callback``)."""
    from tuneterm.errors import InputError

    try:
        return rd.read_launch().get("kind") == "callback"
    except InputError:  # no launch.json yet or unreadable: a tuneterm-launched run
        return False
