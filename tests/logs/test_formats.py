"""Formats built in the test: checkpoint/output dirs, run dirs, MLflow, TensorBoard, JSONL, console
shapes (torchtune, LLaMA-Factory, Unsloth, tracebacks, warnings), and name normalisation."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from tests.conftest import corpus_file
from tuneterm.logs import load_run
from tuneterm.runs.load import load_source
from tuneterm.logs.names import classify, plan_keys


# ------------------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("lr", ("train", None, "learning_rate")),
        ("train/loss", ("train", None, "loss")),
        ("train_loss", ("train", None, "loss")),
        ("completion_length", ("train", None, "completions/mean_length")),
        ("eval_loss", ("eval", "eval", "loss")),
        ("eval/loss", ("eval", "eval", "loss")),
        ("val_loss", ("eval", "eval", "loss")),
        ("validation_loss", ("eval", "eval", "loss")),
        ("eval_rewards/chosen", ("eval", "eval", "rewards/chosen")),
        ("predict_loss", ("summary", None, "predict_loss")),
        ("test_accuracy", ("summary", None, "test_accuracy")),
        ("train_runtime", ("skip", None, "train_runtime")),
        ("eval_samples_per_second", ("skip", None, "eval_samples_per_second")),
        ("total_flos", ("skip", None, "total_flos")),
        ("my_custom_metric", ("train", None, "my_custom_metric")),
    ],
)
def test_classify(key: str, expected: tuple[str, str | None, str]) -> None:
    assert classify(key) == expected


def test_eval_set_split_needs_evidence() -> None:
    plan = {k: (d, s, n) for k, d, s, n in plan_keys(("eval_g0_loss", "eval_g0_runtime", "epoch", "step"))}
    assert plan["eval_g0_loss"] == ("eval", "eval_g0", "loss")
    assert plan["eval_g0_runtime"][0] == "skip"
    # `eval_log_loss` beside `eval_loss` is a metric called log_loss, not a set called "log"
    plan2 = {k: (d, s, n) for k, d, s, n in plan_keys(("eval_loss", "eval_log_loss", "eval_runtime"))}
    assert plan2["eval_log_loss"] == ("eval", "eval", "log_loss")


def test_summary_entry_goes_to_summary() -> None:
    plan = {k: d for k, d, _, _ in plan_keys(("train_runtime", "train_loss", "epoch", "step"))}
    assert plan["train_loss"] == "summary" and plan["epoch"] == "epoch"
    # a per-step `train_loss` (custom loops) is the loss series
    per_step = {k: (d, n) for k, d, _, n in plan_keys(("train_loss", "epoch", "step"))}
    assert per_step["train_loss"] == ("train", "loss")


# --------------------------------------------------------------------------- JSON / directories
def _state(entries: list[dict[str, object]], **top: object) -> str:
    doc = {"global_step": top.get("global_step", 0), "log_history": entries, **top}
    return json.dumps(doc)


def test_checkpoint_dir_picks_latest_by_number(tmp_path: Path) -> None:
    for n, loss in ((9, 9.0), (10, 10.0)):
        c = tmp_path / f"checkpoint-{n}"
        c.mkdir()
        (c / "trainer_state.json").write_text(
            _state([{"loss": loss, "step": n}], global_step=n, max_steps=10)
        )
    (tmp_path / "checkpoint-10" / "adapter_config.json").write_text(
        json.dumps(
            {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"],
             "use_dora": False, "base_model_name_or_path": "Qwen/Qwen2.5-0.5B"}
        )
    )
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "qwen2", "vocab_size": 151936, "architectures": ["Qwen2ForCausalLM"],
                    "torch_dtype": "bfloat16",
                    "quantization_config": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}})
    )
    (tmp_path / "train.yaml").write_text(
        "learning_rate: 2e-4\nlr_scheduler_type: cosine\nper_device_train_batch_size: 4\n"
        "gradient_accumulation_steps: 8\ngradient_checkpointing: true\nbf16: true\nwarmup_ratio: 0.03\n"
    )
    run = load_run(tmp_path)
    assert run.series("loss") is not None and run.series("loss").values[0] == 10.0  # type: ignore[union-attr]
    assert run.source.endswith("checkpoint-10/trainer_state.json")
    f = run.facts
    assert (f.peft_type, f.lora_r, f.lora_alpha, f.lora_target_modules, f.use_dora) == (
        "LORA", 16, 32.0, ("q_proj", "v_proj"), False)
    assert (f.model_type, f.vocab_size, f.quantization, f.model_name) == (
        "qwen2", 151936, "nf4", "Qwen/Qwen2.5-0.5B")
    assert (f.learning_rate, f.lr_scheduler_type, f.train_batch_size) == (2e-4, "cosine", 4)
    assert (f.gradient_accumulation_steps, f.total_train_batch_size) == (8, 32)
    assert (f.gradient_checkpointing, f.bf16, f.warmup_ratio) == (True, True, 0.03)


class _Bomb:
    """Unpickling this runs code; the parser must never unpickle training_args.bin."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_explode, ("training_args.bin was unpickled",))


