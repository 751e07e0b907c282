"""Run directories seen from outside: resolve ``RUN`` arguments, list runs, tell dead from alive.

A run's *recorded* state is ``status.json``'s ``state``. Its *shown* state is that, except that a
run recorded as ``starting``/``running`` whose process (``status.json: pid``, the supervisor) no
longer exists on this host is ``died``: it was killed too hard to record anything (the whole
process group SIGKILLed, a reboot). A run on another host (``status.json: host``) cannot be
checked and keeps its recorded state, marked with ``?``.

>>> effective_state({"state": "finished"})
'finished'
"""

from __future__ import annotations

import dataclasses

import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneterm.errors import InputError
from tuneterm.textsafe import inert_line

LIVE_STATES = ("starting", "running")
_TAIL_BYTES = 64 * 1024


def _pid_alive(pid: Any) -> bool:
    from tuneterm.train.control import pid_alive

    return pid_alive(pid) if isinstance(pid, int) and not isinstance(pid, bool) else False


def same_host(status: Mapping[str, Any]) -> bool:
    """True when the run was recorded on this machine (or the host is unknown)."""
    host = status.get("host")
    return not isinstance(host, str) or not host or host == socket.gethostname()


def effective_state(status: Mapping[str, Any]) -> str:
    """The state to show: the recorded one, ``died`` for a live state whose pid is gone, or
    ``<state>?`` for a live run on another host."""
    state = status.get("state")
    state = state if isinstance(state, str) and state else "unknown"
    if state not in LIVE_STATES:
        return state
    if not same_host(status):
        return f"{state}?"
    pid = status.get("pid")
    if pid is None:
        return state  # the launcher has not recorded the supervisor yet
    return state if _pid_alive(pid) else "died"


def read_status(run_dir: Path) -> dict[str, Any]:
    """status.json as a dict (``{}`` when absent or unreadable)."""
    try:
        with open(run_dir / "status.json", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_run_dir(path: Path) -> bool:
    """True for a tuneterm run directory (status.json or metrics.jsonl inside)."""
    return path.is_dir() and ((path / "status.json").is_file() or (path / "metrics.jsonl").is_file())


def resolve_target(arg: str, runs_dir: str | os.PathLike[str] | None = None) -> Path:
    """``RUN|LOGFILE`` -> a path: a run name in the runs directory, else a path as given.

    Raises:
        InputError: neither a run in the runs directory nor an existing path.
    """
    from tuneterm.train.rundir import runs_root

    root = runs_root(runs_dir)
    if arg not in (".", "..") and not arg.startswith(("/", ".")):
        candidate = root / arg  # a run name, or <pipeline>/<NN-stage>
        if candidate.is_dir():
            return candidate
    p = Path(arg)
    if p.exists():
        return p
    raise InputError(f"no run named {arg!r} in {root} and no such file or directory")


def mark_died(run: Any, status: Mapping[str, Any]) -> None:
    """Record on a loaded run that its process is gone (``facts.extra``: state ``died``) when
    :func:`effective_state` says so, for the ``run-vanished`` rule."""
    if effective_state(status) != "died":
        return
    extra = run.facts.extra
    extra["recorded_state"] = status.get("state")
    extra["state"] = "died"
    extra["pid"] = status.get("pid")
    try:
        mtime = os.stat(Path(run.source) / "status.json").st_mtime
        extra["last_update"] = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except OSError:
        pass


def parse_time(text: Any) -> float | None:
    """Unix seconds of an ISO-8601 time (``2025-01-31T12:00:00Z``), or ``None``."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def fmt_duration(seconds: float | None) -> str:
    """``42s``, ``5m07s``, ``3h12m``, ``2d04h``; ``-`` when unknown.

    >>> fmt_duration(42), fmt_duration(307), fmt_duration(11520), fmt_duration(None)
    ('42s', '5m07s', '3h12m', '-')
    """
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _last_metrics(path: Path) -> tuple[int | None, float | None]:
    """(last step, last training loss) from the tail of metrics.jsonl (cheap for huge files)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - _TAIL_BYTES))
            lines = fh.read().split(b"\n")
    except OSError:
        return None, None
    step: int | None = None
    loss: float | None = None
    for raw in reversed(lines):
        try:
            row = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        s = row.get("step")
        if step is None and isinstance(s, int) and not isinstance(s, bool):
            step = s
        v = row.get("loss")
        if loss is None and isinstance(v, (int, float)) and not isinstance(v, bool):
            loss = float(v)
        if step is not None and loss is not None:
            break
    return step, loss


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One row of ``tuneterm runs``.

    ``errors``/``warnings`` are ``None`` when the run could not be evaluated (no metrics yet and
    no crash); ``findings_from`` says where the counts come from (``findings.json`` or
    ``evaluated``).
    """

    name: str
    path: str
    state: str
    recorded_state: str | None
    pid: int | None
    step: int | None
    max_steps: int | None
    last_loss: float | None
    errors: int | None
    warnings: int | None
    started: str | None
    ended: str | None
    duration_s: float | None
    error: str | None
    findings_from: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``tuneterm runs --json``)."""
        d = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        if d["last_loss"] is not None and d["last_loss"] != d["last_loss"]:
            d["last_loss"] = "nan"
        elif isinstance(d["last_loss"], float) and d["last_loss"] in (float("inf"), float("-inf")):
            d["last_loss"] = "inf" if d["last_loss"] > 0 else "-inf"
        return d


