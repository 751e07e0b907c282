"""Control a running run from outside: is it alive, stop it (graceful, then forced).

The stop protocol (also used by ``--stop-on error`` and, later, ``tuneterm stop``):

1. SIGTERM to the supervisor (``status.json: pid``). It records ``stop_requested`` and forwards the
   signal to the training process, which ends training at the next step end (all ranks agree on
   the step) and exits; the supervisor then records ``state: stopped``.
2. If the run is still alive after ``grace_s`` seconds, SIGKILL to the whole process group
   (``pgid``): supervisor, accelerate launcher and every rank. The state is then written here.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from tuneterm.train.rundir import TERMINAL_STATES, RunDir, now_iso


def pid_alive(pid: int | None) -> bool:
    """True when a process ``pid`` exists (a zombie counts as alive until reaped)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int | None) -> bool:
    """True when any process of process group ``pgid`` exists."""
    if not pgid or pgid <= 0:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_run(rd: RunDir, *, grace_s: float = 30.0, poll_s: float = 0.2, proc: Any = None) -> str:
    """Stop the run in ``rd`` (see the module docstring); returns the final state.

    Args:
        rd: the run directory.
        grace_s: seconds to wait after SIGTERM before SIGKILL to the process group.
        poll_s: polling interval.
        proc: the supervisor's ``Popen`` when the caller is its parent (the launcher), so the
            exited supervisor is reaped instead of lingering as a zombie that looks alive.

    Returns the state already recorded if the run had ended. Never raises for a process that
    vanished in the meantime.
    """
    status = rd.read_status()
    if status.get("state") in TERMINAL_STATES:
        return str(status["state"])
    pid, pgid = status.get("pid"), status.get("pgid") or status.get("pid")
    rd.update_status(stop_requested=True)
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()
        state = rd.read_status().get("state")
        if state in TERMINAL_STATES and not group_alive(pgid):
            return str(state)
        if not group_alive(pgid):
            break
        time.sleep(poll_s)
    if group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(poll_s)
        if proc is not None:
            proc.poll()
    status = rd.read_status()
    if status.get("state") not in TERMINAL_STATES:
        rd.update_status(state="stopped", error="stopped on request (forced: SIGKILL)", ended=now_iso(), signal="SIGKILL")
        return "stopped"
    return str(status["state"])
