"""The prescription: one consistent set of changes and steps for one run, and its renderings.

The advisor (:mod:`tuneterm.advise`) builds a :class:`Prescription` from every finding of a run
and what is known about the run; the reports render it: the JSON ``"prescription"`` object
(DESIGN.md, "A finding") and the short diff that ends ``tuneterm doctor``::

    learning_rate: 5e-05 → 0.0001  # ... · fixes L103
    gradient_accumulation_steps: 8 → 16  # ... · fixes L103

The records live here, below the advisor, because every emitter renders them and the report layer
may not import the advisor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Change:
    """One config key to change.

    Attributes:
        key: a field name the installed TRL config class of the run's trainer accepts.
        value: the new value (JSON-serialisable).
        was: the value in effect, or ``None`` when the run does not say (then the prescription's
            assumptions say so).
        why: what the change does for this run, with the run's own numbers.
        findings: codes of the findings this change answers, the deciding one first.
    """

    key: str
    value: Any
    was: Any
    why: str
    findings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"key", "value", "was", "why", "findings"}``."""
        return {"key": self.key, "value": self.value, "was": self.was, "why": self.why, "findings": list(self.findings)}


@dataclass(frozen=True, slots=True)
class Step:
    """Something to run or check, in order: diagnostics before any config change is trusted.

    ``command`` is a shell command (``$``) or a statement for the training script (``>>>``; see
    :func:`tuneterm.report.result.command_prompt`), runnable as printed.
    """

    command: str
    why: str
    findings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"command", "why"}``."""
        return {"command": self.command, "why": self.why}


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two findings asked for different values of one key; ``kept_by`` won, for ``reason``."""

    key: str
    kept: Any
    kept_by: str
    dropped: Any
    dropped_by: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"key": self.key, "kept": self.kept, "kept_by": self.kept_by, "dropped": self.dropped,
                "dropped_by": self.dropped_by, "reason": self.reason}

    def describe(self) -> str:
        """One line for people.

        >>> Conflict("learning_rate", 1e-5, "L102", 2e-4, "L105", "an error outranks a warning").describe()
        'learning_rate: kept 1e-05 (L102) over 0.0002 (L105): an error outranks a warning'
        """
        return f"{self.key}: kept {show(self.kept)} ({self.kept_by}) over {show(self.dropped)} ({self.dropped_by}): {self.reason}"


@dataclass(frozen=True, slots=True)
class Prescription:
    """The advisor's single answer for one run.

    Attributes:
        changes: one per key, none equal to the value in effect, every key valid for the installed
            TRL config class of the run's trainer.
        steps: diagnostic steps first, then commands that act.
        assumptions: what the advice assumed where the run did not say (unknown method, GPU,
            library schema ...).
        conflicts: values of one key that findings disagreed on, and which finding won.
        blockers: what no config change cures (e.g. a reward function that never varies); when
            present, ``changes`` holds nothing for those findings.
    """

    changes: tuple[Change, ...] = ()
    steps: tuple[Step, ...] = ()
    assumptions: tuple[str, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    blockers: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when there is nothing to change, run or know."""
        return not (self.changes or self.steps or self.blockers)

    def patch(self) -> dict[str, Any]:
        """The changes as a config mapping ``{key: value}`` (what ``doctor --fix`` applies)."""
        return {c.key: c.value for c in self.changes}

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"changes", "steps", "assumptions", "conflicts", "blockers"}``."""
        return {
            "changes": [c.to_dict() for c in self.changes],
            "steps": [s.to_dict() for s in self.steps],
            "assumptions": list(self.assumptions),
            "conflicts": [c.to_dict() for c in self.conflicts],
            "blockers": list(self.blockers),
        }


def show(value: Any) -> str:
    """A config value as a person would type it in YAML.

    >>> show(1e-4), show(True), show("cosine"), show({"min_lr_rate": 0.1}), show(None)
    ('0.0001', 'true', 'cosine', '{"min_lr_rate": 0.1}', '(unset)')
    """
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)