def _explode(msg: str) -> None:
    raise AssertionError(msg)


def test_training_args_bin_is_never_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import io
    import pickle

    (tmp_path / "training_args.bin").write_bytes(pickle.dumps(_Bomb()))
    (tmp_path / "trainer_state.json").write_text(_state([{"loss": 1.0, "step": 1}], global_step=1))
    opened: list[str] = []
    real_open = builtins.open
    real_io_open = io.open

    def spy(file: object, *a: object, **k: object) -> object:
        opened.append(str(file))
        return real_open(file, *a, **k)  # type: ignore[call-overload]

    def spy_io(file: object, *a: object, **k: object) -> object:
        opened.append(str(file))
        return real_io_open(file, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy_io)
    run = load_run(tmp_path)
    monkeypatch.undo()
    assert run.has_metrics()
    assert any(p.endswith("trainer_state.json") for p in opened)  # the spy sees real opens
    assert not any(p.endswith("training_args.bin") for p in opened)


def test_bare_log_history_and_metrics_list(tmp_path: Path) -> None:
    p = tmp_path / "whatever.json"
    p.write_text(json.dumps([{"loss": 2.0, "step": 5}, {"eval_loss": 1.5, "step": 5}]))
    run = load_run(p)
    assert run.format == "log_history"
    assert run.series("loss", "eval") is not None


