"""Degenerate-generation analysis: empty, looping, repetitive and never-ending outputs.

Pure text analysis, no torch: the same functions judge the generations of ``tuneterm eval`` (base
vs fine-tuned on held-out prompts and on the forgetting probes) and the samples a training run
writes to ``samples.jsonl`` (the live watcher raises the ``degenerate-generations`` finding from
them). A model that collapsed during fine-tuning ("It It It It ...", the same phrase looping until
the token limit, empty answers, or never emitting EOS) shows it here long before any loss curve
does (unslothai/unsloth#1787, huggingface/trl#976, smallcloudai/refact#311).

Each generation gets a :class:`GenerationCheck` with the reasons it is suspicious:

``empty``
    nothing but whitespace/punctuation was generated.
``loop``
    a unit of 1..``max_period`` words repeats back to back at least ``min_repeats`` times
    (``"the cat the cat the cat"``) and the looping span covers at least ``min_loop_share`` of the
    words; single-word loops need ``min_repeats_single`` repeats (lists like "no, no" are fine).
``repetitive``
    at least ``max_repeated_ngram_share`` of the word ``n``-grams are repeats of an earlier one (the
    text says the same things over and over without a clean back-to-back loop).
``never-ending``
    the generation hit the token limit without emitting EOS. Reported separately: a long but sane
    answer can hit the limit too, so it makes a generation degenerate only together with another
    reason; a *share* of never-ending outputs near 1 is its own signal (the EOS was never learned).

:func:`summarize` aggregates a list of checks; :func:`detect_degenerate` turns a list of generations
into :class:`~tuneterm.engine.model.Detection` records using thresholds from the rule record
(``rules/diagnostics/generalization.yaml``, ``degenerate-generations``), optionally against a baseline (the base model).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneterm.engine.model import Detection, Severity

# Words, numbers and single punctuation marks; CJK/kana/hangul characters count one each because
# those scripts do not separate words with spaces.
_WORDS = re.compile(
    r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]"
    r"|[^\W_\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]+"
    r"|[^\w\s]"
)
_ALNUM = re.compile(r"\w")

DEFAULTS: Mapping[str, Any] = {
    "max_period": 16,
    "min_repeats": 3,
    "min_repeats_single": 5,
    "min_loop_share": 0.3,
    "ngram": 3,
    "max_repeated_ngram_share": 0.5,
    "min_words_for_repetition": 12,
}
"""Per-generation thresholds (overridable through the rule's ``params``)."""


def words(text: str) -> list[str]:
    """Split ``text`` into lower-cased word/number/punctuation units.

    >>> words("It's 42, OK?")
    ['it', "'", 's', '42', ',', 'ok', '?']
    """
    return [w.lower() for w in _WORDS.findall(text)]


@dataclass(frozen=True, slots=True)
class GenerationCheck:
    """The verdict on one generation.

    Attributes:
        n_words: number of word units (:func:`words`).
        empty: nothing but whitespace/punctuation.
        loop_period: length in words of the repeating unit of the longest back-to-back loop, or 0.
        loop_repeats: how many times that unit repeats in a row.
        loop_share: share of the words covered by that loop (0..1).
        repeated_ngram_share: share of word n-grams that repeat an earlier n-gram (0..1).
        never_ending: hit the token limit without EOS (``None`` when unknown).
        reasons: ``empty``, ``loop``, ``repetitive``, ``never-ending`` as applicable.
        degenerate: empty, looping or repetitive (never-ending alone is not degenerate).
    """

    n_words: int
    empty: bool
    loop_period: int
    loop_repeats: int
    loop_share: float
    repeated_ngram_share: float
    never_ending: bool | None
    reasons: tuple[str, ...]
    degenerate: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "n_words": self.n_words,
            "empty": self.empty,
            "loop_period": self.loop_period,
            "loop_repeats": self.loop_repeats,
            "loop_share": round(self.loop_share, 4),
            "repeated_ngram_share": round(self.repeated_ngram_share, 4),
            "never_ending": self.never_ending,
            "reasons": list(self.reasons),
            "degenerate": self.degenerate,
        }


