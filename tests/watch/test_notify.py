"""Notifications through apprise to a local HTTP receiver: where URLs come from, one message per
event, failing notifiers that never block, and ``tuneterm watch --notify`` on a failed run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, local_receiver
from tests.watch.helpers import make_run_dir, traceback
from tuneterm.report.notify import Notifier, config_path, configured_urls, end_message


@pytest.fixture()
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """``(json:// URL, received bodies)`` of an HTTP server on 127.0.0.1."""
    with local_receiver() as rec:
        yield rec.url, rec.bodies


@pytest.fixture()
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("TUNETERM_NOTIFY", raising=False)
    return tmp_path / "xdg"


def test_urls_from_flag_env_and_config_file(no_user_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert configured_urls() == []
    monkeypatch.setenv("TUNETERM_NOTIFY", "ntfy://ntfy.sh/a, json://h/b")
    cfg = config_path()
    assert cfg == no_user_config / "tuneterm" / "config.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("notify:\n  - discord://id/token\n  - ntfy://ntfy.sh/a\n")
    assert configured_urls(["json://flag/"]) == ["json://flag/", "ntfy://ntfy.sh/a", "json://h/b", "discord://id/token"]


def test_malformed_config_file_is_ignored(no_user_config: Path) -> None:
    cfg = config_path()
    cfg.parent.mkdir(parents=True)
    cfg.write_text("notify: [unclosed\n")
    assert configured_urls(["json://x/"]) == ["json://x/"]


def test_one_message_per_event_across_notifiers(tmp_path: Path, receiver: tuple[str, list[dict]]) -> None:
    url, got = receiver
    run = tmp_path / "r1"
    run.mkdir()
    for _ in range(2):  # two processes (supervisor and watcher) seeing the same end
        n = Notifier([url])
        n.run_ended(run, "failed", "RuntimeError: boom", [])
        n.run_ended(run, "failed", "RuntimeError: boom", [])
        n.close()
        assert n.delivered + n.failed <= 1
    assert [b["title"] for b in got] == ["tuneterm: r1 failed"]
    assert "error: RuntimeError: boom" in got[0]["message"] and "host: " in got[0]["message"]


def test_failing_notifier_is_logged_and_never_blocks(tmp_path: Path) -> None:
    run = tmp_path / "r2"
    run.mkdir()
    n = Notifier(["json://127.0.0.1:9/", "not-a-url"])
    t0 = time.monotonic()
    n.post(end_message("r2", run, "finished", None, []))
    assert time.monotonic() - t0 < 0.1  # posting only queues
    n.close()
    assert n.failed >= 1 and n.delivered == 0
    assert "not delivered: tuneterm: r2 finished" in (run / "notify.log").read_text()


def test_watch_notifies_a_failed_run(tmp_path: Path, receiver: tuple[str, list[dict]]) -> None:
    url, got = receiver
    d = make_run_dir(
        tmp_path, "crashed",
        status={"state": "failed", "exit_code": 1, "error": "torch.OutOfMemoryError: CUDA out of memory"},
        stderr=traceback("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"),
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    env.pop("TUNETERM_NOTIFY", None)
    proc = subprocess.run([sys.executable, "-m", "tuneterm", "watch", str(d), "--headless", "--notify", url],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    titles = [b["title"] for b in got]
    assert "tuneterm: crashed failed" in titles
    assert any(t.startswith("tuneterm: crashed: error") for t in titles)  # the crash finding
    end = next(b for b in got if b["title"] == "tuneterm: crashed failed")
    assert "run: crashed" in end["message"] and "fix: " in end["message"]
