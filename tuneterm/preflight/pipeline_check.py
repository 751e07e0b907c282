"""``tuneterm check PIPELINE.yaml``: the pre-flight checks of every stage of a pipeline file.

Each stage's TRL config (a ``from: previous`` stage with the chain's starting model, the model its
input is derived from) goes through the same ``scope: config`` rules as ``tuneterm check
CONFIG.yaml`` (:func:`tuneterm.preflight.config.check_config`); every finding's ``source`` names the
stage (``PIPELINE.yaml#2-dpo``). The result's notes say, per stage, what it starts from and which
template its data will be rendered with (:func:`tuneterm.preflight.data_templates.describe_rendering`),
read from the first row of a local or built-in dataset (hub datasets are not downloaded here).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tuneterm.preflight.data_templates import dataset_format, describe_rendering
from tuneterm.resources import builtin_data_file
from tuneterm.preflight.pipeline_spec import StageSpec, handover, load_pipeline, starting_model

if TYPE_CHECKING:
    from tuneterm.engine.model import Finding


def _first_rows(name: Any, base: Path, k: int = 5) -> list[Any] | None:
    """The first ``k`` rows of a built-in or local JSON/JSONL dataset; None when not readable here."""
    if not isinstance(name, str):
        return None
    path = builtin_data_file(name) or Path(name)
    if not path.is_absolute() and not path.exists():
        path = base / path
    if not path.is_file() or path.suffix.lower() not in (".jsonl", ".json"):
        return None
    rows: list[Any] = []
    try:
        with open(path, encoding="utf-8") as fh:
            if path.suffix.lower() == ".json":
                data = json.load(fh)
                return list(data[:k]) if isinstance(data, list) else None
            for line in fh:
                if line.strip():
                    rows.append(json.loads(line))
                if len(rows) >= k:
                    break
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return rows


def stage_template_line(stage: StageSpec, base: Path) -> str:
    """Which template ``stage`` trains on, in words (the data check's per-stage report)."""
    data = stage.values.get("dataset_name")
    rows = _first_rows(data, base)
    if rows is None:
        line = f"data {data}: format read at training time (not a local or built-in file)"
        if stage.data.templates:
            line += "; instruction rows: " + describe_rendering("alpaca", stage.data.templates, stage.data.template_seed).split(": ", 1)[1]
        return line
    fmt = dataset_format(rows)
    return f"data {data}: {describe_rendering(fmt, stage.data.templates, stage.data.template_seed)}"


def _check_stage(stage: StageSpec, model: str, options: Any) -> tuple[dict[str, Any], list[Any]]:
    from tuneterm.preflight.config import check_config

    values = dict(stage.values)
    values["model_name_or_path"] = model
    fd, tmp = tempfile.mkstemp(prefix="tuneterm-stage-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(values, fh, sort_keys=False)
        return check_config(tmp, gpu_memory_gib=options.gpu_memory_gib, gpus=options.gpus,
                            trainer=stage.trainer or options.trainer)
    finally:
        os.unlink(tmp)


def check_pipeline(path: Path, options: Any) -> Any:
    """Check every stage of the pipeline file ``path``; returns a ``CheckResult``.

    Raises:
        InputError / ConfigError: the pipeline file (or a stage's config file) is malformed.
    """
    from tuneterm.report.result import CheckResult

    spec = load_pipeline(path)
    selected = {r.code for r in options.ruleset("config").rules}
    findings: list[Finding] = []
    notes: list[str] = []
    stages: list[dict[str, Any]] = []
    for stage in spec.stages:
        model = starting_model(spec, stage)
        facts, found = _check_stage(stage, model, options)
        where = f"{path}#{stage.dirname}"
        findings += [replace(f, source=where, line=None, message=f"stage {stage.index} ({stage.name}): {f.message}")
                     for f in found if f.code in selected]
        how = handover(spec, stage)
        start = {"base": f"model {model}", "model": "the previous stage's saved model",
                 "merged": "the previous stage's adapter merged into its base",
                 "adapter": "the previous stage's adapter, trained further"}[how]
        template = stage_template_line(stage, path.parent)
        notes.append(f"stage {stage.index} ({stage.name}): {facts.get('trainer')} {facts.get('method')} "
                     f"from {start}; {template}")
        stages.append({"index": stage.index, "name": stage.name, "trainer": facts.get("trainer"),
                       "method": facts.get("method"), "handover": how, "template": template})
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order.get(f.severity.value, 3))
    return CheckResult(
        source=str(path), subject="config", format="pipeline", findings=tuple(findings),
        rules=tuple(options.ruleset("config").rules),
        facts={"pipeline": spec.name, "stages": stages, "model": starting_model(spec, spec.stages[0])},
        notes=tuple(notes),
    )
