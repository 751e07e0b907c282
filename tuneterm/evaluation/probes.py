"""The forgetting probe set: general prompts by category and general-text passages.

A fine-tune that helps its task can still break the model everywhere else (catastrophic forgetting:
smallcloudai/refact#311, Lightning-AI/litgpt#1517; or a complete model collapse). The probe set asks the same small set of general questions
to the base and the fine-tuned model and measures the perplexity of both on plain general text.

File format (JSONL, one object a line; ``tuneterm/evaluation/probes/general.jsonl`` is bundled):

``{"type": "prompt", "id", "category", "prompt", "answers"?: [..], "max_words"?: N, "min_words"?: N, "group"?: G}``
    a general prompt. Categories: ``factual``, ``reasoning``, ``instruction``,
    ``creative``, ``code``, ``paraphrase`` (variants sharing a ``group``). The answer check passes
    when the output is not degenerate, contains one of ``answers`` (normalised, whole words) when
    given, and respects ``max_words``/``min_words`` when given.
``{"type": "passage", "id", "text"}``
    a general-text passage for the perplexity check.

``--probes general`` uses the bundled set, ``--probes FILE`` a file in this format, ``--probes none``
skips the probe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneterm.errors import InputError
from tuneterm.evaluation.data import read_records
from tuneterm.engine.detectors.degenerate import GenerationCheck
from tuneterm.evaluation.metrics import contains_answer

BUNDLED = Path(__file__).resolve().parent / "probes"


@dataclass(frozen=True, slots=True)
class Probe:
    """One general prompt with its (optional) answer check."""

    id: str
    category: str
    prompt: str
    answers: tuple[str, ...] = ()
    max_words: int | None = None
    min_words: int | None = None
    group: str | None = None

    def passes(self, output: str, check: GenerationCheck) -> bool:
        """Whether ``output`` (with its degenerate ``check``) passes this probe.

        >>> from tuneterm.engine.detectors.degenerate import check_generation
        >>> p = Probe("f1", "factual", "Capital of France?", ("Paris",))
        >>> p.passes("It is Paris.", check_generation("It is Paris.")), p.passes("Rome", check_generation("Rome"))
        (True, False)
        """
        if check.degenerate:
            return False
        if self.answers and not contains_answer(output, self.answers):
            return False
        if self.max_words is not None and check.n_words > self.max_words:
            return False
        return not (self.min_words is not None and check.n_words < self.min_words)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"id": self.id, "category": self.category, "prompt": self.prompt, "answers": list(self.answers)}


@dataclass(frozen=True, slots=True)
class ProbeSet:
    """Prompts and passages of a probe file (either may be empty)."""

    name: str
    prompts: tuple[Probe, ...] = ()
    passages: tuple[tuple[str, str], ...] = field(default=())  # (id, text)

    @property
    def empty(self) -> bool:
        """True when there is nothing to probe."""
        return not self.prompts and not self.passages


def _opt_int(v: Any, where: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise InputError(f"{where}: expected a non-negative integer, got {v!r}")
    return v


def load_probes(spec: str = "general") -> ProbeSet:
    """Load a probe set: ``general`` (bundled), ``none``, or a JSONL file path.

    Raises:
        InputError: missing file, malformed JSON, or a row with missing/wrong fields (names the line).

    >>> ps = load_probes("general")
    >>> len(ps.prompts) >= 24 and len(ps.passages) >= 6
    True
    """
    if spec == "none":
        return ProbeSet("none")
    path = BUNDLED / f"{spec}.jsonl" if spec == "general" else Path(spec).expanduser()
    if not path.is_file():
        raise InputError(f"{spec}: no such probe file (use 'general', 'none' or a JSONL file)")
    rows = read_records(path)
    prompts: list[Probe] = []
    passages: list[tuple[str, str]] = []
    for i, row in enumerate(rows, 1):
        where = f"{path.name}: row {i}"
        if not isinstance(row, Mapping):
            raise InputError(f"{where}: expected a JSON object")
        kind = row.get("type", "passage" if "text" in row else "prompt")
        ident = str(row.get("id", f"{kind}-{i}"))
        if kind == "passage":
            text = row.get("text")
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"{where}: a passage needs a non-empty 'text'")
            passages.append((ident, text))
            continue
        if kind != "prompt":
            raise InputError(f"{where}: unknown type {kind!r} (prompt or passage)")
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"{where}: a prompt needs a non-empty 'prompt'")
        answers = row.get("answers", [])
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, Sequence) or not all(isinstance(a, str) for a in answers):
            raise InputError(f"{where}: 'answers' must be a list of strings")
        prompts.append(
            Probe(
                id=ident,
                category=str(row.get("category", "general")),
                prompt=prompt,
                answers=tuple(answers),
                max_words=_opt_int(row.get("max_words"), where),
                min_words=_opt_int(row.get("min_words"), where),
                group=str(row["group"]) if row.get("group") is not None else None,
            )
        )
    return ProbeSet(spec if spec == "general" else str(path), tuple(prompts), tuple(passages))
