"""The wheel carries rules/, configs/ and the sample runs, and an installed wheel finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("tuneterm-*.whl")
    return whl


def test_wheel_contains_rules_configs_and_samples(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped_rules = {n for n in names if n.startswith("tuneterm/_data/rules/") and n.endswith(".yaml")}
    repo_rules = {f"tuneterm/_data/rules/{p.relative_to(REPO / 'rules').as_posix()}" for p in (REPO / "rules").rglob("*.yaml")}
    assert repo_rules and repo_rules <= shipped_rules
    assert any(n.startswith("tuneterm/_data/configs/") and n.endswith(".yaml") for n in names)
    assert any(n.startswith("tuneterm/samples/") for n in names)
    # Nothing that must never ship.
    assert not any(n.endswith((".pyc", ".bin", ".pkl")) for n in names)


def test_installed_wheel_finds_its_data(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import tuneterm, tuneterm.resources as r;"
        "print(tuneterm.__file__); print(r.rules_dir()); print(r.configs_dir())"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    assert all(line.startswith(str(target)) for line in out), out
    assert Path(out[1]).name == "rules" and any(Path(out[1]).rglob("*.yaml"))
