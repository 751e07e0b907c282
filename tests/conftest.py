"""Shared test fixtures: where the real-log corpus lives, and the repository root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers, each starting real trainings (torch with one intra-op thread per core by
    # default): on the 2-core CI machine that oversubscribes the CPU and makes the slowest runs
    # several times slower. One thread per training process; subprocesses inherit it.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
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
