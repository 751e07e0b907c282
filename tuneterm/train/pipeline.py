"""Multi-stage pipelines: run TRL stages one after another, each from the previous one's output,
with a health gate between them.

``tuneterm train PIPELINE.yaml`` (:mod:`tuneterm.cli.train`) validates every stage
(:func:`prepare`), creates the pipeline directory and starts the **driver**, ``python -m
tuneterm.train.pipeline_driver DIR``, detached like a run's supervisor (its own session, stdin from
/dev/null, output to ``pipeline.log``), so the whole pipeline survives the terminal. The driver
(:func:`tuneterm.train.pipeline_driver.drive`) runs each unfinished stage as a normal run (:func:`tuneterm.train.launch.launch`
into ``<pipeline>/<NN-stage>/``, followed with :func:`tuneterm.train.follow.follow`, stopped at its
first error finding), hands its model to the next stage (:mod:`tuneterm.train.stage_model`), and
checks the stage's gate (:mod:`tuneterm.train.pipeline_gate`). A failed gate ends the pipeline
``gated`` with the findings and their fixes in ``pipeline.log`` and ``pipeline.json``; the next
stage never starts.

``--resume`` (:func:`resume`) continues a pipeline at its first stage that has not passed its gate
(or whose definition changed since it passed); the earlier attempt of a stage that runs again is
kept under ``.attempts/``. Stopping (:func:`stop_pipeline`, ``tuneterm stop``): SIGTERM to the
driver, which forwards it to the running stage's supervisor (the run stops gracefully at a step
end) and ends the pipeline ``stopped``; if the driver is gone, the stage is stopped directly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from tuneterm.errors import InputError
from tuneterm.train.config import TrainConfig, infer_trainer, validate
from tuneterm.preflight.pipeline_spec import (
    PipelineSpec,
    StageSpec,
    check_handover,
    handover,
    load_pipeline,
    starting_model,
)
from tuneterm.runs.pipeline import (
    TERMINAL,
    PipelineDir,
    effective_state,
    initial_state,
    is_pipeline_dir,
)
from tuneterm.runs.layout import RunDir, create_run_dir, runs_root
from tuneterm.runs.writer import now_iso
from tuneterm.textsafe import inert


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated pipeline: the spec and each stage's config as it will be checked before launch
    (``from: previous`` stages carry the chain's starting model until the real one exists)."""

    spec: PipelineSpec
    configs: tuple[TrainConfig, ...]


@dataclass(frozen=True, slots=True)
class Started:
    """A started driver: the pipeline directory and the driver process."""

    pipeline: PipelineDir
    proc: subprocess.Popen[bytes]
    log_offset: int = 0


def stage_config(spec: PipelineSpec, stage: StageSpec, model: str | None = None) -> TrainConfig:
    """Validate ``stage``'s TRL config against the schema, with ``model`` as its model (default:
    its own, or the chain's starting model for a ``from: previous`` stage).

    Raises:
        ConfigError: one line naming the stage and the key.
    """
    values = dict(stage.values)
    values["model_name_or_path"] = model or starting_model(spec, stage)
    where = f"{spec.source} stage {stage.index} ({stage.name})"
    trainer = infer_trainer(values, stage.trainer)
    return validate(values, trainer, source=where, env=stage.env)


def prepare(path: str | Path) -> Prepared:
    """Read a pipeline file and validate every stage (no process starts).

    Raises:
        InputError / ConfigError: the first problem, one line.
    """
    spec = load_pipeline(path)
    check_handover(spec)
    return Prepared(spec, tuple(stage_config(spec, s) for s in spec.stages))


def _stage_record(spec: PipelineSpec, stage: StageSpec, cfg: TrainConfig) -> dict[str, Any]:
    return {
        "index": stage.index, "name": stage.name, "dir": stage.dirname, "trainer": cfg.trainer,
        "method": cfg.method, "from": "previous" if stage.from_previous else "base",
        "handover": handover(spec, stage), "merge": stage.merge if stage.from_previous else None,
        "model": None if stage.from_previous else stage.values.get("model_name_or_path"),
        "state": "pending", "started": None, "ended": None, "fingerprint": stage.fingerprint(cfg.trainer),
        "attempts": [], "gate": None,
    }


