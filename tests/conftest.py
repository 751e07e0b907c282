"""Shared test fixtures: where the real-log corpus lives, and the repository root."""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tuneterm.plan.oom import install as size_oom_with_planner

REPO = Path(__file__).resolve().parent.parent

# As the program does (tuneterm.cli, the training processes): the out-of-memory rule sizes its
# fixes with the planner's memory estimator, in every test whatever ran before it.
size_oom_with_planner()

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers, each starting real trainings (torch with one intra-op thread per core by
    # default): on the 2-core CI machine that oversubscribes the CPU and makes the slowest runs
    # several times slower. One thread per training process; subprocesses inherit it.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# The `train` extra: tests that need it carry the `train` marker (or fail on importing one of these)
# and skip cleanly where the extra is not installed; with it installed, nothing is skipped.
TRAIN_EXTRA = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "tokenizers",
               "rouge_score", "huggingface_hub")
HAS_TRAIN_EXTRA = all(importlib.util.find_spec(m) is not None for m in TRAIN_EXTRA)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if HAS_TRAIN_EXTRA:
        return
    skip = pytest.mark.skip(reason="needs the train extra: pip install 'tuneterm[train]'")
    for item in items:
        if item.get_closest_marker("train") is not None:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Without the train extra, a test that dies importing part of it is a skip, not an error.

    Only a ModuleNotFoundError for a package of the extra that is really absent counts, so with the
    extra installed (CI, the README's test command) this never turns anything into a skip.
    """
    report = yield
    exc = call.excinfo
    if exc is not None and exc.errisinstance(ModuleNotFoundError) and report.failed:
        missing = (getattr(exc.value, "name", None) or "").split(".")[0]
        if missing in TRAIN_EXTRA and importlib.util.find_spec(missing) is None:
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: needs the train extra ({missing})")
    return report


# CI runs in a fresh clone with shared/ beside it (../shared/corpus); a checkout may also carry it.
_CANDIDATES = (REPO.parent / "shared" / "corpus", REPO / "shared" / "corpus")
CORPUS: Path | None = next((p for p in _CANDIDATES if p.is_dir()), None)


def corpus_files() -> list[Path]:
    """Every log file of the corpus (INDEX.md excluded); empty if the corpus is absent."""
    if CORPUS is None:
        return []
    return sorted(p for p in CORPUS.iterdir() if p.is_file() and p.name != "INDEX.md")


@pytest.fixture
def corpus() -> Path:
    """The corpus directory; skips the test where the shared corpus is not checked out."""
    if CORPUS is None:
        pytest.skip("../shared/corpus not present")
    return CORPUS


def corpus_file(prefix: str) -> Path:
    """The corpus file whose name starts with ``prefix`` (e.g. ``"001_"``)."""
    if CORPUS is None:
        pytest.skip("../shared/corpus not present")
    matches = [p for p in corpus_files() if p.name.startswith(prefix)]
    assert len(matches) == 1, f"expected one corpus file for {prefix!r}, got {matches}"
    return matches[0]


@dataclass
class Receiver:
    """A notification receiver: its apprise ``json://`` URL and the JSON bodies it got."""

    url: str
    bodies: list[dict[str, object]] = field(default_factory=list)


@contextlib.contextmanager
def local_receiver() -> Iterator[Receiver]:
    """An HTTP server on 127.0.0.1 (a free port) that records every POSTed JSON body."""
    got: list[dict[str, object]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0")))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Receiver(f"json://127.0.0.1:{server.server_address[1]}/", got)
    finally:
        server.shutdown()
