"""The pre-flight check of a resolved training config: ``tuneterm check``'s config rules, once,
for every way a run can be started (``tuneterm train`` and the TUI's Runs screen).

:func:`preflight` takes a :class:`~tuneterm.train.config.TrainConfig` (after ``--set`` overrides:
what would actually be launched), applies every ``scope: config`` rule of ``rules/`` through
:func:`tuneterm.preflight.config.check_config`, and returns a :class:`PreflightResult`. It prints
nothing and refuses nothing: the caller decides. ``tuneterm train`` prints
:meth:`PreflightResult.lines` and refuses on errors unless ``--force``; the TUI shows the findings
in a modal with "Start anyway" / "Cancel" when there are errors and lets warnings through.

A check that cannot run at all (a broken rule table, a bug in a detector's parsing) never blocks
a launch: the config was already validated against TRL's schema, so the result then carries the
reason in :attr:`PreflightResult.skipped` and no findings.

Imports nothing heavy: no torch, transformers, TRL or Textual (only the rule engine, the config
reader and NVML when a GPU capacity has to be probed).

>>> from tuneterm.train.config import TrainConfig
>>> cfg = TrainConfig(values={"model_name_or_path": "mistralai/Mistral-Small-3.1-24B-Instruct-2503",
...                           "dataset_name": "trl-lib/Capybara", "learning_rate": 5e-5},
...                   trainer="sft", method="full", source="seed.yaml")
>>> r = preflight(cfg, gpus=1, gpu_memory_gib=80.0)
>>> r.ok, [f.code for f in r.errors][:1]
(False, ['C101'])
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneterm.engine.model import Finding
    from tuneterm.train.config import TrainConfig


@dataclass(frozen=True, slots=True)
class PreflightResult:
    """What the pre-flight check found in one resolved config.

    Attributes:
        source: the config path the user gave (``TrainConfig.source``); every finding's
            ``source`` is this path too.
        findings: every finding, most severe first (errors, then warnings, then info).
        skipped: why the check could not run (then ``findings`` is empty and :attr:`ok` is True),
            else None.
        memory_estimate: the planner's per-GPU estimate for this config (peak, allocated,
            reserved GiB and the setup it assumed) when the model is known, else None; recorded
            in the run's launch.json so the measured peak can be set against it.
    """

    source: str
    findings: tuple[Finding, ...] = ()
    skipped: str | None = None
    memory_estimate: dict[str, Any] | None = None

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The error-severity findings: these block a launch unless the user overrides them."""
        return tuple(f for f in self.findings if _sev(f) == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """The findings below error (warnings and info): shown, never blocking."""
        return tuple(f for f in self.findings if _sev(f) != "error")

    @property
    def ok(self) -> bool:
        """True when nothing blocks the launch (no error finding; a skipped check is ok)."""
        return not self.errors

    def lines(self) -> list[str]:
        """One line per finding, as ``tuneterm train`` prints them (without its ``tuneterm: ``
        prefix): ``pre-flight SEVERITY CODE NAME: MESSAGE``. The text is the rules' own and may
        quote config values: make it inert before showing it in a terminal."""
        return [f"pre-flight {_sev(f)} {f.code} {f.name}: {f.message}" for f in self.findings]

    def summary(self) -> str:
        """One line for a refusal: ``pre-flight check found N error(s) in SOURCE``."""
        return f"pre-flight check found {len(self.errors)} error(s) in {self.source}"


def _sev(f: Any) -> str:
    # Severity is a StrEnum; a finding built by a third-party detector may carry a plain string.
    return str(getattr(f.severity, "value", f.severity))


def preflight(config: TrainConfig, gpus: int = 1, *, gpu_memory_gib: float | None = None) -> PreflightResult:
    """Apply ``tuneterm check``'s config rules to a resolved config.

    The resolved mapping (``config.values``, after ``--set``) is what gets checked, written to a
    private temporary YAML file because the config reader works on files (it also reads LLaMA-
    Factory and Axolotl dialects and YAML line numbers). Line numbers would point into that
    temporary file, so they are dropped, and each finding's ``source`` is ``config.source``.

    Args:
        config: the resolved config, as :func:`tuneterm.train.config.resolve` returns it.
        gpus: the number of processes the run will use (``--gpus``), for the memory fit and the
            effective batch.
        gpu_memory_gib: capacity of one GPU for the fit rule; None probes the GPUs present through
            NVML (and skips the fit rule when there is none), as ``tuneterm check`` does.

    Returns:
        A :class:`PreflightResult`. Never raises for a check that cannot run: see
        :attr:`PreflightResult.skipped`.
    """
    import yaml

    from tuneterm.preflight.config import check_config

    source = str(config.source)
    fd, tmp = tempfile.mkstemp(prefix="tuneterm-check-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(dict(config.values), fh, sort_keys=False)
        try:
            # the trainer as resolved (--trainer, a `# tuneterm: trainer=` comment): the temporary
            # copy has lost the comment, and its keys alone may suggest another trainer
            facts, findings = check_config(tmp, gpu_memory_gib=gpu_memory_gib, gpus=gpus, trainer=config.trainer)
        except Exception as exc:  # noqa: BLE001 - the config is already validated against TRL; a
            # pre-flight check that cannot run (broken rule table, its own parse) must not block it
            return PreflightResult(source=source, skipped=f"{type(exc).__name__}: {exc}")
    finally:
        os.unlink(tmp)
    est = facts.get("memory_estimate")
    return PreflightResult(source=source, findings=tuple(replace(f, source=source, line=None) for f in findings),
                           memory_estimate=dict(est) if isinstance(est, dict) else None)
