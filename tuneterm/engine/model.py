"""Rule and finding records: the contract between rule tables, detectors, reports and users.

A :class:`Rule` is one record of ``rules/*.yaml`` (identity, wording, advice, detector and
thresholds); a detector (:mod:`tuneterm.engine.detectors`) turns a :class:`~tuneterm.logs.model.Run`
and a rule's parameters into :class:`Detection` objects; the evaluator joins the two into
:class:`Finding` records, whose :meth:`Finding.to_dict` *is* the JSON that ``tuneterm check
--format json`` prints (DESIGN.md, "A finding").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """How bad a finding is. Ordered: ``error`` > ``warning`` > ``info``."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """2 for error, 1 for warning, 0 for info (for ``--fail-on`` comparisons and sorting)."""
        return {"error": 2, "warning": 1, "info": 0}[self.value]


@dataclass(frozen=True, slots=True)
class Fix:
    """One concrete remedy: a config change (``key``/``value``) or a ``command``, and ``why``.

    ``key`` uses TRL/transformers/peft field names (``learning_rate``, ``max_grad_norm``,
    ``gradient_checkpointing_kwargs``, ``lora_r`` ...); ``value`` is JSON-serialisable. ``why`` says
    what the change does and what it costs.
    """

    why: str
    key: str | None = None
    value: Any = None
    command: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"key", "value", "why"}`` or ``{"command", "why"}``."""
        if self.command is not None:
            return {"command": self.command, "why": self.why}
        return {"key": self.key, "value": self.value, "why": self.why}


@dataclass(frozen=True, slots=True)
class Rule:
    """One diagnostic rule, loaded and validated from ``rules/*.yaml``.

    Attributes:
        code: category letter + 3 digits (``G101``); never reused.
        name: kebab-case name of the pattern (``zero-grad-norm``), not of the fix.
        category: ``gradients``, ``loss``, ``generalization``, ``schedule``, ``numerics``,
            ``rl``, ``preference``, ``data``, ``runtime``, ``config`` ...
        severity: default severity; a detection may lower or raise it (documented per rule).
        trainers: trainer kinds the rule applies to (``sft``, ``dpo``, ``grpo``,
            ``classification``, ``unknown``).
        detector: name of a registered detector function.
        params: thresholds and options passed to the detector.
        summary: one line: what the rule detects.
        message: ``str.format`` template filled from the detection's evidence.
        why: why it matters.
        causes: likely causes, most likely first.
        fixes: concrete remedies, best first.
        references: issue threads / docs (``owner/repo#N`` or URLs).
        example: a short log excerpt that triggers the rule.
        since: version that introduced it.
    """

    code: str
    name: str
    category: str
    severity: Severity
    trainers: tuple[str, ...]
    detector: str
    summary: str
    message: str
    why: str
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    scope: str = "log"  # what the detector reads: "log" (a Run), "config", "data", "eval"
    causes: tuple[str, ...] = ()
    fixes: tuple[Fix, ...] = ()
    references: tuple[str, ...] = ()
    example: str = ""
    since: str = "0.1.0"

    def to_dict(self) -> dict[str, Any]:
        """JSON form used by ``tuneterm rule --format json`` and SARIF rule descriptors."""
        return {
            "code": self.code,
            "name": self.name,
            "category": self.category,
            "severity": self.severity.value,
            "trainers": list(self.trainers),
            "summary": self.summary,
            "why": self.why,
            "causes": list(self.causes),
            "fixes": [f.to_dict() for f in self.fixes],
            "references": list(self.references),
            "example": self.example,
            "scope": self.scope,
            "detector": self.detector,
            "params": dict(self.params),
            "since": self.since,
        }


@dataclass(frozen=True, slots=True)
class Detection:
    """What a detector reports: where, the numbers, and optional overrides.

    ``evidence`` holds JSON-serialisable values (numbers, short strings, small lists of
    ``[step, value]``) and fills the rule's message template. ``severity`` overrides the rule's
    default (e.g. intermittent zero grad norm is a warning, persistent is an error). ``fixes``
    and ``causes``, when given, are put *before* the rule's static ones: they are computed for
    this run (e.g. "max_steps: 2000 to cover 1.4 epochs").
    """

    first_step: int | None
    last_step: int | None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    severity: Severity | None = None
    fixes: tuple[Fix, ...] = ()
    causes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that fired on a run: the unit of every report and of the JSON contract."""

    code: str
    name: str
    severity: Severity
    category: str
    message: str
    first_step: int | None
    last_step: int | None
    evidence: Mapping[str, Any]
    causes: tuple[str, ...]
    fixes: tuple[Fix, ...]
    references: tuple[str, ...]
    source: str = ""
    line: int | None = None  # 1-based line in source where the finding begins, if known

    def to_dict(self) -> dict[str, Any]:
        """JSON form (DESIGN.md): code, name, severity, category, message, first_step,
        last_step, evidence, causes, fixes, references (plus line when known)."""
        d: dict[str, Any] = {
            "code": self.code,
            "name": self.name,
            "severity": self.severity.value,
            "category": self.category,
            "message": self.message,
            "first_step": self.first_step,
            "last_step": self.last_step,
            "evidence": dict(self.evidence),
            "causes": list(self.causes),
            "fixes": [f.to_dict() for f in self.fixes],
            "references": list(self.references),
        }
        if self.line is not None:
            d["line"] = self.line
        return d
