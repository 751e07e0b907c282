"""A run directory's ``status.json`` as a typed :class:`~tuneterm.logs.model.RunStatus`, and the
state to show for it.

A run's *recorded* state is ``status.json``'s ``state``. Its *shown* state is derived from that and
from the processes that matter (:func:`effective_state`): a run recorded as ``starting``/``running``
stays live while its supervisor (``status.json: pid``, pinned by ``pid_start``) *or* any of its
training processes (``worker-<rank>.json``, :mod:`tuneterm.runs.workers`) runs on this host; when
all of them are gone without a recorded end it is ``died`` (the whole process group SIGKILLed, a
reboot). A run on another host (``status.json: host``) cannot be checked and keeps its recorded
state, marked with ``?``: no local pid is ever used to call it dead or alive.

>>> effective_state(parse_status({"state": "finished"}))
'finished'
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneterm.logs.model import RunStatus
from tuneterm.runs.layout import LIVE_STATES, STATUS, read_json_object
from tuneterm.runs.processes import same_process_alive
from tuneterm.runs.workers import alive_workers

__all__ = [
    "RunStatus", "effective_state", "load_status", "mark_died", "parse_status", "read_status", "same_host",
    "supervisor_alive", "supervisor_lost",
]


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def parse_status(raw: Mapping[str, Any]) -> RunStatus:
    """The typed form of a status.json document; a field of the wrong type is unknown (None)."""
    return RunStatus(
        state=_str(raw.get("state")),
        pid=_int(raw.get("pid")),
        pid_start=_int(raw.get("pid_start")),
        supervisor_lost=_str(raw.get("supervisor_lost")),
        worker_pid=_int(raw.get("worker_pid")),
        step=_int(raw.get("step")),
        max_steps=_int(raw.get("max_steps")),
        started=_str(raw.get("started")),
        ended=_str(raw.get("ended")),
        exit_code=_int(raw.get("exit_code")),
        signal=_str(raw.get("signal")),
        error=_str(raw.get("error")),
        error_kind=_str(raw.get("error_kind")),
        stop_reason=_str(raw.get("stop_reason")),
        host=_str(raw.get("host")),
        trainer=_str(raw.get("trainer")),
        method=_str(raw.get("method")),
    )


def read_status(run_dir: Path) -> dict[str, Any]:
    """status.json as written (``{}`` when absent or unreadable)."""
    return read_json_object(run_dir / STATUS) or {}


def load_status(run_dir: Path) -> RunStatus | None:
    """status.json as a :class:`RunStatus`, or None when there is none (yet)."""
    raw = read_json_object(run_dir / STATUS)
    return None if raw is None else parse_status(raw)


def same_host(status: RunStatus) -> bool:
    """True when the run was recorded on this machine (or the host is unknown)."""
    return not status.host or status.host == socket.gethostname()


def supervisor_alive(status: RunStatus) -> bool:
    """True while the supervisor recorded in ``status`` (``pid``, pinned by ``pid_start`` when
    recorded) runs on this machine."""
    return same_process_alive(status.pid, status.pid_start)


def _workers_alive(run_dir: Path | None) -> bool:
    return run_dir is not None and bool(alive_workers(run_dir))


def effective_state(status: RunStatus, run_dir: Path | None = None) -> str:
    """The state to show, derived from the recorded one *and* the processes of the run.

    * a terminal state (finished, failed, stopped) is shown as recorded;
    * a live state on another host is ``<state>?``: its processes cannot be checked from here;
    * a live state is kept while the supervisor runs, or while any training process recorded in
      ``run_dir``'s ``worker-<rank>.json`` runs (the supervisor may have been killed while training
      goes on: the run is then ``running``);
    * otherwise the run ``died``: everything is gone and nothing recorded an end.

    A status.json without a state (unreadable, torn by a foreign writer) is ``unknown``, or
    ``running`` while a training process of the run is alive.
    """
    state = status.recorded_state if status.state == "died" and status.recorded_state else status.state
    if not state:
        return "running" if _workers_alive(run_dir) else "unknown"
    if state not in LIVE_STATES:
        return state
    if not same_host(status):
        return f"{state}?"
    if supervisor_alive(status):
        return state
    if _workers_alive(run_dir):
        return "running"
    if status.pid is None and state == "starting":
        return state  # the launcher has not recorded the supervisor yet
    return "died"


def supervisor_lost(status: RunStatus, run_dir: Path | None = None) -> bool:
    """True when the run's supervisor is known to have died before the run ended: a training
    process recorded it (``supervisor_lost``), or the run is live, the supervisor is gone and a
    training process still runs."""
    if status.supervisor_lost:
        return True
    if status.state not in LIVE_STATES or not same_host(status) or status.pid is None:
        return False
    return not supervisor_alive(status) and _workers_alive(run_dir)


def mark_died(status: RunStatus, run_dir: Path) -> RunStatus:
    """``status`` with state ``died`` when :func:`effective_state` says its process is gone
    (``recorded_state`` keeps what status.json said, ``last_update`` when it last changed), for the
    ``run-vanished`` rule; else ``status`` unchanged."""
    if status.state == "died" or effective_state(status, run_dir) != "died":
        return status
    try:
        mtime = os.stat(run_dir / STATUS).st_mtime
        updated: str | None = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except OSError:
        updated = None
    return replace(status, state="died", recorded_state=status.state, last_update=updated)
