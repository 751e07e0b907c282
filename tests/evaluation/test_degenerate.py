"""Degenerate-generation analysis (torch-free): loops, repetition, empty, never-ending."""

from __future__ import annotations

import pytest

from tuneterm.engine.detectors.degenerate import (
    check_generation,
    check_generations,
    detect_degenerate,
    summarize,
    words,
)

HEALTHY = [
    "Paris is the capital of France.",
    "def add(a, b):\n    return a + b",
    "The sea is calm tonight,\nand the moon is bright.",
    "1. red, 2. yellow, 3. blue",
    "No.",
    "东京是日本的首都。",
    "A spider has eight legs, and most spiders also have eight eyes.",
]
COLLAPSED = [
    "It It It It It It It It It It",
    "the answer is the answer is the answer is the answer is",
    "blue is is is is is is is is is is is is is is is is is is",
    "   ",
    "",
    "....",
]


@pytest.mark.parametrize("text", HEALTHY)
def test_healthy_text_is_not_degenerate(text: str) -> None:
    c = check_generation(text, hit_max_tokens=False)
    assert not c.degenerate, c
    assert c.reasons == ()


@pytest.mark.parametrize("text", COLLAPSED)
def test_collapsed_text_is_degenerate(text: str) -> None:
    assert check_generation(text).degenerate


def test_loop_details_and_reasons() -> None:
    c = check_generation("I am fine. I am fine. I am fine. I am fine.", hit_max_tokens=True)
    assert c.loop_period == 4 and c.loop_repeats == 4  # "i am fine ." x4
    assert c.reasons == ("loop", "repetitive", "never-ending")
    assert check_generation("").reasons == ("empty",)


def test_repetitive_without_back_to_back_loop() -> None:
    text = ("we like the sea and the sea is blue and we like the sea and the sky is grey and "
            "we like the sea and the sea is blue and we like the sky")
    c = check_generation(text)
    assert "repetitive" in c.reasons
    assert c.repeated_ngram_share >= 0.5


def test_never_ending_alone_is_reported_but_not_degenerate() -> None:
    c = check_generation("A long and perfectly sane answer that simply ran out of room", hit_max_tokens=True)
    assert c.reasons == ("never-ending",) and not c.degenerate


def test_words_handles_cjk_and_punctuation() -> None:
    assert words("東京, ok!") == ["東", "京", ",", "ok", "!"]


def test_summarize_and_samples_jsonl_mappings() -> None:
    rows = [
        {"step": 10, "prompt": "p", "completion": "fine answer here", "hit_max_tokens": False},
        {"step": 10, "prompt": "p", "completion": "x x x x x x x x", "hit_max_tokens": True},
        {"step": 10, "prompt": "p", "completion": "", "n_tokens": 0},
    ]
    checks = check_generations(rows)
    s = summarize(checks)
    assert s.n == 3
    assert s.degenerate_share == pytest.approx(2 / 3)
    assert s.empty_share == pytest.approx(1 / 3)
    assert s.never_ending_share == pytest.approx(1 / 2)  # known for two of three rows
    assert s.examples[0] == 1  # the longest loop first
    assert summarize([]).n == 0


def test_detect_degenerate_fires_on_collapse_not_on_healthy() -> None:
    assert detect_degenerate(HEALTHY) == []
    dets = detect_degenerate(COLLAPSED + HEALTHY[:2], step=40, label="samples")
    assert len(dets) == 1
    d = dets[0]
    assert d.severity is not None and d.severity.value == "error"  # 6 of 8 >= error_share 0.5
    assert d.first_step == 40 and d.evidence["count"] == 6 and d.evidence["n"] == 8
    assert "looping" in d.evidence["detail"]


def test_detect_degenerate_warning_threshold_and_min_generations() -> None:
    gens = ["x x x x x x x"] + HEALTHY[:3]
    d = detect_degenerate(gens)
    assert d and d[0].severity is not None and d[0].severity.value == "warning"  # 1 of 4 = 25%
    assert detect_degenerate(["x x x x x x x"], {"min_generations": 3}) == []


def test_detect_degenerate_against_a_baseline_that_already_rambles() -> None:
    bad = ["x x x x x x x"] * 3 + HEALTHY[:3]
    assert detect_degenerate(bad, baseline=bad) == []  # no worse than the base model
    assert detect_degenerate(bad, baseline=HEALTHY[:6])


def test_never_ending_share_alone_is_a_warning() -> None:
    rows = [{"completion": t, "hit_max_tokens": True} for t in HEALTHY[:5]]
    d = detect_degenerate(rows)
    assert d and d[0].severity is not None and d[0].severity.value == "warning"
    assert d[0].evidence["never_ending_pct"] == 100.0
