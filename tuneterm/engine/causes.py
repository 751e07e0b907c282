"""Merging a finding's causes: the ones a detector computed for this run, then the rule's own,
without saying the same thing twice.

A detector's cause names this run's numbers ("LoRA trained at a full-fine-tuning learning rate
(4.97e-05)"); the rule's static list often holds the general form of the same cause ("a learning
rate too low for the method: LoRA needs ~10x the full fine-tuning rate"). Shown together they read
as a duplicate, so a static cause that repeats a computed one is left out: same text before a colon,
or most of the same words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an the and or of to in on at for with by is are be so as it its this that than from not no "
    "every each all one too very more less their them they there when where which".split()
)


def _words(text: str) -> frozenset[str]:
    # crude stemming (needs/need, adapters/adapter) is enough to compare two sentences
    words = (w[:-1] if len(w) > 3 and w.endswith("s") else w for w in _WORD.findall(text.lower()))
    return frozenset(w for w in words if len(w) > 2 and w not in _STOP)


def _head(text: str) -> str:
    head, sep, _ = text.partition(":")
    return head.strip().lower() if sep and len(head) >= 10 else ""


def same_cause(a: str, b: str, *, overlap: float = 0.4) -> bool:
    """Whether two cause texts say the same thing (see the module docstring).

    >>> same_cause("LoRA adapter frozen: reloaded without is_trainable=True",
    ...            "LoRA adapter frozen: prepare_model_for_kbit_training() on a PeftModel")
    True
    >>> same_cause("completions are cut at max_completion_length before the answer, so every one scores the same",
    ...            "completions truncated at max_completion_length before the answer, so the verifier scores all of them 0")
    True
    >>> same_cause("max_steps set for a smoke test", "an effective batch so small that the steps cover few examples")
    False
    """
    if a.strip().lower() == b.strip().lower():
        return True
    ha, hb = _head(a), _head(b)
    if ha and ha == hb:
        return True
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return False
    return len(wa & wb) / min(len(wa), len(wb)) >= overlap * 1.25 and len(wa & wb) / len(wa | wb) >= overlap


def merge_causes(computed: Iterable[str], static: Iterable[str]) -> tuple[str, ...]:
    """Computed causes first, then the static ones that repeat none of those before them."""
    out: list[str] = []
    for cause in (*computed, *static):
        if not any(same_cause(cause, kept) for kept in out):
            out.append(cause)
    return tuple(out)