def _findings_fresh(d: Path) -> dict[str, Any] | None:
    """findings.json's summary when it is newer than everything it was computed from."""
    f = d / "findings.json"
    try:
        fm = f.stat().st_mtime
    except OSError:
        return None
    for name in ("metrics.jsonl", "status.json", "stderr.log", "stdout.log", "samples.jsonl"):
        try:
            if (d / name).stat().st_mtime > fm:
                return None
        except OSError:
            continue
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    summary = doc.get("summary") if isinstance(doc, dict) else None
    return summary if isinstance(summary, dict) else None


def run_info(d: Path, rules: Any = None) -> RunInfo:
    """Describe the run directory ``d`` (evaluating it when findings.json is absent or stale).

    Args:
        d: a run directory.
        rules: the rule set to evaluate with (loaded on first need when ``None``).
    """
    status = read_status(d)
    state = effective_state(status)
    step, loss = _last_metrics(d / "metrics.jsonl")
    if isinstance(status.get("step"), int) and (step is None or status["step"] > step):
        step = status["step"]
    errors = warnings = None
    source = None
    summary = _findings_fresh(d) if state != "died" else None
    if summary is not None and state == "running":
        from tuneterm.watch.stall import progress_marks

        # A hung run writes nothing, so its findings.json stays "fresh" for ever; re-evaluate
        # once it has been silent long enough for run-stalled to have a say.
        last, _ = progress_marks(d)
        if last is not None and time.time() - last >= 300:
            summary = None
    if summary is not None:
        errors, warnings, source = summary.get("errors"), summary.get("warnings"), "findings.json"
    if summary is None or not (d / "metrics.jsonl").is_file():
        # Evaluate when findings.json is missing or stale; a `watch -- COMMAND` run has no
        # metrics.jsonl to read step and loss from, so its console log is parsed either way.
        from tuneterm.watch.live import evaluate_all, load_checked

        try:
            run = load_checked(d, status)
        except InputError:
            run = None
        if run is not None:
            if loss is None and "loss" in run.train:
                loss = run.train["loss"].last()
            if run.last_step is not None and (step is None or run.last_step > step):
                step = run.last_step
            if summary is None and (run.has_metrics() or run.events or run.facts.extra.get("state") == "died"):
                if rules is None:
                    from tuneterm.engine import load_rules

                    rules = load_rules(scopes=["log", "eval"])
                found = evaluate_all(run, rules)
                errors = sum(1 for f in found if f.severity.value == "error")
                warnings = sum(1 for f in found if f.severity.value == "warning")
                source = "evaluated"
    started, ended = status.get("started"), status.get("ended")
    t0, t1 = parse_time(started), parse_time(ended)
    if t0 is not None and t1 is None and state in LIVE_STATES:
        t1 = time.time()
    pid = status.get("pid")
    err = status.get("error")
    return RunInfo(
        name=d.name,
        path=str(d),
        state=state,
        recorded_state=status.get("state") if isinstance(status.get("state"), str) else None,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        step=step,
        max_steps=status.get("max_steps") if isinstance(status.get("max_steps"), int) else None,
        last_loss=loss,
        errors=errors,
        warnings=warnings,
        started=started if isinstance(started, str) else None,
        ended=ended if isinstance(ended, str) else None,
        duration_s=(t1 - t0) if t0 is not None and t1 is not None else None,
        error=inert_line(err, 300) if isinstance(err, str) and err else None,
        findings_from=source,
    )