def test_wrong_shape_json_is_no_metrics(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text('{"a": [1, 2, {"b": "c"}]}')
    run = load_run(p)
    assert not run.has_metrics() and "no log_history" in run.notes[-1]
    p.write_text('{"log_history": [1, "two", {"loss": "bad"}, {"loss": true}]}')
    run = load_run(p)
    assert not run.has_metrics()


def test_generic_jsonl_with_step_keys(tmp_path: Path) -> None:
    p = tmp_path / "metrics.log"
    lines = [{"_step": i, "train/loss": 3.0 - i / 10, "train/lr": 1e-4} for i in range(1, 6)]
    lines.append({"_step": 5, "eval/loss": 2.6})
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    run = load_run(p)
    assert run.format == "jsonl"
    loss = run.series("loss")
    assert loss is not None and list(loss.steps) == [1, 2, 3, 4, 5]
    assert run.series("learning_rate") is not None
    assert run.series("loss", "eval") is not None


# ------------------------------------------------------------------------------- run directory
def _run_dir(tmp_path: Path, status: dict[str, object], stderr: str = "") -> Path:
    d = tmp_path / "runs" / "r1"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text("learning_rate: 1.0e-4\nlogging_steps: 1\nmax_steps: 4\nlora_r: 8\n")
    rows = [
        '{"loss": 2.5, "grad_norm": 1.0, "learning_rate": 1e-4, "epoch": 0.25, "step": 1, "time": 1.0}',
        '{"loss": "2.4", "grad_norm": NaN, "learning_rate": 1e-4, "epoch": 0.5, "step": 2, "time": 2.0}',
        '{"eval_loss": 2.45, "eval_runtime": 0.5, "epoch": 0.5, "step": 2, "time": 2.5}',
    ]
    (d / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    (d / "status.json").write_text(json.dumps(status))
    (d / "stdout.log").write_text("{'loss': 9.9, 'epoch': 0.1}\n")  # metrics come from metrics.jsonl
    (d / "stderr.log").write_text(stderr)
    (d / "samples.jsonl").write_text(
        '{"step": 2, "prompt": "Hi", "completion": "[bold]x[/bold]", "n_tokens": 3, "hit_max_tokens": false}\nnot json\n'
    )
    (d / "gpu.jsonl").write_text('{"step": 1, "device": "cpu", "rss_mb": 100}\n')
    return d


def test_run_dir_failed_with_traceback(tmp_path: Path) -> None:
    tb = (
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    )
    d = _run_dir(tmp_path, {"state": "failed", "exit_code": 1, "error": "OOM", "max_steps": 4}, tb)
    run = load_source(d)
    assert run.format == "run_dir"
    loss = run.series("loss")
    assert loss is not None and list(loss) == [(1, 2.5), (2, 2.4)]  # stdout.log dict ignored
    gn = run.series("grad_norm")
    assert gn is not None and math.isnan(gn.values[1])
    assert run.series("loss", "eval") is not None and "time" not in run.train
    assert [(e.kind, e.code, e.step) for e in run.events] == [("oom", "cuda-oom", 2)]
    assert (run.facts.learning_rate, run.facts.lora_r, run.facts.max_steps) == (1e-4, 8, 4)
    assert run.samples == [
        {"step": 2, "prompt": "Hi", "completion": "[bold]x[/bold]", "n_tokens": 3, "hit_max_tokens": False}
    ]
    assert any("samples.jsonl" in n for n in run.notes)


def test_run_dir_failed_without_traceback_gets_event(tmp_path: Path) -> None:
    d = _run_dir(tmp_path, {"state": "failed", "exit_code": 1, "error": "ValueError: bad dataset"})
    run = load_source(d)
    assert [(e.kind, e.code) for e in run.events] == [("exception", "ValueError")]
    d2 = _run_dir(tmp_path / "b", {"state": "failed", "exit_code": -9})
    run2 = load_source(d2)
    assert [(e.kind, e.code) for e in run2.events] == [("signal", "SIGKILL")]
    d3 = _run_dir(tmp_path / "c", {"state": "finished", "exit_code": 0})
    run3 = load_source(d3)
    assert run3.events == [] and run3.facts.finished is True


# ------------------------------------------------------------------------ MLflow / TensorBoard
def test_mlflow_file_store(tmp_path: Path) -> None:
    run_dir = tmp_path / "mlruns" / "0" / "abc123"
    (run_dir / "metrics" / "eval").mkdir(parents=True)
    (run_dir / "params").mkdir()
    (run_dir / "meta.yaml").write_text("run_id: abc123\n")
    (run_dir / "params" / "learning_rate").write_text("5e-05")
    (run_dir / "params" / "per_device_train_batch_size").write_text("8")
    t = 1700000000000
    (run_dir / "metrics" / "loss").write_text(
        "".join(f"{t + i} {3.0 - i * 0.1} {i * 10}\n" for i in range(1, 6))
    )
    (run_dir / "metrics" / "eval" / "loss").write_text(f"{t} 2.9 50\n")
    (run_dir / "metrics" / "grad_norm").write_text(f"{t} nan 10\n{t} 1.0 20\n")
    for target in (tmp_path / "mlruns", tmp_path / "mlruns" / "0", run_dir):
        run = load_run(target)
        assert run.format == "mlflow"
        loss = run.series("loss")
        assert loss is not None and list(loss.steps) == [10, 20, 30, 40, 50]
        assert run.series("loss", "eval") is not None
        gn = run.series("grad_norm")
        assert gn is not None and math.isnan(gn.values[0])
        assert (run.facts.learning_rate, run.facts.train_batch_size) == (5e-05, 8)


def test_tensorboard_event_file(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    w = EventFileWriter(str(tmp_path))
    for step in range(1, 11):
        vals = [
            Summary.Value(tag="train/loss", simple_value=2.0 / step),
            Summary.Value(tag="train/grad_norm", simple_value=0.0),
            Summary.Value(tag="train/learning_rate", simple_value=1e-4),
        ]
        if step % 5 == 0:
            vals.append(Summary.Value(tag="eval/loss", simple_value=1.0 / step))
        w.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=vals)))
    w.close()
    for target in (tmp_path, next(tmp_path.glob("events.out.tfevents*"))):
        run = load_run(target)
        assert run.format == "tensorboard"
        loss = run.series("loss")
        assert loss is not None and len(loss) == 10 and loss.values[0] == 2.0
        assert run.series("grad_norm") is not None and run.series("learning_rate") is not None
        ev = run.series("loss", "eval")
        assert ev is not None and list(ev.steps) == [5, 10]


