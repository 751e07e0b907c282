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


# Modules whose tests share a module- or session-scoped real training (or TRL import): under xdist
# each runs whole on one worker, so the shared work happens once per run instead of once per worker
# that happens to get one of its tests.
WHOLE_MODULES = frozenset({
    "tests/advise/test_fix_loop.py",  # one training scenario per module fixture, some shared
    "tests/advise/test_invariants.py",  # the TRL key schema, built by importing TRL
    "tests/evaluation/test_eval_cli.py",  # the session's tiny_models (trains three models)
    "tests/integration/test_fault_matrix.py",  # four runs started once by the `runs` fixture
    "tests/logs/test_wandb.py",  # one real offline W&B run
    "tests/train/test_public_callback.py",  # six trainings made by `callback_runs`
    "tests/train/test_schema.py",  # `built_doc` imports TRL to build the schema
    "tests/test_packaging.py",  # builds the wheel with pip
})


# Fixtures that train a real tiny model (or build one): a test asking for one is heavy.
_TRAINING_FIXTURES = frozenset({"tiny_model", "tiny_models"})


def _weight(item: pytest.Item) -> int:
    """2 for a test that trains or launches training, 1 for a Textual app test, 0 for the rest."""
    if item.get_closest_marker("slow") or item.get_closest_marker("train"):
        return 2
    if item.nodeid.split("::", 1)[0] in WHOLE_MODULES:
        return 2
    if _TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
        return 2
    return 1 if "tests/tui/" in item.nodeid else 0


def heaviest_modules_first(items: list[pytest.Item]) -> None:
    """Reorder ``items`` in place: modules holding heavy tests first, each module kept contiguous.

    With ``-n 2`` the run ends when the slower worker does: a minute-long training picked up last
    leaves the other core idle for that minute. Starting the heavy modules first leaves the many
    sub-second tests to even out the end. Modules stay whole (a module-scoped fixture is set up
    once per module run) and keep their own order; the order is deterministic, as xdist requires
    every worker to collect the same list.
    """
    weight: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        weight[module] = max(weight.get(module, 0), _weight(item))
    items.sort(key=lambda item: -weight[item.nodeid.split("::", 1)[0]])  # stable: ties keep their order


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist (the test extra)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadgroup`` (pyproject's addopts) with the modules of ``WHOLE_MODULES`` as groups.

    Every other test is its own unit, handed to whichever worker is free, in collection order
    (heaviest modules first, see ``heaviest_modules_first``). The modules are named here rather
    than marked ``xdist_group``: pytest-xdist 3.8 groups by rewriting a node id attribute that
    pytest 9 no longer reads, so the marker has no effect.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WholeModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in WHOLE_MODULES else nodeid

    return WholeModules(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    heaviest_modules_first(items)
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
