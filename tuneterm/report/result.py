"""What every report is built from: one :class:`CheckResult` per checked path.

``tuneterm check`` and ``tuneterm doctor`` both go *detect subject -> produce a CheckResult ->
emit*. A CheckResult carries the source, the subject kind (``log`` today; ``config`` and ``data``
later), the facts a reader needs (trainer kind, steps), the findings (most severe first), the rules
that were evaluated (JUnit writes one test case per rule, SARIF describes the rules that fired) and
the parse notes. The emitters in this package read nothing else, except :mod:`.doctor`, which also
draws charts from :attr:`CheckResult.run`.

This module also holds the small helpers every emitter shares: counting by severity,
``--fail-on`` comparison and :func:`json_safe`, which turns evidence into strictly valid JSON.
"""

from __future__ import annotations

import math
import re
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneterm.engine.model import Finding, Rule, Severity

from tuneterm.report.prescription import Prescription

if TYPE_CHECKING:  # only for annotations: report/ must not need the parsers at import time
    from tuneterm.logs.model import Run


@dataclass(frozen=True, slots=True)
class Tally:
    """Findings counted by severity.

    >>> Tally(errors=1, warnings=2, infos=0).describe()
    '1 error, 2 warnings, 0 infos'
    """

    errors: int = 0
    warnings: int = 0
    infos: int = 0

    @classmethod
    def of(cls, findings: Iterable[Finding]) -> Tally:
        """Count ``findings`` by severity."""
        e = w = i = 0
        for f in findings:
            if f.severity is Severity.ERROR:
                e += 1
            elif f.severity is Severity.WARNING:
                w += 1
            else:
                i += 1
        return cls(e, w, i)

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.errors + other.errors, self.warnings + other.warnings, self.infos + other.infos)

    @property
    def total(self) -> int:
        """All findings, whatever their severity."""
        return self.errors + self.warnings + self.infos

    def describe(self, *, with_infos: bool = True) -> str:
        """``"1 error, 2 warnings, 0 infos"`` (pluralised; infos left out when asked)."""
        parts = [plural(self.errors, "error"), plural(self.warnings, "warning")]
        if with_infos:
            parts.append(plural(self.infos, "info"))
        return ", ".join(parts)


