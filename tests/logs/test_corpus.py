"""Every corpus log parses, and the labelled facts of INDEX.md are reproduced."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.conftest import corpus_file, corpus_files
from tuneterm.logs import load_run
from tuneterm.logs.model import Run


def _loss(run: Run) -> list[float]:
    s = run.series("loss")
    assert s is not None, f"{run.source}: no loss series"
    return list(s.values)


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name[:4])
def test_every_corpus_file_parses(path: Path) -> None:
    run = load_run(path)
    assert run.format != "unknown"
    # Either metrics, or a note that says why not (the CLI turns that into exit 3).
    assert run.has_metrics() or run.notes, path.name
    for s in run.train.values():
        assert len(s.steps) == len(s.values)


@pytest.mark.parametrize(
    ("prefix", "fmt", "n_loss", "first", "last"),
    [
        ("001_", "trainer_state", 75, 3.1741, 0.273),
        ("005_", "trainer_state", 10, 0.9974, 29.559),
        ("015_", "trainer_state", 866, 2.4977, 0.1333),
        ("016_", "llamafactory_jsonl", 866, 2.4977, 0.1333),
        ("019_", "console", 16, 0.6922, 0.6804),
        ("026_", "trainer_state", 2800, 3.4837, 3.0395),
        ("029_", "trainer_state", 24000, 3.7141, None),
        ("044_", "llamafactory_jsonl", 1742, 1.7484, None),
        ("049_", "console", 24, 12.4476, 0.488),
        ("050_", "console", 33, 0.9528, 0.9437),
        ("052_", "console", 48, 2.0905, None),
        ("053_", "console", 60, 2.4763, None),
        ("055_", "csv", 3, 0.38600707054138184, 0.113),
        ("057_", "json_metrics", 10, 10.322242736816406, None),
        ("058_", "log_history", 7, 0.3741, 0.0144),
    ],
)
def test_loss_series_per_format(prefix: str, fmt: str, n_loss: int, first: float, last: float | None) -> None:
    run = load_run(corpus_file(prefix))
    assert run.format == fmt
    loss = _loss(run)
    assert len(loss) == n_loss
    assert loss[0] == pytest.approx(first, rel=1e-3)
    if last is not None:
        assert loss[-1] == pytest.approx(last, rel=1e-2)


def test_nan_and_infinity_are_data() -> None:
    g2 = load_run(corpus_file("002_")).series("grad_norm")
    assert g2 is not None and math.isinf(dict(g2)[33])
    g3 = load_run(corpus_file("003_")).series("grad_norm")
    assert g3 is not None and [s for s, v in g3 if math.isnan(v)] == [1, 2, 6]
    g4 = load_run(corpus_file("004_")).series("grad_norm")
    assert g4 is not None and math.isnan(dict(g4)[5]) and math.isinf(dict(g4)[18])
    g57 = load_run(corpus_file("057_")).series("grad_norm")
    assert g57 is not None and [s for s, v in g57 if math.isnan(v)] == [1, 2, 3]


def test_multiple_eval_sets_without_plain_eval() -> None:
    run = load_run(corpus_file("012_"))
    assert sorted(run.evals) == [f"eval_g{i}" for i in range(6)]
    assert "eval" not in run.evals
    g0 = run.series("loss", "eval_g0")
    assert g0 is not None
    best_step, best = min(g0, key=lambda sv: sv[1])
    assert (best_step, round(best, 3)) == (401, 1.114)
    assert g0.values[-1] == pytest.approx(2.749, abs=1e-3)
    assert run.series("accuracy", "eval_g0") is not None
    # runtime keys are not series
    assert all("runtime" not in k for b in run.evals.values() for k in b)


def test_string_values_transformers5() -> None:
    run = load_run(corpus_file("035_"))
    assert _loss(run)[0] == pytest.approx(-0.1081)
    assert run.series("completions/clipped_ratio") is not None
    # the `{'step': 0, 'agent_id': 'market_maker', ...}` app dict is not a metric entry
    assert any("non-metric" in n for n in run.notes)
    assert "agent_id" not in run.train


def test_dict_glued_to_tqdm_and_buffered_stdout() -> None:
    # 019: the first dict is glued to the bar at 50/160 but is the step-10 log (stdout buffering).
    console = load_run(corpus_file("019_"))
    state = load_run(corpus_file("018_"))
    cl, sl = console.series("loss"), state.series("loss")
    assert cl is not None and sl is not None
    assert list(cl.steps) == list(sl.steps)
    assert list(cl.values) == list(sl.values)
    assert console.facts.max_steps == 160
    ev_c, ev_s = console.series("loss", "eval"), state.series("loss", "eval")
    assert ev_c is not None and ev_s is not None
    assert list(ev_c.steps) == list(ev_s.steps)[:3]


def test_interrupted_run_has_keyboard_interrupt_event() -> None:
    run = load_run(corpus_file("049_"))
    codes = [e.code for e in run.events if e.kind == "exception"]
    assert "KeyboardInterrupt" in codes
    ev = next(e for e in run.events if e.code == "KeyboardInterrupt")
    assert ev.step == 240 and ev.line is not None and ev.line > 3000
    assert run.series("loss", "eval") is not None
    assert run.facts.max_steps == 8264 and run.facts.finished is False
    assert run.facts.trainable_params == 25_460_736


@pytest.mark.parametrize(("a", "b"), [("015_", "016_"), ("018_", "019_"), ("020_", "021_"), ("034_", "035_")])
def test_same_run_two_formats_same_loss(a: str, b: str) -> None:
    ra, rb = load_run(corpus_file(a)), load_run(corpus_file(b))
    la, lb = ra.series("loss"), rb.series("loss")
    assert la is not None and lb is not None
    assert list(la.steps) == list(lb.steps)
    assert list(la.values) == pytest.approx(list(lb.values), rel=1e-3)


@pytest.mark.parametrize(
    ("prefix", "kind"),
    [
        ("007_", "grpo"),
        ("008_", "grpo"),
        ("010_", "grpo"),
        ("034_", "grpo"),
        ("035_", "grpo"),
        ("017_", "dpo"),
        ("018_", "dpo"),
        ("019_", "dpo"),
        ("020_", "dpo"),
        ("021_", "dpo"),
        ("011_", "classification"),
        ("037_", "classification"),
        ("058_", "classification"),
        ("055_", "classification"),
        ("014_", "sft"),
        ("015_", "sft"),
        ("050_", "sft"),
    ],
)
def test_trainer_kind(prefix: str, kind: str) -> None:
    assert load_run(corpus_file(prefix)).facts.trainer_kind == kind


def test_orpo_algorithm() -> None:
    assert load_run(corpus_file("020_")).facts.algorithm == "orpo"


def test_trainer_state_facts() -> None:
    f = load_run(corpus_file("011_")).facts
    assert (f.global_step, f.max_steps, f.logging_steps, f.eval_steps) == (8920, 8920, 10, 100)
    assert f.best_model_checkpoint.endswith("checkpoint-2600")
    assert f.finished is True
    f7 = load_run(corpus_file("007_")).facts
    assert (f7.global_step, f7.max_steps, f7.finished) == (100, 200, False)


def test_runs_without_metrics_say_why() -> None:
    r31 = load_run(corpus_file("031_"))
    assert not r31.has_metrics()
    assert r31.notes == ["log_history is empty: 87 steps < logging_steps 500"]
    r46 = load_run(corpus_file("046_"))
    assert not r46.has_metrics() and "no training metrics" in r46.notes[-1]
    r32 = load_run(corpus_file("032_"))
    assert not r32.has_metrics() and "train_loss" in r32.summary
    assert "summary" in r32.notes[-1]


def test_llamafactory_old_schema_nulls_and_preference_accuracy() -> None:
    r44 = load_run(corpus_file("044_"))
    assert r44.series("loss", "eval") is None  # explicit nulls are not points
    r45 = load_run(corpus_file("045_"))
    assert r45.series("rewards/accuracies") is not None
    assert r45.facts.trainer_kind == "dpo" and r45.facts.max_steps == 5100


def test_deepspeed_config_dicts_skipped() -> None:
    run = load_run(corpus_file("051_"))
    assert len(_loss(run)) == 49
    ev = run.series("loss", "eval")
    assert ev is not None and len(ev) == 9
    assert run.summary["train_loss"] == pytest.approx(4.5972, rel=1e-4)
    assert set(run.train) <= {"loss", "grad_norm", "learning_rate", "epoch"}


def test_tqdm_postfix_only_log() -> None:
    run = load_run(corpus_file("054_"))
    loss = run.series("loss")
    assert loss is not None and loss.values[0] == pytest.approx(6.053)
    assert loss.values[-1] == 0.0 and loss.steps[-1] == 375
    assert list(loss.steps) == sorted(set(loss.steps))


def test_console_headers_and_metrics_block() -> None:
    run = load_run(corpus_file("052_"))
    f = run.facts
    assert (f.num_examples, f.num_train_epochs, f.train_batch_size) == (180, 20.0, 1)
    assert (f.total_train_batch_size, f.gradient_accumulation_steps, f.max_steps) == (16, 16, 240)
    assert f.trainable_params == 184_549_376
    assert run.summary["train_loss"] == pytest.approx(0.1985)
    loss = run.series("loss")
    assert loss is not None and loss.steps[0] == 5 and loss.steps[-1] == 240


def test_csv_phase_column_and_malformed_cell() -> None:
    run = load_run(corpus_file("056_"))
    ev = run.series("loss", "eval")
    assert ev is not None and list(ev.values) == pytest.approx([2.611324, 2.344437])
    assert list(ev.steps) == [7657, 15314]  # the row with epoch `2.02.0000` is kept
    assert any("malformed" in n for n in run.notes)


def test_keras_csv_val_columns() -> None:
    run = load_run(corpus_file("055_"))
    ev = run.series("loss", "eval")
    assert ev is not None and list(ev.steps) == [1, 2, 3]
    assert ev.values[-1] == pytest.approx(0.4431, rel=1e-3)
    assert run.series("accuracy", "eval") is not None


def test_custom_keys_and_lr_alias() -> None:
    run = load_run(corpus_file("030_"))
    assert run.series("learning_rate") is not None and "lr" not in run.train
    assert "acc_0" in run.train and "remaining_time" not in run.train


def test_predict_keys_go_to_summary() -> None:
    run = load_run(corpus_file("039_"))
    assert "predict_loss" in run.summary
    assert "predict" not in run.evals and "predict_loss" not in run.train
    assert run.series("rouge-1", "eval") is not None


def test_console_line_numbers_point_into_file() -> None:
    path = corpus_file("053_")
    run = load_run(path)
    lines = path.read_text().split("\n")
    step, line = next(iter(run.lines.items()))
    assert "'loss'" in lines[line - 1]
    assert run.lines.get(step) == line
