"""The pipeline driver: ``python -m tuneterm.train.pipeline_driver PIPELINE_DIR``.

Started detached by :func:`tuneterm.train.pipeline.start` / :func:`~tuneterm.train.pipeline.resume`
(its own session, stdin from /dev/null, output appended to ``pipeline.log``). :func:`drive` runs every
stage that has not passed its gate, in order: it hands the previous stage's model over
(:func:`stage_input`: a full model, an adapter merged into its base, or the adapter itself), launches
the stage as a normal run (:func:`tuneterm.train.launch.launch` into ``<pipeline>/<NN-stage>/``),
follows it (:func:`tuneterm.train.follow.follow`, stopping it at its first error finding), checks its
gate (:func:`tuneterm.train.pipeline_gate.check_gate`) and records everything in ``pipeline.json``
(:mod:`tuneterm.runs.pipeline`). A failed gate ends the pipeline ``gated`` with the findings and
their fixes in ``pipeline.log``; SIGTERM (``tuneterm stop``) is passed on to the running stage and
ends the pipeline ``stopped``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from tuneterm.errors import ConfigError, InputError
from tuneterm.preflight.pipeline_spec import PipelineSpec, StageSpec, base_model, load_pipeline
from tuneterm.runs.layout import RunDir
from tuneterm.runs.pipeline import PipelineDir, move_to_attempts
from tuneterm.report.prescription import show
from tuneterm.runs.writer import now_iso
from tuneterm.textsafe import inert
from tuneterm.train.pipeline import stage_config


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
    """One line of pipeline.log; text from configs and runs is made inert (no escape sequences)."""
    print(inert(line, 2000), flush=True)


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
    from tuneterm.assets.builtin import resolve_model
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
    from tuneterm.assets.builtin import resolve_model

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
        if gate.prescription is None:  # no prescription: each finding's own fixes
            for fix in f.fixes:
                _say(f"    fix: {fix}")
    if gate.prescription is not None:
        _say("  prescription (one set of changes for this stage's config; tuneterm doctor explains):")
        for c in gate.prescription.changes:
            _say(f"    {c.key}: {show(c.was)} -> {show(c.value)}  ({c.why}; {', '.join(c.findings)})")
        for step in gate.prescription.steps:
            _say(f"    run: {step.command}  ({step.why})")
        for blocker in gate.prescription.blockers:
            _say(f"    blocker: {blocker}")


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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tuneterm.train.pipeline_driver PIPELINE_DIR", file=sys.stderr)
        return 2
    from tuneterm.plan.oom import install

    install()  # the stages' findings size an out-of-memory fix with the planner's estimator
    return drive(PipelineDir(Path(args[0])))


if __name__ == "__main__":
    sys.exit(main())
