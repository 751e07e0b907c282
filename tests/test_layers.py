"""The layer contracts of pyproject.toml (import-linter): they hold, and they catch a violation.

The check runs ``lint-imports`` on a copy of the package, so the violating edits never touch the
checkout: an upward import (``logs`` importing ``watch``), a sideways one between independent layers
(``train`` importing ``watch``) and heavy ones (``engine`` importing ``torch`` inside a function,
``plan`` importing ``transformers``, a command importing ``torch`` itself rather than through
``train``) must each break a contract. The contracts hold without exceptions (no ``ignore_imports``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", script, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
    )


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "tuneterm", tmp_path / "tuneterm", ignore=shutil.ignore_patterns("__pycache__", "_data"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_contracts_hold_and_an_upward_or_heavy_import_breaks_them(copy: Path) -> None:
    ok = _lint(copy)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]
    assert "Contracts: 5 kept, 0 broken." in ok.stdout
    assert "ignore_imports" not in (copy / "pyproject.toml").read_text()

    with (copy / "tuneterm" / "logs" / "names.py").open("a") as fh:
        fh.write("\n\ndef _upward() -> None:\n    from tuneterm.watch import loop  # noqa: F401\n")
    with (copy / "tuneterm" / "train" / "faults.py").open("a") as fh:
        fh.write("\n\ndef _sideways() -> None:\n    from tuneterm.watch import loop  # noqa: F401\n")
    with (copy / "tuneterm" / "engine" / "stats.py").open("a") as fh:
        fh.write("\n\ndef _heavy() -> None:\n    import torch  # noqa: F401\n")
    with (copy / "tuneterm" / "plan" / "sizes.py").open("a") as fh:
        fh.write("\n\ndef _stack() -> None:\n    import transformers  # noqa: F401\n")
    with (copy / "tuneterm" / "cli" / "rules.py").open("a") as fh:
        fh.write("\n\ndef _direct() -> None:\n    import torch  # noqa: F401\n")
    bad = _lint(copy)
    assert bad.returncode != 0
    assert "tuneterm.logs is not allowed to import tuneterm.watch" in bad.stdout
    assert "tuneterm.engine is not allowed to import torch" in bad.stdout
    assert "tuneterm.train is not allowed to import tuneterm.watch" in bad.stdout
    assert "tuneterm.plan is not allowed to import transformers" in bad.stdout
    assert "tuneterm.cli is not allowed to import torch" in bad.stdout
