"""Multi-stage pipelines: run TRL stages one after another, each from the previous one's output,
with a health gate between them.

``tuneterm train PIPELINE.yaml`` (:mod:`tuneterm.cli.train`) validates every stage
(:func:`prepare`), creates the pipeline directory and starts the **driver**, ``python -m
tuneterm.train.pipeline DIR``, detached like a run's supervisor (its own session, stdin from
/dev/null, output to ``pipeline.log``), so the whole pipeline survives the terminal. The driver
(:func:`drive`) runs each unfinished stage as a normal run (:func:`tuneterm.train.launch.launch`
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

from tuneterm.errors import ConfigError, InputError
from tuneterm.train.config import TrainConfig, infer_trainer, validate
from tuneterm.preflight.pipeline_spec import (
    PipelineSpec,
    StageSpec,
    base_model,
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
    move_to_attempts,
)
from tuneterm.runs.layout import RunDir, create_run_dir, runs_root
from tuneterm.runs.writer import now_iso


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
    cmd = [sys.executable, "-m", "tuneterm.train.pipeline", str(pd.path.resolve())]
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
    spec = prepared.spec
    rd = create_run_dir(runs_root(runs_dir), name, spec.name)
    pd = PipelineDir(rd.path)
    pd.spec_file.write_text(_spec_yaml(spec, prepared.configs), encoding="utf-8")
    stages = [_stage_record(spec, s, c) for s, c in zip(spec.stages, prepared.configs)]
    state = initial_state(spec.name, str(Path(spec.source).resolve()), stages)
    state["options"] = dict(options or {})
    pd.write(state)
    return _start_driver(pd)


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


# --- the driver ----------------------------------------------------------------------------------


class _Stop:
    """SIGTERM in the driver: remember it and pass it on to the running stage's supervisor."""

    def __init__(self, pd: PipelineDir) -> None:
        self.pd = pd
        self.requested = False
        self.stage: RunDir | None = None

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        self.forward()

    def forward(self) -> None:
        """SIGTERM to the running stage's supervisor (it stops training at the next step end)."""
        if self.stage is not None:
            pid = self.stage.read_status().get("pid")
            if isinstance(pid, int) and pid > 0:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass


def _say(line: str) -> None:
    print(line, flush=True)