def _pipeline_stage_dirs(root: Path) -> list[tuple[Path, str]]:
    """The stage run directories of every pipeline in ``root``, named ``<pipeline>/<NN-stage>``."""
    out: list[tuple[Path, str]] = []
    for p in root.iterdir():
        if p.is_dir() and (p / "pipeline.json").is_file():
            out += [(s, f"{p.name}/{s.name}") for s in sorted(p.iterdir()) if is_run_dir(s)]
    return out


def pipeline_info(p: Path) -> RunInfo:
    """A pipeline directory as one row of ``tuneterm runs``: its state (``gated`` when a gate
    stopped it), ``step`` = stages passed of ``max_steps`` = stages, and its error line."""
    try:
        data = json.loads((p / "pipeline.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data = data if isinstance(data, dict) else {}
    stages = [s for s in data.get("stages") or [] if isinstance(s, dict)]
    t0, t1 = parse_time(data.get("started")), parse_time(data.get("ended"))
    state = effective_state(data)
    if t1 is None and state in LIVE_STATES:
        t1 = time.time()
    err = data.get("error")
    return RunInfo(
        name=p.name, path=str(p), state=state, recorded_state=data.get("state"), pid=data.get("pid"),
        step=sum(s.get("state") == "passed" for s in stages), max_steps=len(stages), last_loss=None,
        errors=None, warnings=None, started=data.get("started"), ended=data.get("ended"),
        duration_s=(t1 - t0) if t0 is not None and t1 is not None else None,
        error=inert_line(err, 300) if isinstance(err, str) and err else None, findings_from=None,
    )


def list_runs(runs_dir: str | os.PathLike[str] | None = None) -> list[RunInfo]:
    """Every run directory in the runs directory, newest start first.

    Raises:
        InputError: the runs directory does not exist or cannot be listed.
    """
    from tuneterm.train.rundir import runs_root

    root = runs_root(runs_dir)
    if not root.is_dir():
        raise InputError(f"no runs directory {root} (set --runs-dir or TUNETERM_RUNS_DIR)")
    try:
        dirs = [(p, p.name) for p in root.iterdir() if is_run_dir(p)]
        dirs += _pipeline_stage_dirs(root)
    except OSError as exc:
        raise InputError(f"cannot list {root}: {exc.strerror or exc}") from None
    rules = None
    infos: list[RunInfo] = []
    for d, shown in dirs:
        if rules is None:
            from tuneterm.engine import load_rules

            rules = load_rules(scopes=["log", "eval"])
        info = run_info(d, rules)
        infos.append(info if shown == info.name else dataclasses.replace(info, name=shown))
    infos += [pipeline_info(p) for p in root.iterdir() if p.is_dir() and (p / "pipeline.json").is_file()]
    infos.sort(key=lambda r: (parse_time(r.started) or 0.0, r.name), reverse=True)
    return infos