def _spec_yaml(spec: PipelineSpec, configs: tuple[TrainConfig, ...]) -> str:
    """The pipeline as launched, every stage's config inline, for ``pipeline.yaml``."""
    stages = []
    for stage, cfg in zip(spec.stages, configs):
        values = dict(stage.values)
        if stage.env:
            values["env"] = dict(stage.env)
        gate: dict[str, Any] = {"fail_on": stage.gate.fail_on}
        if stage.gate.eval is not None:
            gate["eval"] = {k: getattr(stage.gate.eval, k) for k in stage.gate.eval.__slots__}
        entry: dict[str, Any] = {"name": stage.name, "trainer": cfg.trainer}
        if stage.from_previous:
            entry.update({"from": "previous", "merge": stage.merge})
        entry["config"] = values
        entry["gate"] = gate
        if stage.data.templates:
            t = stage.data.templates
            entry["data"] = {"templates": "random" if t == ("random",) else list(t), "template_seed": stage.data.template_seed}
        stages.append(entry)
    head = (f"# tuneterm pipeline {spec.name}, as launched from {spec.source}\n"
            "# every stage's TRL config is inline; `tuneterm train DIR --resume` reads this file\n")
    return head + yaml.safe_dump({"name": spec.name, "stages": stages}, sort_keys=False, allow_unicode=True)


def _start_driver(pd: PipelineDir) -> Started:
    offset = pd.log.stat().st_size if pd.log.exists() else 0
    cmd = [sys.executable, "-m", "tuneterm.train.pipeline_driver", str(pd.path.resolve())]
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    with open(pd.log, "ab") as out:
        proc = subprocess.Popen(  # fixed argv, no shell
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, close_fds=True,
            start_new_session=True, cwd=os.getcwd(), env=env,
        )
    pd.update(pid=proc.pid, pgid=proc.pid)
    return Started(pd, proc, offset)


def start(
    prepared: Prepared,
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    options: dict[str, Any] | None = None,
) -> Started:
    """Create ``<runs-dir>/<name>/`` (``pipeline.json``, ``pipeline.yaml``) and start the driver.

    Args:
        prepared: the validated pipeline (:func:`prepare`).
        runs_dir: where runs live; name: the pipeline directory's name (default
            ``<pipeline name>-<date>-<time>``).
        options: launch options every stage gets (``gpus``, ``accelerate_config``,
            ``sample_every``), recorded in pipeline.json.

    Raises:
        InputError: the directory cannot be created or the name is taken.
    """
    return _start_driver(create(prepared, runs_dir=runs_dir, name=name, options=options))


def create(
    prepared: Prepared,
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    options: dict[str, Any] | None = None,
) -> PipelineDir:
    """Create the pipeline directory :func:`start` starts the driver in: ``pipeline.yaml`` and the
    first ``pipeline.json`` (state ``starting``, every stage ``pending``); arguments as there.

    Raises:
        InputError: the directory cannot be created or the name is taken.
    """
    spec = prepared.spec
    rd = create_run_dir(runs_root(runs_dir), name, spec.name)
    pd = PipelineDir(rd.path)
    pd.spec_file.write_text(_spec_yaml(spec, prepared.configs), encoding="utf-8")
    stages = [_stage_record(spec, s, c) for s, c in zip(spec.stages, prepared.configs)]
    state = initial_state(spec.name, str(Path(spec.source).resolve()), stages)
    state["options"] = dict(options or {})
    pd.write(state)
    return pd


def find_pipeline(arg: str, runs_dir: str | os.PathLike[str] | None, name: str | None) -> PipelineDir:
    """The pipeline directory ``--resume`` means: ``arg`` itself (a directory or a name in the runs
    directory), ``--name`` in the runs directory, or the newest pipeline started from file ``arg``.

    Raises:
        InputError: none found.
    """
    root = runs_root(runs_dir)
    for cand in ([root / name] if name else []) + [Path(arg), root / arg]:
        if is_pipeline_dir(cand):
            return PipelineDir(cand)
    if name:
        raise InputError(f"no pipeline named {name!r} in {root}")
    if Path(arg).is_file() and root.is_dir():
        source = str(Path(arg).resolve())
        found = [PipelineDir(p) for p in root.iterdir() if is_pipeline_dir(p)]
        found = [pd for pd in found if pd.read().get("source") == source]
        if found:
            return max(found, key=lambda pd: (str(pd.read().get("started") or ""), pd.name))
    raise InputError(f"{arg}: no pipeline to resume (name it with --name, or give its directory)")