def _output_dir(stage_dir: Path) -> Path:
    try:
        cfg = yaml.safe_load((stage_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        cfg = {}
    out = cfg.get("output_dir") if isinstance(cfg, dict) else None
    return Path(out) if isinstance(out, str) and out else stage_dir / "output"


def _stage_model_name(stage_dir: Path) -> str:
    cfg = yaml.safe_load((stage_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    return str(cfg.get("model_name_or_path"))


def stage_input(pd: PipelineDir, spec: PipelineSpec, stage: StageSpec) -> tuple[str, str | None, str]:
    """What ``stage`` starts from: ``(model, adapter to continue or None, handover)``.

    The previous stage's output is an adapter (``adapter_config.json``) or a full model; an adapter
    is merged into ``<previous>/merged/`` (``merge: true``; reused when a merge exists) or
    continued (``merge: false``).
    """
    from tuneterm.train.builtin import resolve_model
    from tuneterm.train.stage_model import is_adapter_dir, merge_adapter

    if not stage.from_previous:
        return str(stage.values["model_name_or_path"]), None, "base"
    prev = spec.stages[stage.index - 2]
    prev_dir = pd.stage_dir(prev.dirname)
    out = _output_dir(prev_dir)
    if not is_adapter_dir(out):
        return str(out.resolve()), None, "model"
    prev_model = resolve_model(_stage_model_name(prev_dir))
    if not stage.merge:
        return prev_model, str(out.resolve()), "adapter"
    merged = prev_dir / "merged"
    if not (merged / "config.json").is_file():
        _say(f"tuneterm: merging the adapter of stage {prev.index} ({prev.name}) into {prev_model} -> {merged}")
        merge_adapter(out, merged, base=prev_model)
    return str(merged.resolve()), None, "merged"


def _against_model(spec: PipelineSpec, stage: StageSpec, started_from: str) -> str:
    """What the eval gate compares the stage with: the model the stage started from, or the
    pipeline's base model (``against: previous`` with a continued adapter is refused up front)."""
    gate = stage.gate.eval
    if gate is None or gate.against == "previous":
        return started_from
    from tuneterm.train.builtin import resolve_model

    return resolve_model(base_model(spec))


def _print_gate(stage: StageSpec, gate: Any) -> None:
    if gate.passed:
        extra = ""
        if gate.eval is not None:
            e = gate.eval
            extra = f"; {e.metric} {e.against_value:.4f} -> {e.stage_value:.4f} ({e.improvement:+.4f} vs {e.against})"
        _say(f"tuneterm: gate after stage {stage.index} ({stage.name}) passed{extra}")
        return
    _say(f"tuneterm: gate after stage {stage.index} ({stage.name}) FAILED")
    for reason in gate.reasons:
        _say(f"  why: {reason}")
    for f in gate.findings:
        _say(f"  {f.severity} {f.code} {f.name}: {f.message}")
        for fix in f.fixes:
            _say(f"    fix: {fix}")


def _run_stage(pd: PipelineDir, spec: PipelineSpec, stage: StageSpec, stop: _Stop, options: dict[str, Any]) -> bool:
    """Run one stage and check its gate; True when the pipeline may go on."""
    from tuneterm.train.follow import follow
    from tuneterm.train.launch import launch
    from tuneterm.train.pipeline_gate import check_gate

    moved = move_to_attempts(pd, stage.dirname)
    if moved:
        attempts = list(pd.stage(stage.index).get("attempts") or []) + [moved]
        pd.update_stage(stage.index, attempts=attempts)
    model, adapter, how = stage_input(pd, spec, stage)
    cfg = stage_config(spec, stage, model)
    extra: dict[str, Any] = {"pipeline": {"dir": str(pd.path.resolve()), "stage": stage.index, "name": stage.name}}
    if stage.data.templates:
        extra["data"] = {"templates": list(stage.data.templates), "template_seed": stage.data.template_seed}
    if adapter:
        extra["init_adapter"] = adapter
    _say(f"tuneterm: stage {stage.index}/{len(spec.stages)} ({stage.name}): {cfg.trainer} ({cfg.method}) "
         f"from {how} {model}" + (f" + adapter {adapter}" if adapter else ""))
    launched = launch(
        cfg, runs_dir=pd.path, name=stage.dirname, stop_on="error", extra=extra,
        gpus=int(options.get("gpus") or 1), accelerate_config=options.get("accelerate_config"),
        sample_every=int(options.get("sample_every") or 0),
        argv=["tuneterm", "train", str(pd.path), f"(stage {stage.index})"],
    )
    stop.stage = launched.run
    pd.update_stage(stage.index, state="running", started=now_iso(), model=model, handover=how)
    pd.update(current=stage.index, state="running")
    if stop.requested:  # a stop that arrived while the stage was being launched
        stop.forward()
    outcome = follow(launched.run, launched.proc, stop_on="error", out=sys.stdout)
    stop.stage = None
    if stop.requested or outcome.state == "stopped" and not outcome.stopped_on_error:
        pd.update_stage(stage.index, state="stopped", ended=now_iso())
        return False
    # A stage stopped at its first error finding is judged by that finding (it ran, it was sick).
    ran_state = "finished" if outcome.stopped_on_error else (outcome.state or "failed")
    gate = check_gate(
        launched.run.path, stage.gate, state=ran_state, error=outcome.error,
        findings=outcome.findings, against_model=_against_model(spec, stage, model),
    )
    _print_gate(stage, gate)
    ran = outcome.state == "finished" or outcome.stopped_on_error
    final = "passed" if gate.passed else ("gate-failed" if ran else "failed")
    pd.update_stage(stage.index, state=final, ended=now_iso(), gate=gate.to_dict())
    return gate.passed


def drive(pd: PipelineDir) -> int:
    """The driver's body: run every stage not yet passed, in order; 0 when all passed, else 1."""
    stop = _Stop(pd)
    stop.install()
    pd.update(pid=os.getpid(), pgid=os.getpgid(0), state="running", ended=None, error=None)
    try:
        spec = load_pipeline(pd.spec_file)
        options = dict(pd.read().get("options") or {})
        for stage in spec.stages:
            if pd.stage(stage.index).get("state") == "passed":
                continue
            if stop.requested:
                break
            if not _run_stage(pd, spec, stage, stop, options):
                return _finish(pd, spec, stage, stop)
        if stop.requested:
            pd.update(state="stopped", current=None, ended=now_iso(), error="stopped on request", stop_requested=True)
            return 1
    except Exception as exc:  # noqa: BLE001 - the driver records any failure instead of dying silently
        _say(f"tuneterm: error: {type(exc).__name__}: {exc}" if not isinstance(exc, (ConfigError, InputError)) else
             f"tuneterm: error: {exc}")
        pd.update(state="failed", current=None, ended=now_iso(), error=str(exc)[:400])
        return 1
    pd.update(state="finished", current=None, ended=now_iso())
    _say(f"tuneterm: pipeline {pd.name} finished: every stage passed its gate")
    return 0


def _finish(pd: PipelineDir, spec: PipelineSpec, stage: StageSpec, stop: _Stop) -> int:
    """Record why the pipeline ended at ``stage`` and say what to do next."""
    rec = pd.stage(stage.index)
    if stop.requested or rec.get("state") == "stopped":
        pd.update(state="stopped", current=None, ended=now_iso(), error="stopped on request", stop_requested=True)
        _say(f"tuneterm: pipeline {pd.name} stopped at stage {stage.index} ({stage.name})")
        return 1
    state = "gated" if rec.get("state") == "gate-failed" else "failed"
    reasons = (rec.get("gate") or {}).get("reasons") or []
    error = f"stage {stage.index} ({stage.name}): " + ("; ".join(reasons) or "failed")
    pd.update(state=state, current=None, ended=now_iso(), error=error[:400])
    nxt = f" before stage {stage.index + 1}" if stage.index < len(spec.stages) else ""
    _say(f"tuneterm: pipeline {pd.name} stopped{nxt}: the gate after stage {stage.index} ({stage.name}) failed")
    _say(f"tuneterm: fix stage {stage.index}, then continue with: tuneterm train {pd.path} --resume  "
         "(or: tuneterm train PIPELINE.yaml --resume)")
    return 1


# --- from outside: stop, follow ------------------------------------------------------------------


def stop_pipeline(pd: PipelineDir, *, grace_s: float = 30.0) -> str:
    """Stop the running stage and the pipeline; returns the pipeline's final state.

    SIGTERM to the driver (which stops the stage gracefully and records ``stopped``); after
    ``grace_s`` (+ a margin for the stage's own grace) the stage is stopped directly and the
    driver killed.
    """
    from tuneterm.runs.processes import pid_alive
    from tuneterm.train.control import stop_run

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
            out.write(chunk.decode("utf-8", "replace"))
            out.flush()
        if done:
            break
        time.sleep(poll_s)
    return effective_state(pd.read())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tuneterm.train.pipeline PIPELINE_DIR", file=sys.stderr)
        return 2
    return drive(PipelineDir(Path(args[0])))


if __name__ == "__main__":
    sys.exit(main())
