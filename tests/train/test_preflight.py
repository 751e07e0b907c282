"""``tuneterm.train.preflight.preflight``: the pre-flight check shared by ``tuneterm train`` and the
TUI, on real resolved configs, and the CLI's use of it (messages, exit 2, ``--force``).

Model facts come from the family table (offline); NVML is absent, so the fit rule only runs when a
capacity is given.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from tests.train.conftest import TINY, TINY_DPO
from tuneterm.cli import main
from tuneterm.engine.model import Severity
from tuneterm.errors import RuleFileError
from tuneterm.train.config import parse_set, resolve
from tuneterm.train.preflight import PreflightResult, preflight

pytestmark = pytest.mark.train  # needs the train extra; skipped cleanly without it

SEED_24B = """\
model_name_or_path: mistralai/Mistral-Small-3.1-24B-Instruct-2503
dataset_name: trl-lib/Capybara
learning_rate: 5.0e-5
"""


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNETERM_OFFLINE", "1")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no GPU: nothing probed, no fit rule unless asked


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    p = tmp_path / "seed24b.yaml"
    p.write_text(SEED_24B)
    return p


def test_seed_24b_at_5e5_is_refused_with_c101(seed: Path) -> None:
    r = preflight(resolve(seed), 1)
    assert isinstance(r, PreflightResult) and not r.ok and r.skipped is None
    assert [f.code for f in r.errors] == ["C101"]
    f = r.errors[0]
    assert f.severity is Severity.ERROR and f.source == str(seed) and f.line is None  # no temp-file line
    assert "above the range 1e-06-5e-06" in f.message
    # no warmup: a warning beside the error, which does not block by itself
    assert "C104" in [w.code for w in r.warnings] and all(w.severity is not Severity.ERROR for w in r.warnings)
    assert r.findings[0].code == "C101"  # most severe first
    assert r.lines()[0].startswith("pre-flight error C101 learning-rate-out-of-range: learning_rate 5e-05")
    assert any(line.startswith("pre-flight warning C104 no-warmup: ") for line in r.lines()[1:])
    assert len(r.lines()) == len(r.findings)
    assert r.summary() == f"pre-flight check found 1 error(s) in {seed}"


def test_overrides_are_what_is_checked(seed: Path) -> None:
    r = preflight(resolve(seed, overrides=parse_set(["learning_rate=2e-6", "warmup_steps=0.03"])), 1)
    assert r.ok and r.findings == ()


def test_fit_rule_with_a_capacity(seed: Path) -> None:
    cfg = resolve(seed, overrides=parse_set(["learning_rate=2e-6", "warmup_steps=0.03"]))
    r = preflight(cfg, 1, gpu_memory_gib=24.0)  # full fine-tuning of 24B on one 24 GiB GPU
    assert not r.ok and [f.code for f in r.errors] == ["C111"]
    assert preflight(cfg, 1, gpu_memory_gib=24.0).errors[0].message == r.errors[0].message  # deterministic


def test_tiny_configs_pass_warnings_do_not_block() -> None:
    clean = preflight(resolve(TINY), 1)
    assert clean.ok and clean.findings == () and clean.lines() == []
    dpo = preflight(resolve(TINY_DPO), 1)  # no warmup: C104 (other warnings may join it)
    assert dpo.ok and dpo.errors == () and "C104" in [f.code for f in dpo.warnings]


def test_a_check_that_cannot_run_does_not_block(seed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tuneterm.preflight.config as pc

    def broken(*_a: object, **_k: object) -> None:
        raise RuleFileError("rules/config.yaml: invalid YAML (mapping values are not allowed here)")

    monkeypatch.setattr(pc, "check_config", broken)
    r = preflight(resolve(seed), 1)
    assert r.ok and r.findings == () and r.skipped == "RuleFileError: rules/config.yaml: invalid YAML (mapping values are not allowed here)"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_cli_refuses_errors_with_the_same_lines_and_exit_2(seed: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    code, out, err = run_cli(capsys, "train", str(seed), "--detach", "--runs-dir", str(runs))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines[0].startswith("tuneterm: pre-flight error C101 learning-rate-out-of-range: learning_rate 5e-05")
    assert any(line.startswith("tuneterm: pre-flight warning C104 no-warmup: ") for line in lines[1:-1])
    assert lines[-1] == f"tuneterm: error: pre-flight check found 1 error(s) in {seed}; fix them or pass --force"
    assert "Traceback" not in err and not runs.exists()


def test_cli_could_not_run_warns_and_continues(seed: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import tuneterm.preflight.config as pc
    import tuneterm.train.launch as launch_mod

    def broken(*_a: object, **_k: object) -> None:
        raise RuleFileError("rules/config.yaml: cannot read")

    def no_launch(*_a: object, **_k: object) -> None:  # stop right after the check: launching is another test's
        raise RuleFileError("launch not wanted here")

    monkeypatch.setattr(pc, "check_config", broken)
    monkeypatch.setattr(launch_mod, "launch", no_launch)
    code, _out, err = run_cli(capsys, "train", str(seed), "--detach", "--runs-dir", str(tmp_path / "runs"))
    assert err.splitlines()[0] == ("tuneterm: warning: pre-flight check could not run "
                                   "(RuleFileError: rules/config.yaml: cannot read); continuing")
    assert code == 2 and "launch not wanted here" in err  # it went on to the launch


def test_cli_force_launches_despite_errors(seed: Path, tmp_path: Path, capsys) -> None:
    from tuneterm.runs.control import stop_run
    from tuneterm.runs.layout import RunDir

    runs = tmp_path / "runs"
    code, out, err = run_cli(capsys, "train", str(seed), "--detach", "--force", "--runs-dir", str(runs))
    [run_dir] = list(runs.iterdir())
    try:
        assert code == 0 and out.strip() == run_dir.name
        assert "tuneterm: pre-flight error C101" in err and "launched" in err
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["learning_rate"] == 5e-5
    finally:
        stop_run(RunDir(run_dir), grace_s=0.0)  # SIGKILL at once: nothing is trained here