def plural(n: int, word: str) -> str:
    """``plural(1, "error") == "1 error"``, ``plural(2, "error") == "2 errors"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of checking one path: the unit every emitter renders.

    Attributes:
        source: the file the findings are about (the path given, or the file picked inside a
            directory), as the user would type it.
        subject: what kind of thing was checked: ``"log"`` (later ``"config"``, ``"data"``).
        format: the detected format id (``"trainer_state"``, ``"console"``, ...).
        findings: most severe first (the engine's order).
        rules: the rules that were evaluated against this source (applicable to its trainer
            kind and subject), sorted by code.
        facts: a short summary for the reader and for JSON: ``trainer`` (kind), ``steps`` (last
            step), optionally ``max_steps``, ``model`` and anything a subject adds.
        notes: remarks about reading the input ("file is truncated; salvaged 1,204 entries").
        run: the parsed run for log subjects (doctor draws its charts from it); ``None`` for
            other subjects. Not part of equality.
        detail: a subject's own report object for the human-readable text output (a dataset
            check's ``DataReport``); ``None`` otherwise. Not part of equality.
        prescription: the advisor's one answer for a log subject (:mod:`tuneterm.advise`), set by
            the commands after the findings; ``None`` when not advised. Not part of equality.
    """

    source: str
    subject: str
    format: str
    findings: tuple[Finding, ...]
    rules: tuple[Rule, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    run: Run | None = field(default=None, compare=False, repr=False)
    detail: Any = field(default=None, compare=False, repr=False)
    prescription: Prescription | None = field(default=None, compare=False, repr=False)

    @property
    def tally(self) -> Tally:
        """Findings counted by severity."""
        return Tally.of(self.findings)

    def failing(self, fail_on: Severity) -> list[Finding]:
        """Findings at or above ``fail_on`` (those that make ``check`` exit 1)."""
        return [f for f in self.findings if f.severity.rank >= fail_on.rank]

    def summary(self) -> dict[str, Any]:
        """The JSON ``summary`` object (DESIGN.md): counts, trainer, steps, format, notes."""
        t = self.tally
        return {
            "errors": t.errors,
            "warnings": t.warnings,
            "infos": t.infos,
            "trainer": self.facts.get("trainer"),
            "steps": self.facts.get("steps"),
            "format": self.format,
            "notes": list(self.notes),
        }


def fails(results: Iterable[CheckResult], fail_on: Severity) -> bool:
    """True when any result has a finding at or above ``fail_on`` (exit code 1)."""
    return any(r.failing(fail_on) for r in results)


_PYTHON_STATEMENT = re.compile(r"^[A-Za-z_][\w.]*(\[[^\]]*\])?\s*(\(|=(?!=))")
_ENV_PREFIX = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def command_prompt(command: str) -> str:
    """The prompt to show before a fix's command: ``>>>`` for a Python statement, else ``$``.

    Rule fixes hold two kinds of command: shell commands (``pip install -U trl``,
    ``PYTORCH_CUDA_ALLOC_CONF=... tuneterm train CONFIG``) and statements to put in the training
    script (``model.print_trainable_parameters()``, ``batch = next(...)``). Showing the latter
    behind ``$`` would invite pasting Python into a shell.

    >>> command_prompt("model.print_trainable_parameters()"), command_prompt("pip install trl")
    ('>>>', '$')
    >>> command_prompt("NCCL_DEBUG=INFO tuneterm train CONFIG")
    '$'
    """
    s = command.strip()
    if _ENV_PREFIX.match(s):
        return "$"
    return ">>>" if _PYTHON_STATEMENT.match(s) else "$"


def display_path(source: str, base: str | os.PathLike[str] | None = None) -> str:
    """``source`` relative to ``base`` (default: the working directory) with forward slashes.

    A path outside ``base`` stays absolute (still with forward slashes): a ``../..`` path means
    nothing to GitHub or to a SARIF viewer rooted at the repository.

    >>> display_path("/repo/runs/a/trainer_state.json", "/repo")
    'runs/a/trainer_state.json'
    """
    p = Path(source)
    base_path = Path(base) if base is not None else Path.cwd()
    try:
        absolute = p if p.is_absolute() else (base_path / p)
        rel = os.path.relpath(os.path.normpath(absolute), os.path.normpath(base_path))
    except ValueError:  # different drives on Windows
        return p.as_posix()
    if rel == ".." or rel.startswith(".." + os.sep):
        return Path(os.path.normpath(absolute)).as_posix()
    return Path(rel).as_posix()


def elide_path(path: str, room: int) -> str:
    """``path`` shortened to ``room`` cells by dropping leading directories, never mid-name.

    The file name (what people copy) stays whole; leading directories give way to ``…/`` first.
    A name longer than ``room`` on its own is kept whole: a wrapped but intact name beats a cut one.

    >>> elide_path("/home/me/experiments/shared/corpus/001_state.json", 30)
    '…/shared/corpus/001_state.json'
    >>> elide_path("runs/a/trainer_state.json", 40)
    'runs/a/trainer_state.json'
    >>> elide_path("/very/long/dir/a_file_name_longer_than_room.json", 10)
    '…/a_file_name_longer_than_room.json'
    """
    if len(path) <= room:
        return path
    parts = path.split("/")
    kept = parts[-1]
    for part in reversed(parts[:-1]):
        candidate = f"{part}/{kept}"
        if len(candidate) + 2 > room:
            break
        kept = candidate
    return f"…/{kept}"


# --- JSON ------------------------------------------------------------------------------------


def _clean_str(s: str) -> str:
    # Lone surrogates (from undecodable file names or bytes) cannot be written as UTF-8; replace
    # them rather than failing the whole report.
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "replace").decode("utf-8")


def json_safe(value: Any) -> Any:
    """Return ``value`` converted to something ``json.dumps(..., allow_nan=False)`` accepts.

    Non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (a NaN grad_norm is
    evidence, and bare ``NaN`` is not valid JSON); tuples and sets become lists; mappings get
    string keys; unencodable strings are repaired; anything else unknown becomes ``str(value)``.

    >>> json_safe({"grad_norm": float("nan"), "steps": (3, float("inf"))})
    {'grad_norm': 'nan', 'steps': [3, 'inf']}
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, Mapping):
        return {_clean_str(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, Sequence | set | frozenset):
        return [json_safe(v) for v in value]
    if hasattr(value, "to_dict"):
        return json_safe(value.to_dict())
    return _clean_str(str(value))
