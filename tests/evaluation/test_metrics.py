"""ROUGE (against rouge-score and hand-computed values), exact match, lengths, paired bootstrap."""

from __future__ import annotations

import random

import pytest

from tuneterm.evaluation.metrics import (
    contains_answer,
    exact_match,
    is_short,
    length_stats,
    normalize_answer,
    paired_bootstrap,
    rouge,
)

PAIRS = [
    ("the cat is on the mat", "the cat sat on the mat"),
    ("he was running", "he runs"),
    ("Paris is the capital of France.", "The capital of France is Paris."),
    ("", "a reference"),
    ("completely different words here", "nothing in common"),
]

# rouge-score comes with the train extra; without it these comparisons skip.
rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")


def test_rouge_hand_computed_values() -> None:
    r = rouge("the cat is on the mat", "the cat sat on the mat")
    assert r["rouge1"] == pytest.approx(5 / 6)
    assert r["rouge2"] == pytest.approx(3 / 5)
    assert r["rougeL"] == pytest.approx(5 / 6)
    # Stemming as rouge-score documents it: running/runs -> run, so 2 of 3 and 2 of 2 unigrams match.
    assert rouge("he was running", "he runs")["rouge1"] == pytest.approx(0.8)


@pytest.mark.parametrize(("prediction", "reference"), PAIRS)
def test_rouge_matches_rouge_score_reference(prediction: str, reference: str) -> None:
    ref = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(reference, prediction)
    ours = rouge(prediction, reference)
    for key in ("rouge1", "rouge2", "rougeL"):
        assert ours[key] == pytest.approx(ref[key].fmeasure)


def test_rouge_order_matters_for_precision_recall_but_f_is_symmetric() -> None:
    # F-measure is symmetric; check we did not swap target and prediction in a way that breaks it.
    a = rouge("one two three four", "one two")
    b = rouge("one two", "one two three four")
    assert a["rouge1"] == pytest.approx(b["rouge1"]) == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_exact_match_and_normalisation() -> None:
    assert normalize_answer("  The Eiffel   Tower! ") == "eiffel tower"
    assert exact_match("Paris.", "paris")
    assert not exact_match("Paris, France", "Paris")
    assert is_short("Paris") and is_short("one two three four five") and not is_short("a b c d e f")
    assert not is_short("")
    assert contains_answer("It is 19, I think", ["nineteen", "19"])
    assert not contains_answer("190", ["19"])


def test_length_stats() -> None:
    s = length_stats([1, 3, 8], [2, 4, 10], [False, True, True])
    assert s.mean_words == pytest.approx(4.0)
    assert s.median_words == 3.0
    assert s.limit_share == pytest.approx(2 / 3)
    assert length_stats([], [], []).mean_words == 0.0


def test_bootstrap_identical_systems_ci_contains_zero() -> None:
    rng = random.Random(1)
    a = [rng.random() for _ in range(100)]
    d = paired_bootstrap(a, list(a), metric="rougeL")
    assert d.delta == 0.0
    assert d.ci_low <= 0.0 <= d.ci_high
    assert d.verdict == "unclear"


def test_bootstrap_noise_only_ci_contains_zero() -> None:
    rng = random.Random(2)
    a = [rng.random() for _ in range(100)]
    b = [x + rng.gauss(0, 0.1) for x in a]  # no systematic difference
    d = paired_bootstrap(a, b)
    assert d.ci_low < 0 < d.ci_high
    assert d.verdict == "unclear"


def test_bootstrap_strictly_better_ci_above_zero() -> None:
    rng = random.Random(3)
    a = [rng.random() * 0.5 for _ in range(100)]
    b = [x + 0.05 + rng.random() * 0.1 for x in a]  # better on every example
    d = paired_bootstrap(a, b, metric="rouge1", resamples=1000, seed=0)
    assert 0 < d.ci_low <= d.delta <= d.ci_high
    assert d.verdict == "better"
    worse = paired_bootstrap(b, a)
    assert worse.ci_high < 0 and worse.verdict == "worse"


def test_bootstrap_is_reproducible_and_checks_lengths() -> None:
    rng = random.Random(4)
    a = [rng.random() for _ in range(50)]
    b = [rng.random() for _ in range(50)]
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_bootstrap([1.0], [1.0, 2.0])
    assert paired_bootstrap([], []).verdict == "unclear"
