"""Fixtures for the eval tests: tiny real models trained once per session (see tinymodels.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Base, task adapter, collapsed model and task data, trained on CPU (~15-20 s once)."""
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from tests.evaluation.tinymodels import build_all

    return build_all(tmp_path_factory.mktemp("eval-models"))
