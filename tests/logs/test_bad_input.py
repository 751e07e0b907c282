"""Hostile and broken input: one clear InputError line or a salvaged run, never a traceback/hang."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import corpus_file
from tuneterm.errors import InputError, NoMetricsError
from tuneterm.logs import load_run


def _one_line_error(path: Path) -> str:
    with pytest.raises(InputError) as info:
        load_run(path)
    msg = str(info.value)
    assert "\n" not in msg and msg
    return msg


def test_missing_path(tmp_path: Path) -> None:
    assert "no such file or directory" in _one_line_error(tmp_path / "nope.json")


def test_empty_file(tmp_path: Path) -> None:
    # An empty file is "nothing to check" (exit 3), like a log without metrics, not bad input.
    p = tmp_path / "empty.log"
    p.write_bytes(b"")
    with pytest.raises(NoMetricsError) as info:
        load_run(p)
    assert "is empty" in str(info.value) and "\n" not in str(info.value)
    assert NoMetricsError.exit_code == 3


def test_binary_junk(tmp_path: Path) -> None:
    p = tmp_path / "junk.json"
    p.write_bytes(os.urandom(4096) + b"\x00" * 64)
    assert "binary" in _one_line_error(p)


def test_directory_with_nothing_recognisable(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 10)
    (tmp_path / "README.md").write_text("hello")
    assert "no training log found" in _one_line_error(tmp_path)


def test_truncated_trainer_state_is_salvaged(tmp_path: Path) -> None:
    src = corpus_file("011_").read_bytes()
    p = tmp_path / "trainer_state.json"
    p.write_bytes(src[: len(src) // 2])
    run = load_run(p)
    full = json.loads(src)["log_history"]
    note = next(n for n in run.notes if "truncated" in n)
    n_salvaged = int(note.split("salvaged ")[1].split()[0])
    assert 0 < n_salvaged < len(full)
    loss = run.series("loss")
    assert loss is not None and loss.values[0] == full[0]["loss"]
    # keys sorted before log_history survive; max_steps/logging_steps came after the cut
    assert (run.facts.global_step, run.facts.eval_steps, run.facts.max_steps) == (8920, 100, None)


def test_truncated_state_in_checkpoint_dir(tmp_path: Path) -> None:
    src = corpus_file("001_").read_bytes()
    c = tmp_path / "checkpoint-750"
    c.mkdir()
    (c / "trainer_state.json").write_bytes(src[: len(src) * 2 // 3])
    run = load_run(tmp_path)
    assert run.has_metrics() and any("truncated" in n for n in run.notes)


def test_json_nested_100000_deep(tmp_path: Path) -> None:
    p = tmp_path / "deep.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in _one_line_error(p)
    p2 = tmp_path / "deep2.json"
    p2.write_text('{"log_history": ' + "[" * 100_000)  # deep *and* truncated
    msg = None
    try:
        run = load_run(p2)
        assert not run.has_metrics()
    except InputError as e:
        msg = str(e)
    assert msg is None or "\n" not in msg


def test_wrong_types_in_entries(tmp_path: Path) -> None:
    p = tmp_path / "trainer_state.json"
    p.write_text(json.dumps({"global_step": "ten", "max_steps": None, "log_history": [
        {"loss": "1.5", "step": 1}, {"loss": [1], "step": 2}, {"loss": {"a": 1}, "step": 3},
        "junk", 7, None, {"loss": 1.2, "step": "4"}, {"loss": 1.1, "step": 5.0},
    ]}))
    run = load_run(p)
    loss = run.series("loss")
    assert loss is not None and list(loss) == [(1, 1.5), (4, 1.2), (5, 1.1)]
    assert any("not objects" in n for n in run.notes)


def test_50mb_single_line_does_not_hang(tmp_path: Path) -> None:
    p = tmp_path / "huge.log"
    with p.open("wb") as f:
        f.write(b"{'loss': 1.0, 'epoch': 0.1}\n")
        chunk = (b"{'loss': 1, 'a" * 10_000)
        for _ in range(50 * 1024 * 1024 // len(chunk) + 1):
            f.write(chunk)
        f.write(b"\n{'loss': 0.5, 'epoch': 0.2}\n")
    assert p.stat().st_size > 50 * 1024 * 1024
    t = time.perf_counter()
    run = load_run(p)
    elapsed = time.perf_counter() - t
    loss = run.series("loss")
    assert loss is not None and list(loss.values) == [1.0, 0.5]
    assert any("longer than 1 MiB" in n for n in run.notes)
    assert elapsed < 20, elapsed


def test_huge_json_line_in_jsonl(tmp_path: Path) -> None:
    p = tmp_path / "trainer_log.jsonl"
    p.write_text(
        '{"current_steps": 1, "loss": 1.0}\n{"current_steps": 2, "x": "' + "a" * 3_000_000
        + '"}\n{"current_steps": 3, "loss": 0.8}\n'
    )
    run = load_run(p)
    loss = run.series("loss")
    assert loss is not None and list(loss) == [(1, 1.0), (3, 0.8)]


def test_invalid_utf8(tmp_path: Path) -> None:
    p = tmp_path / "bad.log"
    p.write_bytes(b"\xff\xfe\xfa caf\xe9 {'loss': 1.25, 'epoch': 0.1}\n\xc3\x28 {'loss': 1.0, 'epoch': 0.2}\n")
    run = load_run(p)
    loss = run.series("loss")
    assert loss is not None and list(loss.values) == [1.25, 1.0]
    p2 = tmp_path / "bad.json"
    p2.write_bytes(b'{"log_history": [{"loss": 1.0, "step": 1, "note": "\xff"}]}')
    run2 = load_run(p2)
    assert run2.has_metrics()


def test_ansi_escapes_and_rich_markup_kept_raw(tmp_path: Path) -> None:
    p = tmp_path / "evil.log"
    p.write_text(
        "\x1b]0;pwned\x07\x1b[2J[bold red]hello[/bold red]\n"
        "\x1b[31m{'loss': 1.0, 'grad_norm': 0.5, 'epoch': 0.1}\x1b[0m\n"
        "Traceback (most recent call last):\n"
        '  File "x", line 1\n'
        "ValueError: [bold red]boom[/] \x1b[5mblink\x1b[0m\n"
    )
    run = load_run(p)
    loss = run.series("loss")
    assert loss is not None and list(loss.values) == [1.0]
    (ev,) = run.events
    assert ev.code == "ValueError" and "[bold red]boom[/]" in ev.text and "\x1b[5m" in ev.text


def test_tensorboard_without_package_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    p = tmp_path / "events.out.tfevents.123.host"
    p.write_bytes(b"\x00" * 16)
    for mod in [m for m in sys.modules if m == "tensorboard" or m.startswith("tensorboard.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    msg = _one_line_error(p)
    assert msg == "install tuneterm[tensorboard] to read TensorBoard event files"


def test_corrupt_tensorboard_file(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    p = tmp_path / "events.out.tfevents.123.host"
    p.write_bytes(os.urandom(2000))
    try:
        run = load_run(p)
    except InputError as e:
        assert "\n" not in str(e)
    else:
        assert not run.has_metrics()