# ------------------------------------------------------------------------------ console shapes
def test_console_torchtune_and_llamafactory_lines(tmp_path: Path) -> None:
    p = tmp_path / "tt.log"
    p.write_text(
        "Step 1 | loss:2.085338592529297 lr:2e-05 tokens_per_second_per_gpu:57.83\n"
        "Step 2 | loss:1.9 lr:2e-05 tokens_per_second_per_gpu:57.83\n"
    )
    run = load_run(p)
    loss = run.series("loss")
    assert loss is not None and list(loss) == [(1, 2.085338592529297), (2, 1.9)]
    assert run.series("learning_rate") is not None and "tokens_per_second_per_gpu" not in run.train
    p2 = tmp_path / "lf.log"
    p2.write_text(
        "[INFO|2024-12-08 01:09:59] llamafactory.train.callbacks:157 >> {'loss': 0.0000, "
        "'learning_rate': 4.9985e-05, 'epoch': 0.03}\n"
        "[INFO|2024-12-08 01:10:59] llamafactory.train.callbacks:157 >> {'loss': nan, "
        "'grad_norm': inf, 'learning_rate': np.float64(4.9e-05), 'epoch': 0.06}\n"
    )
    run2 = load_run(p2)
    l2 = run2.series("loss")
    assert l2 is not None and l2.values[0] == 0.0 and math.isnan(l2.values[1])
    g2 = run2.series("grad_norm")
    assert g2 is not None and math.isinf(g2.values[0])
    lr = run2.series("learning_rate")
    assert lr is not None and lr.values[1] == 4.9e-05


def test_console_header_unsloth_banner_and_warnings(tmp_path: Path) -> None:
    p = tmp_path / "unsloth.log"
    p.write_text(
        "==((====))==  Unsloth - 2x faster free finetuning | Num GPUs used = 1\n"
        "   \\\\   /|    Num examples = 23,149 | Num Epochs = 1 | Total steps = 300\n"
        "O^O/ \\_/ \\    Batch size per device = 2 | Gradient accumulation steps = 4\n"
        "\\        /    Data Parallel GPUs = 1 | Total batch size (2 x 4 x 1) = 8\n"
        ' "-____-"     Trainable parameters = 68,456,448/12,000,000,000 (0.57% trained)\n'
        "UserWarning: None of the inputs have requires_grad=True. Gradients will be None\n"
        "Input type into Linear4bit is torch.float16, but bnb_4bit_compute_dtype=torch.float32 (default).\n"
        "trainable params: 0 || all params: 1,000 || trainable%: 0.0\n"
        "[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 64, reducing to 32\n"
        "{'loss': 1.5, 'grad_norm': 0.0, 'learning_rate': 2e-4, 'epoch': 0.01}\n"
        "No label_names provided for model class `PeftModelForCausalLM`.\n"
        "It is strongly recommended to train Gemma2 models with the `eager` attention implementation\n"
        "***** train metrics *****\n"
        "  epoch                    =        1.0\n"
        "  train_loss               =     0.0063\n"
        "  train_runtime            = 2:05:47.06\n"
        "***** eval metrics *****\n"
        "  eval_loss               =        nan\n"
        "done\n"
    )
    run = load_run(p)
    f = run.facts
    assert (f.num_examples, f.num_train_epochs, f.max_steps, f.train_batch_size) == (23149, 1.0, 300, 2)
    assert (f.gradient_accumulation_steps, f.total_train_batch_size, f.world_size) == (4, 8, 1)
    assert f.total_params == 1000 and f.trainable_params == 0
    codes = [e.code for e in run.events if e.kind == "warning"]
    assert codes == [
        "no-input-requires-grad",
        "bnb-compute-dtype-float32",
        "no-trainable-params",
        "fp16-overflow",
        "no-label-names",
        "gemma-eager-attention",
    ]
    assert run.summary["train_loss"] == 0.0063 and math.isnan(run.summary["eval_loss"])
    assert "train_runtime" not in run.summary  # 2:05:47.06 is not a number
    assert f.finished is True