def _longest_loop(units: Sequence[str], max_period: int) -> tuple[int, int, int]:
    """Return ``(period, repeats, span)`` of the back-to-back repetition covering most words.

    For each period p, scan once keeping the length of the current run where ``units[i] ==
    units[i - p]``; a run of length r means the unit repeats ``1 + r // p`` times over ``p + r``
    words. O(n * max_period).

    >>> _longest_loop("a b a b a b c".split(), 4)
    (2, 3, 6)
    """
    best = (0, 0, 0)
    n = len(units)
    for p in range(1, min(max_period, n // 2) + 1):
        run = 0
        for i in range(p, n + 1):
            if i < n and units[i] == units[i - p]:
                run += 1
                continue
            if run >= p:
                span = p + run
                repeats = span // p
                if span > best[2] or (span == best[2] and p < best[0]):
                    best = (p, repeats, span)
            run = 0
    return best


def check_generation(
    text: str,
    *,
    hit_max_tokens: bool | None = None,
    params: Mapping[str, Any] | None = None,
) -> GenerationCheck:
    """Judge one generation.

    Args:
        text: the generated text (completion only, without the prompt).
        hit_max_tokens: whether generation stopped at the token limit without EOS (``None``:
            unknown, e.g. a samples.jsonl line without the field).
        params: overrides for :data:`DEFAULTS`.

    Returns:
        A :class:`GenerationCheck`.

    >>> check_generation("It It It It It It It It").reasons
    ('loop',)
    >>> check_generation("Paris is the capital of France.").degenerate
    False
    >>> check_generation("  ...  ").reasons
    ('empty',)
    """
    p = {**DEFAULTS, **(params or {})}
    units = words(text)
    empty = not _ALNUM.search(text)
    period, repeats, span = _longest_loop(units, int(p["max_period"]))
    n = len(units)
    loop_share = span / n if n else 0.0
    need = int(p["min_repeats_single"]) if period == 1 else int(p["min_repeats"])
    is_loop = period > 0 and repeats >= need and loop_share >= float(p["min_loop_share"])

    k = int(p["ngram"])
    grams = [tuple(units[i : i + k]) for i in range(max(0, n - k + 1))]
    repeated_share = (1.0 - len(set(grams)) / len(grams)) if grams else 0.0
    is_repetitive = n >= int(p["min_words_for_repetition"]) and repeated_share >= float(
        p["max_repeated_ngram_share"]
    )

    reasons: list[str] = []
    if empty:
        reasons.append("empty")
    if is_loop and not empty:
        reasons.append("loop")
    if is_repetitive and not empty:
        reasons.append("repetitive")
    if hit_max_tokens:
        reasons.append("never-ending")
    return GenerationCheck(
        n_words=n,
        empty=empty,
        loop_period=period if is_loop else 0,
        loop_repeats=repeats if is_loop else 0,
        loop_share=loop_share if is_loop else 0.0,
        repeated_ngram_share=repeated_share,
        never_ending=hit_max_tokens,
        reasons=tuple(reasons),
        degenerate=empty or "loop" in reasons or "repetitive" in reasons,
    )


@dataclass(frozen=True, slots=True)
class DegenerateSummary:
    """Shares over a set of generations (each 0..1; ``None`` where nothing is known).

    Attributes:
        n: number of generations.
        empty_share, loop_share, repetitive_share: share with each reason.
        degenerate_share: share that are degenerate (empty, loop or repetitive).
        never_ending_share: share that hit the token limit without EOS, over those where it is
            known (``None`` when no generation says).
        mean_words, median_words: response length in words.
        examples: indexes of up to 5 degenerate generations, worst (longest loop) first.
    """

    n: int
    empty_share: float
    loop_share: float
    repetitive_share: float
    degenerate_share: float
    never_ending_share: float | None
    mean_words: float
    median_words: float
    examples: tuple[int, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "n": self.n,
            "empty_share": round(self.empty_share, 4),
            "loop_share": round(self.loop_share, 4),
            "repetitive_share": round(self.repetitive_share, 4),
            "degenerate_share": round(self.degenerate_share, 4),
            "never_ending_share": None
            if self.never_ending_share is None
            else round(self.never_ending_share, 4),
            "mean_words": round(self.mean_words, 2),
            "median_words": self.median_words,
            "examples": list(self.examples),
        }


def summarize(checks: Sequence[GenerationCheck]) -> DegenerateSummary:
    """Aggregate per-generation checks into shares.

    >>> s = summarize([check_generation("ok then"), check_generation("")])
    >>> (s.n, s.empty_share, s.degenerate_share)
    (2, 0.5, 0.5)
    """
    n = len(checks)
    if n == 0:
        return DegenerateSummary(0, 0.0, 0.0, 0.0, 0.0, None, 0.0, 0.0)
    known = [c.never_ending for c in checks if c.never_ending is not None]
    bad = sorted(
        (i for i, c in enumerate(checks) if c.degenerate),
        key=lambda i: (-checks[i].loop_share, -checks[i].repeated_ngram_share, i),
    )
    lengths = [c.n_words for c in checks]
    return DegenerateSummary(
        n=n,
        empty_share=sum(c.empty for c in checks) / n,
        loop_share=sum("loop" in c.reasons for c in checks) / n,
        repetitive_share=sum("repetitive" in c.reasons for c in checks) / n,
        degenerate_share=sum(c.degenerate for c in checks) / n,
        never_ending_share=(sum(known) / len(known)) if known else None,
        mean_words=statistics.fmean(lengths),
        median_words=float(statistics.median(lengths)),
        examples=tuple(bad[:5]),
    )


def check_generations(
    generations: Iterable[str | Mapping[str, Any]],
    params: Mapping[str, Any] | None = None,
) -> list[GenerationCheck]:
    """Check many generations: plain strings, or mappings as in ``samples.jsonl``.

    A mapping's text is taken from ``completion`` (else ``text``/``generation``/``output``) and its
    token-limit flag from ``hit_max_tokens`` (else ``never_ending``).

    >>> [c.degenerate for c in check_generations(["fine answer", {"completion": "a a a a a a"}])]
    [False, True]
    """
    out: list[GenerationCheck] = []
    for g in generations:
        if isinstance(g, str):
            out.append(check_generation(g, params=params))
            continue
        text = next(
            (g[k] for k in ("completion", "text", "generation", "output") if isinstance(g.get(k), str)),
            "",
        )
        hit = g.get("hit_max_tokens", g.get("never_ending"))
        out.append(check_generation(text, hit_max_tokens=hit if isinstance(hit, bool) else None, params=params))
    return out


DETECT_DEFAULTS: Mapping[str, Any] = {
    "min_generations": 3,
    "warn_share": 0.2,
    "error_share": 0.5,
    "never_ending_share": 0.9,
    "min_increase": 0.15,
}
"""Set-level thresholds for :func:`detect_degenerate` (the rule record overrides them)."""


def detect_degenerate(
    generations: Iterable[str | Mapping[str, Any]],
    params: Mapping[str, Any] | None = None,
    *,
    baseline: Iterable[str | Mapping[str, Any]] | None = None,
    label: str = "generations",
    step: int | None = None,
) -> list[Detection]:
    """Decide whether a set of generations is degenerate; the ``degenerate-generations`` logic.

    Fires when the degenerate share reaches ``warn_share`` (warning) or ``error_share`` (error), or
    when at least ``never_ending_share`` of the generations hit the token limit without EOS
    (warning: the model never learned to stop). With a ``baseline`` (the base model on the same
    prompts) it fires only when the share also exceeds the baseline's by ``min_increase``: a base
    model that already rambles is not made worse by the fine-tune. Fewer than ``min_generations``
    generations decide nothing.

    Args:
        generations: the generations to judge (strings or samples.jsonl-style mappings).
        params: thresholds (:data:`DETECT_DEFAULTS` and :data:`DEFAULTS` keys).
        baseline: the same prompts answered by a reference model, if any.
        label: what the generations are (shown in the evidence, e.g. ``"held-out answers"``).
        step: the training step the generations come from (samples.jsonl), else ``None``.

    Returns:
        Zero or one :class:`Detection`; its evidence fills the rule's message template with
        ``label``, ``degenerate_share``, ``n``, ``count`` (generations that are degenerate or
        never-ending), ``never_ending_share``, ``empty_share``,
        ``loop_share``, ``repetitive_share``, ``baseline_share``, a readable ``detail`` and up to 3
        ``examples``.

    >>> d = detect_degenerate(["x x x x x x x"] * 4 + ["a fine answer"])
    >>> d[0].severity.value, d[0].evidence["count"]
    ('error', 4)
    >>> detect_degenerate(["a fine answer", "another one", "and a third"])
    []
    """
    p = {**DETECT_DEFAULTS, **(params or {})}
    gens = list(generations)
    checks = check_generations(gens, p)
    s = summarize(checks)
    if s.n < int(p["min_generations"]):
        return []
    base_share: float | None = None
    base_ne: float | None = None
    if baseline is not None:
        bs = summarize(check_generations(baseline, p))
        base_share, base_ne = bs.degenerate_share, bs.never_ending_share
    inc = float(p["min_increase"])
    severity: Severity | None = None
    if s.degenerate_share >= float(p["warn_share"]) and (
        base_share is None or s.degenerate_share - base_share >= inc
    ):
        severity = Severity.ERROR if s.degenerate_share >= float(p["error_share"]) else Severity.WARNING
    ne = s.never_ending_share
    if (
        severity is None
        and ne is not None
        and ne >= float(p["never_ending_share"])
        and (base_ne is None or ne - base_ne >= inc)
    ):
        severity = Severity.WARNING
    if severity is None:
        return []

    def _text(g: str | Mapping[str, Any]) -> str:
        if isinstance(g, str):
            return g
        return str(next((g[k] for k in ("completion", "text", "generation", "output") if k in g), ""))

    worst = list(s.examples) or [i for i, c in enumerate(checks) if c.never_ending][:3]
    examples = [_text(gens[i])[:160] for i in worst[:3]]
    parts = [
        f"{round(share * s.n)} {what}"
        for what, share in (("looping", s.loop_share), ("repetitive", s.repetitive_share), ("empty", s.empty_share))
        if share > 0
    ]
    if ne is not None:
        parts.append(f"{100 * ne:.0f}% never stopped")
    if base_share is not None:
        parts.append(f"base model {100 * base_share:.0f}% degenerate")
    evidence: dict[str, Any] = {
        "detail": "; ".join(parts) or "none",
        "label": label,
        "n": s.n,
        "count": sum(c.degenerate or bool(c.never_ending) for c in checks),
        "degenerate_share": round(s.degenerate_share, 3),
        "degenerate_pct": round(100 * s.degenerate_share, 1),
        "empty_share": round(s.empty_share, 3),
        "loop_share": round(s.loop_share, 3),
        "repetitive_share": round(s.repetitive_share, 3),
        "never_ending_share": None if ne is None else round(ne, 3),
        "never_ending_pct": None if ne is None else round(100 * ne, 1),
        "baseline_share": None if base_share is None else round(base_share, 3),
        "examples": examples,
    }
    return [Detection(first_step=step, last_step=step, evidence=evidence, severity=severity)]
