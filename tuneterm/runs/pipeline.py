"""The pipeline directory: ``runs/<pipeline>/`` with ``pipeline.json`` and one run directory per stage.

Layout::

    runs/<pipeline>/
      pipeline.json      the pipeline's state (below), replaced atomically
      pipeline.yaml      the pipeline as launched, every stage's TRL config inline (self-contained,
                         so --resume and doctor need nothing outside the directory)
      pipeline.log       the driver's own output: stage headers, progress lines, gate verdicts
      01-sft/            a normal run directory (config.yaml, launch.json, status.json, ...)
      02-dpo/
      .attempts/         earlier attempts of a stage that --resume ran again (01-sft-1/ ...)

``pipeline.json``::

    kind        "pipeline"
    name, source (the pipeline file given), host, started, ended
    state       "starting" | "running" | "finished" (every gate passed) | "gated" (a gate failed)
                | "failed" (a stage could not run, or the driver failed) | "stopped"
    pid, pgid   the driver (``python -m tuneterm.train.pipeline_driver DIR``), a session leader; SIGTERM to
                it stops the current stage and the pipeline
    current     index of the stage running now (null between stages and at the end)
    error       one line when the pipeline did not finish
    stop_requested
    stages      one object per stage: index, name, dir, trainer, method, from ("base"|"previous"),
                handover ("base"|"model"|"merged"|"adapter": what the stage starts from), model (the
                path or name it started from, once known), state ("pending" | "running" | "passed"
                | "gate-failed" | "failed" | "stopped"), started, ended, fingerprint, attempts
                (directories of earlier attempts), gate (null until checked): {"passed", "fail_on",
                "reasons": [str], "findings": [{"code", "name", "severity", "message", "fixes"}],
                "prescription": null | the advisor's {"changes", "steps", ...} for the stage,
                "eval": null | {"metric", "against", "against_model", "against_value",
                "stage_value", "improvement", "min_improvement", "passed", "report"}}

Part of the run-directory layer: json and the file system only; the driver that writes it is
:mod:`tuneterm.train.pipeline_driver`.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneterm.runs.processes import pid_alive
from tuneterm.runs.writer import now_iso, write_json_atomic

PIPELINE_JSON = "pipeline.json"
PIPELINE_YAML = "pipeline.yaml"
PIPELINE_LOG = "pipeline.log"
ATTEMPTS = ".attempts"
TERMINAL = frozenset({"finished", "gated", "failed", "stopped"})


def is_pipeline_dir(path: Path) -> bool:
    """True for a pipeline directory (holds ``pipeline.json``)."""
    return path.is_dir() and (path / PIPELINE_JSON).is_file()


@dataclass(frozen=True, slots=True)
class PipelineDir:
    """Paths of one pipeline directory and the helpers that read and update ``pipeline.json``."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def state_file(self) -> Path:
        return self.path / PIPELINE_JSON

    @property
    def spec_file(self) -> Path:
        return self.path / PIPELINE_YAML

    @property
    def log(self) -> Path:
        return self.path / PIPELINE_LOG

    def stage_dir(self, dirname: str) -> Path:
        return self.path / dirname

    def read(self) -> dict[str, Any]:
        """pipeline.json as a dict (``{}`` when absent or unreadable)."""
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, data: Mapping[str, Any]) -> None:
        write_json_atomic(self.state_file, data)

    def update(self, **fields: Any) -> dict[str, Any]:
        """Merge top-level ``fields`` into pipeline.json; returns the new document."""
        data = self.read()
        data.update(fields)
        self.write(data)
        return data

    def update_stage(self, index: int, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into stage ``index``'s record (1-based); returns the new document."""
        data = self.read()
        for rec in data.get("stages") or []:
            if rec.get("index") == index:
                rec.update(fields)
        self.write(data)
        return data

    def stage(self, index: int) -> dict[str, Any]:
        """Stage ``index``'s record (``{}`` if unknown)."""
        return next((r for r in self.read().get("stages") or [] if r.get("index") == index), {})


def initial_state(name: str, source: str, stages: list[dict[str, Any]]) -> dict[str, Any]:
    """The first pipeline.json, written by the launcher before the driver starts."""
    return {
        "kind": "pipeline",
        "name": name,
        "source": source,
        "state": "starting",
        "pid": None,
        "pgid": None,
        "host": socket.gethostname(),
        "started": now_iso(),
        "ended": None,
        "current": None,
        "error": None,
        "stop_requested": False,
        "stages": stages,
    }


def effective_state(data: Mapping[str, Any]) -> str:
    """The state to show: ``died`` when a non-terminal pipeline's driver is gone on this host."""
    state = str(data.get("state") or "unknown")
    if state in TERMINAL:
        return state
    if data.get("host") not in (None, socket.gethostname()):
        return f"{state}?"
    pid = data.get("pid")
    if isinstance(pid, int) and not pid_alive(pid):
        return "died"
    return state


def current_stage_dir(pd: PipelineDir) -> Path | None:
    """The run directory to show for the pipeline: the running stage, else the last one started."""
    data = pd.read()
    stages = [r for r in data.get("stages") or [] if isinstance(r, dict)]
    cur = data.get("current")
    for rec in stages:
        if rec.get("index") == cur and (pd.path / str(rec.get("dir"))).is_dir():
            return pd.path / str(rec["dir"])
    started = [pd.path / str(r.get("dir")) for r in stages if (pd.path / str(r.get("dir"))).is_dir()]
    return started[-1] if started else None


def stage_dirs(pd: PipelineDir) -> list[Path]:
    """The stage run directories that exist, in stage order."""
    return [pd.path / str(r.get("dir")) for r in pd.read().get("stages") or []
            if isinstance(r, dict) and (pd.path / str(r.get("dir"))).is_dir()]


def move_to_attempts(pd: PipelineDir, dirname: str) -> str | None:
    """Move an earlier attempt of stage ``dirname`` to ``.attempts/<dirname>-N``; returns its new
    path relative to the pipeline directory, or None when there was none."""
    src = pd.path / dirname
    if not src.exists():
        return None
    root = pd.path / ATTEMPTS
    root.mkdir(exist_ok=True)
    for n in range(1, 1000):
        dst = root / f"{dirname}-{n}"
        if not dst.exists():
            os.rename(src, dst)
            return str(dst.relative_to(pd.path))
    raise OSError(f"too many attempts of {dirname}")


def expand_pipelines(paths: list[str]) -> list[str]:
    """``paths`` with every pipeline directory replaced by its stage run directories (in order), so
    ``tuneterm doctor runs/<pipeline>`` diagnoses each stage."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if is_pipeline_dir(path):
            out += [str(d) for d in stage_dirs(PipelineDir(path))] or [p]
        else:
            out.append(p)
    return out
