"""Per-example metrics and their comparison: ROUGE, exact match, lengths, paired bootstrap.

ROUGE-1/2/L F-measures come from Google's ``rouge-score`` package (``RougeScorer`` with
``use_stemmer=True``, as its README documents), imported lazily. Exact match uses SQuAD-style
normalisation (lower case, no punctuation, no articles, collapsed whitespace) and is only scored
where the reference is short (``<= max_words`` words): long references are never reproduced word
for word, so EM on them would say nothing.

The difference between two systems on the same examples is judged with a *paired* bootstrap: the
per-example differences are resampled with replacement ``resamples`` times (fixed seed) and the
2.5th/97.5th percentiles of the resampled means form the 95% confidence interval. An interval that
excludes 0 says the improvement (or the regression) is unlikely to be noise on this sample.
"""

from __future__ import annotations

import math
import random
import re
import statistics
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


@cache
def _scorer() -> Any:
    try:
        from rouge_score import rouge_scorer
    except ImportError as exc:  # pragma: no cover - depends on the install
        from tuneterm.errors import TunetermError

        raise TunetermError(
            "tuneterm eval needs the rouge-score package: pip install 'tuneterm[train]'"
        ) from exc
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F-measures of ``prediction`` against ``reference`` (``rouge-score``, stemmed).

    >>> r = rouge("the cat sat on the mat", "the cat sat on the mat")
    >>> r["rouge1"], r["rougeL"]
    (1.0, 1.0)
    """
    scores = _scorer().score(reference, prediction)  # rouge-score takes (target, prediction)
    return {k: float(scores[k].fmeasure) for k in ROUGE_TYPES}


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation and articles, collapse whitespace.

    >>> normalize_answer("The  Eiffel Tower!")
    'eiffel tower'
    """
    s = text.lower().translate(_PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def is_short(reference: str, max_words: int = 5) -> bool:
    """Whether ``reference`` is short enough for exact match to be meaningful."""
    return 0 < len(reference.split()) <= max_words


def exact_match(prediction: str, reference: str) -> bool:
    """Whether the normalised prediction equals the normalised reference.

    >>> exact_match("Paris.", "paris")
    True
    """
    return normalize_answer(prediction) == normalize_answer(reference)


def contains_answer(prediction: str, answers: Sequence[str]) -> bool:
    """Whether any normalised answer occurs as a whole phrase in the normalised prediction.

    >>> contains_answer("I think it is Paris, France.", ["paris"])
    True
    >>> contains_answer("Parisian", ["paris"])
    False
    """
    pred = f" {normalize_answer(prediction)} "
    return any(f" {a} " in pred for a in (normalize_answer(x) for x in answers) if a)


@dataclass(frozen=True, slots=True)
class LengthStats:
    """Response lengths of one model: words (tokenizer-independent) and generated tokens.

    ``limit_share`` is the share of generations that hit ``max_new_tokens`` without EOS.
    """

    mean_words: float
    median_words: float
    mean_tokens: float
    limit_share: float

    def to_dict(self) -> dict[str, float]:
        """JSON form."""
        return {
            "mean_words": round(self.mean_words, 2),
            "median_words": self.median_words,
            "mean_tokens": round(self.mean_tokens, 2),
            "limit_share": round(self.limit_share, 4),
        }


def length_stats(n_words: Sequence[int], n_tokens: Sequence[int], hit_limit: Sequence[bool]) -> LengthStats:
    """Mean/median words, mean tokens and the share that hit the token limit.

    >>> length_stats([2, 4, 9], [3, 5, 12], [False, False, True]).median_words
    4.0
    """
    if not n_words:
        return LengthStats(0.0, 0.0, 0.0, 0.0)
    return LengthStats(
        mean_words=statistics.fmean(n_words),
        median_words=float(statistics.median(n_words)),
        mean_tokens=statistics.fmean(n_tokens) if n_tokens else 0.0,
        limit_share=sum(hit_limit) / len(hit_limit) if hit_limit else 0.0,
    )


@dataclass(frozen=True, slots=True)
class PairedDelta:
    """Mean difference ``b - a`` over paired examples with its bootstrap confidence interval.

    Attributes:
        metric: the metric's name.
        n: number of pairs.
        a_mean, b_mean: the two systems' means (base, fine-tuned).
        delta: ``b_mean - a_mean``.
        ci_low, ci_high: the percentile bootstrap interval of ``delta`` at ``level``.
        level: confidence level (0.95).
        resamples: bootstrap resamples drawn.
        seed: RNG seed (results are reproducible).
    """

    metric: str
    n: int
    a_mean: float
    b_mean: float
    delta: float
    ci_low: float
    ci_high: float
    level: float
    resamples: int
    seed: int

    @property
    def verdict(self) -> str:
        """``better`` (CI above 0), ``worse`` (CI below 0) or ``unclear`` (CI contains 0)."""
        if self.n == 0:
            return "unclear"
        if self.ci_low > 0:
            return "better"
        if self.ci_high < 0:
            return "worse"
        return "unclear"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "metric": self.metric,
            "n": self.n,
            "base": round(self.a_mean, 6),
            "finetuned": round(self.b_mean, 6),
            "delta": round(self.delta, 6),
            "ci_low": round(self.ci_low, 6),
            "ci_high": round(self.ci_high, 6),
            "level": self.level,
            "resamples": self.resamples,
            "seed": self.seed,
            "verdict": self.verdict,
        }


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    metric: str = "",
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDelta:
    """Paired percentile bootstrap of ``mean(b) - mean(a)``.

    Resamples example indexes with replacement (the same indexes for both systems, which is what
    makes it paired), ``resamples`` times with ``random.Random(seed)``.

    Args:
        a: per-example scores of the reference system (base model).
        b: per-example scores of the compared system (fine-tuned), same order and length.
        metric: name carried into the result.
        resamples: number of bootstrap resamples (1000 is the usual choice).
        level: confidence level of the interval.
        seed: RNG seed.

    Raises:
        ValueError: ``a`` and ``b`` differ in length.

    >>> d = paired_bootstrap([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    >>> (d.delta, d.ci_low, d.ci_high, d.verdict)
    (0.0, 0.0, 0.0, 'unclear')
    >>> paired_bootstrap([0.1, 0.2, 0.3, 0.2], [0.5, 0.6, 0.6, 0.7]).verdict
    'better'
    """
    if len(a) != len(b):
        raise ValueError(f"paired bootstrap needs equal lengths, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return PairedDelta(metric, 0, math.nan, math.nan, math.nan, math.nan, math.nan, level, 0, seed)
    diffs = [float(y) - float(x) for x, y in zip(a, b, strict=True)]
    rng = random.Random(seed)
    means = []
    for _ in range(resamples):
        idx = rng.choices(range(n), k=n)
        means.append(sum(diffs[i] for i in idx) / n)
    means.sort()
    lo_q = (1.0 - level) / 2.0
    lo = means[max(0, min(resamples - 1, int(math.floor(lo_q * resamples))))]
    hi = means[max(0, min(resamples - 1, int(math.ceil((1.0 - lo_q) * resamples)) - 1))]
    a_mean = statistics.fmean(a)
    b_mean = statistics.fmean(b)
    return PairedDelta(
        metric=metric,
        n=n,
        a_mean=a_mean,
        b_mean=b_mean,
        delta=b_mean - a_mean,
        ci_low=lo,
        ci_high=hi,
        level=level,
        resamples=resamples,
        seed=seed,
    )
