"""``tuneterm check`` subjects for pre-flight checks: training configs (and datasets, issue 6).

Imported lazily by :func:`tuneterm.report.subjects.handlers` (listed in ``HANDLER_MODULES``). The
``claims`` tests are cheap; the checks import their machinery on use.
"""

from __future__ import annotations

from pathlib import Path

from tuneterm.report.result import CheckResult
from tuneterm.report.subjects import CheckOptions, SubjectHandler, register_subject


def _claims_config(path: Path) -> bool:
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
