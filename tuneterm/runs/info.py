"""Run directories seen from outside: resolve ``RUN`` arguments, list runs (``tuneterm runs``).

Each run is described by a :class:`RunInfo` row: its shown state (:func:`tuneterm.runs.status.effective_state`:
``died`` for a live state whose process is gone), progress and the counts of its findings, taken
from ``findings.json`` while that is fresh and otherwise evaluated (:func:`tuneterm.runs.diagnose.diagnose`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tuneterm.engine import load_rules
from tuneterm.engine.model import Rule
from tuneterm.engine.stats import fmt_duration
from tuneterm.errors import InputError
from tuneterm.runs.files import tail_rows
from tuneterm.runs.layout import FINDINGS, LIVE_STATES, METRICS, PROGRESS_FILES, is_run_dir, read_json_object, runs_root
from tuneterm.runs.diagnose import diagnose, has_evidence
from tuneterm.runs.load import load_source
from tuneterm.runs.pipeline import PipelineDir, is_pipeline_dir
from tuneterm.runs.pipeline import effective_state as pipeline_state
from tuneterm.runs.progress import progress_marks
from tuneterm.logs.model import RunStatus
from tuneterm.runs.status import effective_state, parse_status, read_status, supervisor_lost
from tuneterm.runs.workers import WorkerRecord, read_workers
from tuneterm.textsafe import inert_line

__all__ = ["RunInfo", "fmt_duration", "list_runs", "parse_time", "resolve_target", "run_info", "run_or_path"]

_TAIL_BYTES = 64 * 1024


def resolve_target(arg: str, runs_dir: str | os.PathLike[str] | None = None) -> Path:
    """``RUN|LOGFILE`` -> a path: a run name in the runs directory, else a path as given.

    Raises:
        InputError: neither a run in the runs directory nor an existing path.
    """
    root = runs_root(runs_dir)
    if arg not in (".", "..") and not arg.startswith(("/", ".")):
        candidate = root / arg  # a run name, or <pipeline>/<NN-stage>
        if candidate.is_dir():
            return candidate
    p = Path(arg)
    if p.exists():
        return p
    raise InputError(f"no run named {arg!r} in {root} and no such file or directory")


def run_or_path(arg: str, runs_dir: str | os.PathLike[str] | None = None) -> str:
    """``arg`` as a path for commands that take files (``doctor``, ``check``, ``eval``): an
    existing path as given, else a run of that name in the runs directory, else ``arg`` unchanged
    (the command reports it as it always did)."""
    if Path(arg).exists() or "/" in arg or arg in (".", ".."):
        return arg
    candidate = runs_root(runs_dir) / arg
    return str(candidate) if candidate.is_dir() else arg


def parse_time(text: Any) -> float | None:
    """Unix seconds of an ISO-8601 time (``2025-01-31T12:00:00Z``), or ``None``."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _last_metrics(path: Path) -> tuple[int | None, float | None]:
    """(last step, last training loss) from the tail of metrics.jsonl (cheap for huge files)."""
    step: int | None = None
    loss: float | None = None
    for row in reversed(tail_rows(path, _TAIL_BYTES)):
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
    ``evaluated``); ``note`` says what the state alone does not (the supervisor died while the
    training process went on); ``latest`` is the error or warning that fired last (``"error N101
    nan-or-inf"``) and ``worst`` the name of the most severe one.
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
    note: str | None = None
    latest: str | None = None
    worst: str | None = None

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
    f = d / FINDINGS
    try:
        fm = f.stat().st_mtime
    except OSError:
        return None
    for name in PROGRESS_FILES:
        try:
            if (d / name).stat().st_mtime > fm:
                return None
        except OSError:
            continue
    doc = read_json_object(f)
    summary = doc.get("summary") if doc is not None else None
    if not isinstance(summary, dict):
        return None
    found = doc.get("findings") if doc is not None else None
    rows = [(x.get("severity"), x.get("code"), x.get("name"), x.get("first_step")) for x in found if isinstance(x, dict)] if isinstance(found, list) else []
    return {**summary, "_latest": _latest(rows), "_worst": _worst(rows)}


_RANK = {"error": 0, "warning": 1}


def _latest(rows: list[tuple[Any, Any, Any, Any]]) -> str | None:
    """``"error N101 nan-or-inf"``: the error or warning that fired last (by first step)."""
    rows = [r for r in rows if r[0] in _RANK]
    if not rows:
        return None
    sev, code, name, _ = max(rows, key=lambda r: (r[3] if isinstance(r[3], int) else -1, -_RANK[r[0]]))
    return inert_line(f"{sev} {code} {name}", 80)


def _worst(rows: list[tuple[Any, Any, Any, Any]]) -> str | None:
    """The name of the most severe error or warning (the first one of that severity)."""
    rows = sorted((r for r in rows if r[0] in _RANK), key=lambda r: _RANK[r[0]])
    return inert_line(str(rows[0][2]), 60) if rows else None


def run_info(d: Path, rules: tuple[Rule, ...] | None = None, *, evaluate: bool = True) -> RunInfo:
    """Describe the run directory ``d`` (evaluating it when findings.json is absent or stale).

    Args:
        d: a run directory.
        rules: the rules to evaluate with (the ``log`` and ``eval`` rules, loaded on first need
            when ``None``).
        evaluate: False for a quick look (the app's first frame): state, step and loss from the
            files, findings only from a fresh findings.json, no parsing or rule evaluation.
    """
    raw = read_status(d)
    status = parse_status(raw)
    state = effective_state(status, d)
    step, loss = _last_metrics(d / METRICS)
    if isinstance(raw.get("step"), int) and (step is None or raw["step"] > step):
        step = raw["step"]
    workers = read_workers(d)
    for w in workers:  # a rank records its own progress: it may be ahead of an unwritable status.json
        if w.step is not None and (step is None or w.step > step):
            step = w.step
    errors = warnings = None
    source = None
    summary = _findings_fresh(d) if state != "died" else None
    if summary is not None and state == "running":
        # A hung run writes nothing, so its findings.json stays "fresh" for ever; re-evaluate
        # once it has been silent long enough for run-stalled to have a say.
        last, _ = progress_marks(d)
        if last is not None and time.time() - last >= 300:
            summary = None
    latest = worst = None
    if summary is not None:
        errors, warnings, source = summary.get("errors"), summary.get("warnings"), FINDINGS
        latest, worst = summary.get("_latest"), summary.get("_worst")
    if evaluate and (summary is None or not (d / METRICS).is_file()):
        # Evaluate when findings.json is missing or stale; a `watch -- COMMAND` run has no
        # metrics.jsonl to read step and loss from, so its console log is parsed either way.
        try:
            run = load_source(d)
        except InputError:
            run = None
        if run is not None:
            if loss is None and "loss" in run.train:
                loss = run.train["loss"].last()
            if run.last_step is not None and (step is None or run.last_step > step):
                step = run.last_step
            if summary is None and has_evidence(run):
                found = diagnose(run, rules if rules is not None else _default_rules()).findings
                errors = sum(1 for f in found if f.severity.value == "error")
                warnings = sum(1 for f in found if f.severity.value == "warning")
                source = "evaluated"
                rows = [(f.severity.value, f.code, f.name, f.first_step) for f in found]
                latest, worst = _latest(rows), _worst(rows)
    started, ended = raw.get("started"), raw.get("ended")
    t0, t1 = parse_time(started), parse_time(ended)
    if t0 is not None and t1 is None and state in LIVE_STATES:
        t1 = time.time()
    pid = raw.get("pid")
    err = raw.get("error")
    return RunInfo(
        name=d.name,
        path=str(d),
        state=state,
        recorded_state=raw.get("state") if isinstance(raw.get("state"), str) else None,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        step=step,
        max_steps=raw.get("max_steps") if isinstance(raw.get("max_steps"), int) else None,
        last_loss=loss,
        errors=errors,
        warnings=warnings,
        started=started if isinstance(started, str) else None,
        ended=ended if isinstance(ended, str) else None,
        duration_s=(t1 - t0) if t0 is not None and t1 is not None else None,
        error=inert_line(err, 300) if isinstance(err, str) and err else None,
        findings_from=source,
        note=_note(status, state, d, workers),
        latest=latest,
        worst=worst,
    )


def _note(status: RunStatus, state: str, d: Path, workers: list[WorkerRecord]) -> str | None:
    """What ``runs`` adds under a run's row beyond its error: the supervisor's death."""
    if not supervisor_lost(status, d):
        return None
    if state in LIVE_STATES:
        pids = ", ".join(str(w.pid) for w in workers if w.state == "running" and w.pid is not None)
        return f"supervisor (pid {status.pid}) is gone; training process (pid {pids or '?'}) keeps training and records its end"
    when = f" at {status.supervisor_lost}" if status.supervisor_lost else ""
    if state == "died":
        return f"supervisor (pid {status.pid}) died first{when}; then the training process vanished without a record"
    return f"supervisor (pid {status.pid}) died during the run{when}; the training process recorded its end"


def _pipeline_stage_dirs(root: Path) -> list[tuple[Path, str]]:
    """The stage run directories of every pipeline in ``root``, named ``<pipeline>/<NN-stage>``."""
    out: list[tuple[Path, str]] = []
    for p in root.iterdir():
        if is_pipeline_dir(p):
            out += [(s, f"{p.name}/{s.name}") for s in sorted(p.iterdir()) if is_run_dir(s)]
    return out


def pipeline_info(p: Path) -> RunInfo:
    """A pipeline directory as one row of ``tuneterm runs``: its state (``gated`` when a gate
    stopped it), ``step`` = stages passed of ``max_steps`` = stages, and its error line."""
    data = PipelineDir(p).read()
    stages = [s for s in data.get("stages") or [] if isinstance(s, dict)]
    t0, t1 = parse_time(data.get("started")), parse_time(data.get("ended"))
    state = pipeline_state(data)
    if t1 is None and state in LIVE_STATES:
        t1 = time.time()
    err = data.get("error")
    pid = data.get("pid")
    return RunInfo(
        name=p.name, path=str(p), state=state, recorded_state=data.get("state"),
        pid=pid if isinstance(pid, int) else None,
        step=sum(s.get("state") == "passed" for s in stages), max_steps=len(stages), last_loss=None,
        errors=None, warnings=None, started=data.get("started"), ended=data.get("ended"),
        duration_s=(t1 - t0) if t0 is not None and t1 is not None else None,
        error=inert_line(err, 300) if isinstance(err, str) and err else None, findings_from=None,
    )


def _default_rules() -> tuple[Rule, ...]:
    return tuple(load_rules(scopes=["log", "eval"]))


def list_runs(runs_dir: str | os.PathLike[str] | None = None, *, evaluate: bool = True) -> list[RunInfo]:
    """Every run directory in the runs directory, newest start first (``evaluate``: see
    :func:`run_info`).

    Raises:
        InputError: the runs directory does not exist or cannot be listed.
    """
    root = runs_root(runs_dir)
    if not root.is_dir():
        raise InputError(f"no runs directory {root} (set --runs-dir or TUNETERM_RUNS_DIR)")
    try:
        dirs = [(p, p.name) for p in root.iterdir() if is_run_dir(p)]
        dirs += _pipeline_stage_dirs(root)
    except OSError as exc:
        raise InputError(f"cannot list {root}: {exc.strerror or exc}") from None
    rules = _default_rules() if dirs and evaluate else None
    infos = [run_info(d, rules, evaluate=evaluate) for d, _ in dirs]
    infos = [i if shown == i.name else dataclasses.replace(i, name=shown) for i, (_, shown) in zip(infos, dirs)]
    infos += [pipeline_info(p) for p in root.iterdir() if is_pipeline_dir(p)]
    infos.sort(key=lambda r: (parse_time(r.started) or 0.0, r.name), reverse=True)
    return infos
