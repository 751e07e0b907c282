"""A run directory's ``status.json`` as a typed :class:`~tuneterm.logs.model.RunStatus`, and the
state to show for it.

A run's *recorded* state is ``status.json``'s ``state``. Its *shown* state is that, except that a
run recorded as ``starting``/``running`` whose process (``status.json: pid``, the supervisor) no
longer exists on this host is ``died``: it was killed too hard to record anything (the whole
process group SIGKILLed, a reboot). A run on another host (``status.json: host``) cannot be
checked and keeps its recorded state, marked with ``?``.

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
from tuneterm.runs.processes import pid_alive

__all__ = ["RunStatus", "effective_state", "load_status", "mark_died", "parse_status", "read_status", "same_host"]


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def parse_status(raw: Mapping[str, Any]) -> RunStatus:
    """The typed form of a status.json document; a field of the wrong type is unknown (None)."""
    return RunStatus(
        state=_str(raw.get("state")),
        pid=_int(raw.get("pid")),
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


def effective_state(status: RunStatus) -> str:
    """The state to show: the recorded one, ``died`` for a live state whose pid is gone, or
    ``<state>?`` for a live run on another host."""
    state = status.recorded_state if status.state == "died" and status.recorded_state else status.state
    state = state or "unknown"
    if state not in LIVE_STATES:
        return state
    if not same_host(status):
        return f"{state}?"
    if status.pid is None:
        return state  # the launcher has not recorded the supervisor yet
    return state if pid_alive(status.pid) else "died"


def mark_died(status: RunStatus, run_dir: Path) -> RunStatus:
    """``status`` with state ``died`` when :func:`effective_state` says its process is gone
    (``recorded_state`` keeps what status.json said, ``last_update`` when it last changed), for the
    ``run-vanished`` rule; else ``status`` unchanged."""
    if status.state == "died" or effective_state(status) != "died":
        return status
    try:
        mtime = os.stat(run_dir / STATUS).st_mtime
        updated: str | None = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except OSError:
        updated = None
    return replace(status, state="died", recorded_state=status.state, last_update=updated)
