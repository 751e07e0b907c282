"""Following growing logs: only complete new lines, same parsers, truncation restarts."""

from __future__ import annotations

import json
from pathlib import Path

from tuneterm.logs import Follower, load_run
from tuneterm.runs.follow import follower


def test_follow_console_log(tmp_path: Path) -> None:
    p = tmp_path / "train.log"
    p.write_text("")
    f = Follower(p)
    assert f.poll() == 0
    with p.open("a") as fh:
        fh.write("  1%|          | 1/100 [00:01<01:39,  1.00s/it]\r{'loss': 2.0, 'grad_norm': 1.0, 'epoch': 0.01}\n")
        fh.write("{'loss': 1.9, 'grad_")  # partial line: must wait
    assert f.poll() == 2
    assert len(f.run.train["loss"]) == 1
    with p.open("a") as fh:
        fh.write("norm': 0.9, 'epoch': 0.02}\nTraceback (most recent call last):\n  File \"x\"\n")
        fh.write("KeyboardInterrupt\n")
    assert f.poll() == 2
    loss = f.run.series("loss")
    assert loss is not None and list(loss.values) == [2.0, 1.9]
    assert [e.code for e in f.run.events] == ["KeyboardInterrupt"]
    assert f.poll() == 0
    # the same content read whole gives the same series
    whole = load_run(p)
    assert list(whole.train["loss"]) == list(f.run.train["loss"])


def test_follow_truncation_restarts(tmp_path: Path) -> None:
    p = tmp_path / "train.log"
    p.write_text("{'loss': 3.0, 'epoch': 0.1}\n{'loss': 2.0, 'epoch': 0.2}\n")
    f = Follower(p)
    assert f.poll() == 2  # loss points (epoch is an axis, not counted)
    p.write_text("{'loss': 9.0, 'epoch': 0.1}\n")  # truncated and rewritten
    f.poll()
    assert list(f.run.train["loss"].values) == [9.0]


def test_follow_run_dir(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.yaml").write_text("logging_steps: 1\n")
    (d / "status.json").write_text(json.dumps({"state": "running", "max_steps": 3}))
    m = d / "metrics.jsonl"
    m.write_text('{"loss": 2.0, "step": 1}\n')
    f = follower(d)
    assert f.poll() == 1
    with m.open("a") as fh:
        fh.write('{"loss": 1.5, "grad_norm": NaN, "step": 2}\n{"loss": 1.')
    assert f.poll() == 2
    (d / "stderr.log").write_text("Traceback (most recent call last):\nRuntimeError: boom\n")
    (d / "status.json").write_text(json.dumps({"state": "failed", "exit_code": 1, "error": "RuntimeError: boom"}))
    f.poll()
    f.poll()
    assert [(e.kind, e.code, e.step) for e in f.run.events] == [("exception", "RuntimeError", 2)]
    assert f.run.facts.max_steps == 3 and f.run.format == "run_dir"


def test_follow_trainer_state_rereads_whole(tmp_path: Path) -> None:
    p = tmp_path / "trainer_state.json"
    p.write_text(json.dumps({"global_step": 1, "log_history": [{"loss": 1.0, "step": 1}]}))
    f = Follower(p)
    assert f.poll() == 1
    p.write_text(json.dumps({"global_step": 2, "log_history": [{"loss": 1.0, "step": 1}, {"loss": 0.5, "step": 2}]}))
    assert f.poll() == 1
    assert f.run.format == "trainer_state"


def test_follow_output_dir_before_first_log(tmp_path: Path) -> None:
    f = Follower(tmp_path)
    assert f.poll() == 0 and not f.run.has_metrics()
    (tmp_path / "trainer_log.jsonl").write_text('{"current_steps": 5, "total_steps": 10, "loss": 1.0}\n')
    assert f.poll() == 1
    assert f.run.format == "llamafactory_jsonl" and f.run.facts.max_steps == 10


def test_follow_traceback_cut_off_then_completed(tmp_path: Path) -> None:
    # While a traceback is being printed the log ends on its frames: a cut-off traceback for now;
    # when its exception line arrives, that is the only event left.
    p = tmp_path / "train.log"
    p.write_text("{'loss': 2.0, 'epoch': 0.01}\nTraceback (most recent call last):\n"
                 '  File "/x/torch/autograd/__init__.py", line 266, in backward\n    run_backward(\n')
    f = Follower(p)
    f.poll()
    assert [e.code for e in f.run.events] == ["TruncatedTraceback"]
    assert "backward" in f.run.events[0].text
    with p.open("a") as fh:
        fh.write("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    f.poll()
    assert [e.kind for e in f.run.events] == ["oom"]