def test_traceback_exception_and_oom_events(tmp_path: Path) -> None:
    p = tmp_path / "crash.log"
    p.write_text(
        "{'loss': 1.0, 'epoch': 0.1}\n"
        "{'loss': 0.9, 'epoch': 0.2}\n"
        "Traceback (most recent call last):\n"
        '  File "train.py", line 10, in <module>\n'
        "    trainer.train()\n"
        "  5%|▌         | 10/200 [00:10<03:10,  1.00s/it]\n"
        "RuntimeError: element 0 of tensors does not require grad and does not have a grad_fn\n"
        "[rank0]: Traceback (most recent call last):\n"
        '[rank0]:   File "x.py", line 2, in f\n'
        "[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB\n"
    )
    run = load_run(p)
    assert [(e.kind, e.code, e.line, e.step) for e in run.events] == [
        ("exception", "RuntimeError", 7, 2),
        ("oom", "cuda-oom", 10, 2),
    ]
    assert run.events[0].text.startswith("RuntimeError: element 0")


def test_console_values_as_strings_and_nan_spellings(tmp_path: Path) -> None:
    p = tmp_path / "t5.log"
    p.write_text(
        "{'loss': '5.69', 'grad_norm': '0', 'learning_rate': '1e-05', 'epoch': '0.1'}\n"
        "{'loss': 'nan', 'grad_norm': 'NaN', 'learning_rate': '-inf', 'epoch': '0.2'}\n"
        "{'loss': 0.0, 'grad_norm': nan, 'learning_rate': 1e-05, 'epoch': 0.3}\n"
        "{'pad_token_id': 2}\n"
        "{'train_runtime': 10.0, 'train_samples_per_second': 1.0, 'train_steps_per_second': 0.3, "
        "'train_loss': 2.0, 'epoch': 0.3}\n"
    )
    run = load_run(p)
    loss = run.series("loss")
    assert loss is not None and loss.values[0] == 5.69 and math.isnan(loss.values[1])
    assert list(loss.steps) == [1, 2, 3]
    lr = run.series("learning_rate")
    assert lr is not None and lr.values[1] == -math.inf
    assert "pad_token_id" not in run.train
    assert run.summary["train_loss"] == 2.0 and run.facts.finished is True


def test_logging_steps_from_training_arguments_dump(tmp_path: Path) -> None:
    p = tmp_path / "args.log"
    p.write_text(
        "TrainingArguments(\n_n_gpu=1,\nlogging_steps=25,\nmax_steps=-1,\nbf16=True,\n"
        "learning_rate=0.0002,\n)\n"
        "{'loss': 1.0, 'epoch': 0.1}\n{'loss': 0.9, 'epoch': 0.2}\n"
    )
    run = load_run(p)
    loss = run.series("loss")
    assert loss is not None and list(loss.steps) == [25, 50]
    assert (run.facts.logging_steps, run.facts.bf16, run.facts.learning_rate) == (25, True, 2e-4)
    assert run.facts.max_steps is None


def test_corpus_049_trainingarguments_logging_steps() -> None:
    run = load_run(corpus_file("049_"))
    assert run.facts.logging_steps == 10
