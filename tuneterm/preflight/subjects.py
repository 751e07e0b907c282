"""``tuneterm check`` subjects for pre-flight checks: training configs and datasets.

Imported lazily by :func:`tuneterm.report.subjects.handlers` (listed in ``tuneterm.plugins.SUBJECT_MODULES``). The
``claims`` tests are cheap; the checks import their machinery on use.
"""

from __future__ import annotations

from pathlib import Path

from tuneterm.errors import InputError
from tuneterm.runs.layout import METRICS, is_run_dir
from tuneterm.report.result import CheckResult
from tuneterm.report.subjects import CheckOptions, SubjectHandler, register_subject


def _claims_config(path: Path) -> bool:
    if path.suffix.lower() not in (".yaml", ".yml"):  # preflight.config's _SUFFIXES, tested before
        return False  # importing it: it pulls in plan.facts, ~15 ms of every `check LOG`
    from tuneterm.preflight.config import looks_like_config

    return looks_like_config(path)


def _check_config(path: Path, options: CheckOptions) -> CheckResult:
    from tuneterm.preflight.config import check_config

    facts, findings = check_config(
        path, gpu_memory_gib=options.gpu_memory_gib, gpus=options.gpus, trainer=options.trainer
    )
    selected = {r.code for r in options.ruleset("config").rules}
    kept = tuple(f for f in findings if f.code in selected)
    return CheckResult(
        source=str(path),
        subject="config",
        format="config",
        findings=kept,
        rules=tuple(r for r in options.ruleset("config").rules),
        facts=facts,
    )


register_subject(SubjectHandler(kind="config", claims=_claims_config, check=_check_config, priority=10))


def _claims_pipeline(path: Path) -> bool:
    if path.suffix.lower() not in (".yaml", ".yml"):
        return False
    from tuneterm.preflight.pipeline_spec import is_pipeline_file

    return is_pipeline_file(path)


def _check_pipeline(path: Path, options: CheckOptions) -> CheckResult:
    from tuneterm.preflight.pipeline_check import check_pipeline

    return check_pipeline(path, options)


# Above configs: a pipeline file is YAML too, and only its `stages:` key tells it apart.
register_subject(SubjectHandler(kind="pipeline", claims=_claims_pipeline, check=_check_pipeline, priority=11))


_TRAIN_EXTRA = "dataset checks need the training stack: pip install 'tuneterm[train]'"


# Files and directories that are training logs by name: decided without importing the dataset
# checker (it is the first handler asked about every log, and `check` must start fast).
_LOG_NAMES = frozenset({"trainer_state.json", "trainer_log.jsonl", METRICS, "log_history.json"})
_LOG_DIR_MARKERS = ("trainer_state.json", "trainer_log.jsonl")


def _claims_dataset(path: Path) -> bool:
    if path.name in _LOG_NAMES or path.suffix.lower() in (".log", ".txt", ".yaml", ".yml"):
        return False
    if path.is_dir() and (is_run_dir(path) or any((path / m).exists() for m in _LOG_DIR_MARKERS) or any(path.glob("checkpoint-*"))):
        return False
    try:
        from tuneterm.preflight.data import looks_like_dataset
    except ImportError:  # pragma: no cover - the sniffer itself needs nothing beyond the core install
        return False
    return looks_like_dataset(str(path))


def _check_dataset(path: Path, options: CheckOptions) -> CheckResult:
    from dataclasses import replace

    try:
        from tuneterm.preflight.data import check_dataset, to_check_result
    except ImportError as exc:
        raise InputError(f"{path}: {_TRAIN_EXTRA} (missing {exc.name})") from None

    rules = options.ruleset("data").rules
    report = check_dataset(
        str(path),
        model=options.model,
        max_length=options.max_length,
        trainer=options.trainer,
        sample=options.sample,
        rules=list(rules),
    )
    return replace(to_check_result(report, rules), detail=report)


# Above logs (a JSONL dataset is also JSONL), below configs; hub ids reach it too.
register_subject(SubjectHandler(kind="data", claims=_claims_dataset, check=_check_dataset, priority=5, remote=True))