def resume(
    pd: PipelineDir,
    prepared: Prepared | None = None,
    *,
    options: dict[str, Any] | None = None,
) -> tuple[Started, int]:
    """Continue ``pd`` at its first stage that has not passed (or whose definition changed).

    Args:
        pd: the pipeline directory.
        prepared: the pipeline file as it is now (the user fixed a stage); None: the directory's
            own ``pipeline.yaml``.
        options: launch options (default: the ones recorded at the first start).

    Returns:
        The started driver and the 1-based index of the stage it continues at.

    Raises:
        InputError: the pipeline is still running, already finished, or its stages do not match.
    """
    data = pd.read()
    state = effective_state(data)
    if state not in TERMINAL and state != "died":
        raise InputError(f"pipeline {pd.name} is {state}; stop it first (tuneterm stop {pd.path})")
    _refuse_live_stage(pd, data)
    if prepared is None:
        prepared = prepare(pd.spec_file)
    spec = prepared.spec
    old = {r.get("index"): r for r in data.get("stages") or []}
    first: int | None = None
    stages: list[dict[str, Any]] = []
    for stage, cfg in zip(spec.stages, prepared.configs):
        rec = old.get(stage.index) or {}
        same = rec.get("name") == stage.name and rec.get("fingerprint") == stage.fingerprint(cfg.trainer)
        if first is None and not (same and rec.get("state") == "passed"):
            first = stage.index
        if first is not None:
            fresh = _stage_record(spec, stage, cfg)
            fresh["attempts"] = list(rec.get("attempts") or []) if rec.get("name") == stage.name else []
            stages.append(fresh)
        else:
            stages.append(rec)
    if first is None:
        raise InputError(f"pipeline {pd.name}: every stage has passed already; nothing to resume")
    pd.spec_file.write_text(_spec_yaml(spec, prepared.configs), encoding="utf-8")
    opts = dict(options if options is not None else data.get("options") or {})
    pd.write({**initial_state(spec.name, data.get("source") or spec.source, stages), "options": opts,
              "resumed_at": first, "started": data.get("started") or now_iso()})
    with open(pd.log, "a", encoding="utf-8") as fh:
        fh.write(f"tuneterm: resuming pipeline {pd.name} at stage {first}\n")
    return _start_driver(pd), first


def _refuse_live_stage(pd: PipelineDir, data: dict[str, Any]) -> None:
    """A driver that died leaves its running stage running (the stage is its own session)."""
    from tuneterm.runs.processes import pid_alive

    for rec in data.get("stages") or []:
        status = RunDir(pd.path / str(rec.get("dir"))).read_status() if rec.get("dir") else {}
        if status.get("state") in ("starting", "running") and pid_alive(status.get("pid")):
            raise InputError(f"pipeline {pd.name}: stage {rec.get('index')} ({rec.get('name')}) is still running; "
                             f"stop it first (tuneterm stop {pd.path})")


# --- from outside: stop, follow ------------------------------------------------------------------


def stop_pipeline(pd: PipelineDir, *, grace_s: float = 30.0) -> str:
    """Stop the running stage and the pipeline; returns the pipeline's final state.

    SIGTERM to the driver (which stops the stage gracefully and records ``stopped``); after
    ``grace_s`` (+ a margin for the stage's own grace) the stage is stopped directly and the
    driver killed.
    """
    from tuneterm.runs.processes import pid_alive
    from tuneterm.runs.control import stop_run

    data = pd.read()
    pid = data.get("pid")
    pd.update(stop_requested=True)
    if isinstance(pid, int) and pid_alive(pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
        deadline = time.monotonic() + grace_s + 10.0
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
    if isinstance(pid, int) and pid_alive(pid):
        cur = data.get("current")
        rec = pd.stage(cur) if isinstance(cur, int) else {}
        if rec.get("dir") and (pd.path / str(rec["dir"])).is_dir():
            stop_run(RunDir(pd.path / str(rec["dir"])), grace_s=0.0)
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    data = pd.read()
    if data.get("state") not in TERMINAL:
        cur = data.get("current")
        if isinstance(cur, int):
            rec = pd.stage(cur)
            if rec.get("dir") and (pd.path / str(rec["dir"])).is_dir():
                stop_run(RunDir(pd.path / str(rec["dir"])), grace_s=grace_s)
            pd.update_stage(cur, state="stopped", ended=now_iso())
        pd.update(state="stopped", current=None, ended=now_iso(), error="stopped on request")
    return str(pd.read().get("state"))


def follow_pipeline(started: Started, out: IO[str], poll_s: float = 0.5) -> str:
    """Copy ``pipeline.log`` to ``out`` (from where it stood when the driver started) until the
    driver exits; returns the pipeline's final state."""
    pd, proc, offset = started.pipeline, started.proc, started.log_offset
    while True:
        done = proc.poll() is not None
        try:
            with open(pd.log, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except OSError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            out.write(inert(chunk.decode("utf-8", "replace"), None))  # the log is written by us, but stay safe
            out.flush()
        if done:
            break
        time.sleep(poll_s)
    return effective_state(pd.read())
