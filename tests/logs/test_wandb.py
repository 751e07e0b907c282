"""W&B run directories: a real offline run (the wandb package on CPU) read with the right steps,
followed while it grows, its crash found; and the one-line message when the extra is missing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tuneterm.errors import InputError
from tuneterm.logs import load_run
from tuneterm.logs.tail import Follower

needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="needs the wandb extra")
SCRIPT = Path(__file__).with_name("wandb_script.py")


def _wait(pred, timeout: float = 90.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[list[int]]]]:
    """A real offline W&B run that crashes after 10 rows; yields its directory and the steps a
    Follower saw while it was still running (after 5 rows) and after it ended."""
    cwd = tmp_path_factory.mktemp("wandb")
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(cwd)}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "crash"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait(lambda: (cwd / "ready").exists())
        run_dir = next((cwd / "wandb").glob("offline-run-*"))
        follower = Follower(run_dir)

        def seen() -> list[int]:
            follower.poll()
            s = follower.run.train.get("loss")
            return list(s.steps) if s is not None else []

        assert _wait(lambda: len(seen()) >= 5), "the growing run was never read"
        during = seen()
        (cwd / "go").touch()
        proc.wait(timeout=120)
        assert _wait(lambda: len(seen()) >= 10)
        yield run_dir, [during, seen()]
    finally:
        if proc.poll() is None:
            proc.kill()


@needs_wandb
def test_a_growing_offline_run_is_followed_with_trainer_steps(crashed_run: tuple[Path, list[list[int]]]) -> None:
    _, (during, after) = crashed_run
    assert during == [10, 20, 30, 40, 50]  # train/global_step, not W&B's own _step (0, 1, 2 ...)
    assert after == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


@needs_wandb
def test_doctor_reads_config_steps_and_the_crash(crashed_run: tuple[Path, list[list[int]]]) -> None:
    run_dir, _ = crashed_run
    run = load_run(run_dir)
    assert run.format == "wandb" and run.facts.learning_rate == pytest.approx(2e-4)
    assert run.status is not None and run.status.exit_code == 1 and run.status.state == "failed"
    assert any("device-side assert" in e.text for e in run.events)
    # The wandb/ directory above the run means its latest run.
    assert list(load_run(run_dir.parent).train["loss"].steps) == list(run.train["loss"].steps)
    proc = subprocess.run([sys.executable, "-m", "tuneterm", "doctor", str(run_dir), "--no-charts"],
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1 and "run-crashed" in proc.stdout and "100 steps" in proc.stdout, proc.stdout + proc.stderr


def test_missing_wandb_extra_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "offline-run-20260101_000000-abc"
    d.mkdir()
    (d / "run-abc.wandb").write_bytes(b":W&B\x00\x01\x00\x00binary records")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(InputError, match=r"install tuneterm\[wandb\]"):
        load_run(d)


def test_tensorboard_logdir_is_followed_as_its_event_file_grows(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    w = EventFileWriter(str(tmp_path))

    def write(steps: range) -> None:
        for step in steps:
            w.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=[Summary.Value(tag="train/loss", simple_value=1.0 / step)])))
        w.flush()

    write(range(1, 6))
    follower = Follower(tmp_path)
    assert follower.poll() == 5
    write(range(6, 9))  # the same event file grows; the directory's own mtime does not change
    assert follower.poll() == 3
    assert list(follower.run.train["loss"].steps) == list(range(1, 9))
    w.close()
