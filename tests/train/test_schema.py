"""The TRL schema cache: built once per installed versions, reused without importing TRL, stale
files ignored; TRL's own ``__post_init__`` checks moved to the training process (exit 2 there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.train.conftest import TINY, needs_trl, run_cli, status
from tuneterm.errors import ConfigError
from tuneterm.preflight import schema as schema_mod
from tuneterm.preflight.schema import (
    FORMAT,
    cache_path,
    describe,
    installed_versions,
    load_schema,
)
from tuneterm.train.config import resolve

pytestmark = needs_trl

HEAVY = ("trl", "torch", "transformers", "peft", "datasets")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty tuneterm cache directory for this test."""
    d = tmp_path / "cache"
    monkeypatch.setenv("TUNETERM_CACHE_DIR", str(d))
    return d


@pytest.fixture(scope="module")
def built_doc() -> dict[str, Any]:
    """One schema document built from TRL (imports TRL once per test process)."""
    return schema_mod.build_doc()


def _config(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _drop_field(doc: dict[str, Any], trainer: str, key: str) -> dict[str, Any]:
    """A copy of ``doc`` without field ``key`` in every class of ``trainer``."""
    out = json.loads(json.dumps(doc))
    for cls in out["trainers"][trainer]["classes"]:
        cls["fields"].pop(key, None)
    return out


def _seed(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_descriptors_cover_trl_annotations() -> None:
    assert describe(int | None) == {"t": "union", "of": [{"t": "int"}, {"t": "none"}]}
    assert describe(list[str] | str) == {"t": "union", "of": [{"t": "list", "item": {"t": "str"}}, {"t": "str"}]}
    assert describe(dict[str, Any]) == {"t": "dict"}
    assert describe(tuple[int, ...]) == {"t": "list", "item": {"t": "int"}}


def test_cache_is_built_once_then_reused_without_trl(cache: Path, tmp_path: Path, built_doc: dict[str, Any]) -> None:
    with pytest.raises(LookupError):
        load_schema(build=False)  # nothing cached yet, and it may not import TRL
    first = load_schema()
    assert first.built and first.path == cache_path() and first.path.is_file()
    assert first.path.parent == cache / "trl-schema"
    v = installed_versions()
    assert f"trl-{v['trl']}" in first.path.name and f"transformers-{v['transformers']}" in first.path.name
    doc = json.loads(first.path.read_text())
    assert doc["format"] == FORMAT and doc["versions"] == v
    lr = first.trainers["sft"].fields["learning_rate"]
    assert lr["type"] == {"t": "float"} and isinstance(lr["default"], float)
    assert first.trainers["grpo"].classes[0] == "GRPOScriptArguments"
    assert "label_smoothing" in first.dpo_only_keys()
    stamp = first.path.stat()

    second = load_schema(build=False)
    assert not second.built and second.path == first.path
    assert first.path.stat().st_mtime_ns == stamp.st_mtime_ns and first.path.stat().st_ino == stamp.st_ino

    # The launcher's answers come from the file: a cache without learning_rate refuses the key
    # (and a later build=False load proves nothing rebuilt it behind our back).
    _seed(first.path, _drop_field(built_doc, "sft", "learning_rate"))
    cfg = _config(tmp_path, "model_name_or_path: m\ndataset_name: d\nlearning_rate: 1.0e-4\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rate' for trl sft"):
        resolve(cfg)
    assert "learning_rate" not in load_schema(build=False).trainers["sft"].fields


def test_cache_is_keyed_by_installed_versions(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = load_schema()
    other = {"trl": "0.19.0", "transformers": "4.46.0", "peft": "0.13.0"}
    monkeypatch.setattr(schema_mod, "installed_versions", lambda: dict(other))
    upgraded = load_schema()
    assert upgraded.built, "other versions must not reuse the cache of the installed ones"
    assert upgraded.path != real.path and "trl-0.19.0" in upgraded.path.name
    assert json.loads(upgraded.path.read_text())["versions"] == other
    assert sorted(p.name for p in (cache / "trl-schema").glob("*.json")) == sorted([real.path.name, upgraded.path.name])


@pytest.mark.parametrize("kind", ["other-versions", "other-format", "truncated", "not-a-schema"])
def test_stale_or_broken_cache_is_ignored_and_rebuilt(
    cache: Path, tmp_path: Path, built_doc: dict[str, Any], kind: str
) -> None:
    path = cache_path()
    bad = _drop_field(built_doc, "sft", "learning_rate")
    if kind == "other-versions":
        bad["versions"] = {**bad["versions"], "trl": "0.0.1"}
        _seed(path, bad)
    elif kind == "other-format":
        bad["format"] = FORMAT - 1
        _seed(path, bad)
    elif kind == "truncated":
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(bad)[:500])
    else:
        _seed(path, {"format": FORMAT, "versions": installed_versions(), "trainers": {"sft": []}})
    with pytest.raises(LookupError):
        load_schema(build=False)
    cfg = _config(tmp_path, "model_name_or_path: m\ndataset_name: d\nlearning_rate: 1.0e-4\nbf16: false\n")
    assert resolve(cfg).values["learning_rate"] == pytest.approx(1e-4)  # rebuilt from TRL
    fresh = load_schema(build=False)
    assert not fresh.built and "learning_rate" in fresh.trainers["sft"].fields
    assert json.loads(path.read_text())["versions"] == installed_versions()


def test_unwritable_cache_dir_still_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("TUNETERM_CACHE_DIR", str(blocker))
    schema = load_schema()
    assert schema.built and schema.path is None
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        resolve(_config(tmp_path, "model_name_or_path: m\ndataset_name: d\nlearning_rat: 1\n"))
    assert not list(tmp_path.glob("*.tmp")) and blocker.is_file()


def test_concurrent_writers_never_expose_a_partial_file(cache: Path, built_doc: dict[str, Any]) -> None:
    # Launchers racing to write the cache (temp file + os.replace): a reader at any moment sees
    # either no file or a whole, valid one, and no temporary file is left behind.
    import threading

    path = cache_path()
    versions = installed_versions()
    stop = threading.Event()
    seen: list[str] = []

    def writer() -> None:
        while not stop.is_set():
            if not schema_mod.write_cache(path, built_doc):
                seen.append("write failed")

    def reader() -> None:
        while not stop.is_set():
            if path.exists():
                seen.append("ok" if schema_mod.read_cache(path, versions) is not None else "partial")

    threads = [threading.Thread(target=writer), threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and len(seen) < 50:
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert seen and set(seen) == {"ok"}, f"{seen.count('partial')} partial reads of {len(seen)}"
    assert [p.name for p in path.parent.iterdir()] == [path.name]


_PROBE = """
import json, sys
from tuneterm.cli import main
codes = {}
for name, argv in json.loads(sys.argv[1]).items():
    try:
        main(argv)
    except SystemExit as exc:
        codes[name] = exc.code
from tuneterm.train.config import resolve
lenient = resolve(sys.argv[2]).values
print(json.dumps({"codes": codes, "lr": lenient["learning_rate"], "steps": lenient["max_steps"],
                  "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def test_launcher_refuses_from_the_cache_without_importing_trl(tmp_path: Path) -> None:
    load_schema()  # the cache for the installed versions exists (built here if it did not)
    runs = tmp_path / "runs"
    unknown = _config(tmp_path, "model_name_or_path: m\ndataset_name: d\nlearning_rat: 1.0e-4\n", "unknown.yaml")
    wrong = _config(tmp_path, "model_name_or_path: m\ndataset_name: d\nmax_steps: [1, 2]\n", "wrong.yaml")
    lenient = _config(tmp_path, "model_name_or_path: m\ndataset_name: d\nlearning_rate: 2e-5\nmax_steps: '7'\n", "ok.yaml")
    cases = {
        "unknown": ["train", str(unknown), "--runs-dir", str(runs), "--detach"],
        "wrong": ["train", str(wrong), "--runs-dir", str(runs), "--detach"],
        "set": ["train", str(TINY), "--set", "learning_rate=fast", "--runs-dir", str(runs), "--detach"],
    }
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(cases), str(lenient)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["codes"] == {"unknown": 2, "wrong": 2, "set": 2}
    assert got["heavy"] == [], "the launcher's checks must not import the training stack"
    assert got["lr"] == pytest.approx(2e-5) and got["steps"] == 7  # YAML-string leniency, from the cache
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("tuneterm: error:") for e in errors), errors
    assert "unknown key 'learning_rat' for trl sft (did you mean 'learning_rate'?)" in errors[0]
    assert "key 'max_steps' expects an integer, got [1, 2]" in errors[1]
    assert "key 'learning_rate' expects a number, got 'fast'" in errors[2]
    assert not runs.exists(), "nothing may be launched for a refused config"


def test_full_validation_runs_trl_post_init(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "model_name_or_path: m\ndataset_name: d\nbf16: false\nuse_cpu: true\n"
                            "load_best_model_at_end: true\neval_strategy: steps\nsave_strategy: epoch\n")
    assert resolve(cfg).values["load_best_model_at_end"] is True  # the launcher's schema check accepts the types
    with pytest.raises(ConfigError, match=r"cfg\.yaml: rejected by trl sft: "):
        resolve(cfg, full=True)


# load_best_model_at_end with save and eval strategies that differ is rejected only by
# transformers' __post_init__ (the launcher's checks do not model it); bf16 with fp16, which this
# used to be, is now refused by the launcher before any run directory exists.
_POST_INIT = ["--set", "load_best_model_at_end=true", "--set", "eval_strategy=steps", "--set", "save_strategy=epoch"]


def test_bf16_with_fp16_is_refused_before_a_run_directory(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "model_name_or_path: m\ndataset_name: d\nbf16: true\nfp16: true\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: bf16 and fp16 are both true"):
        resolve(cfg)


def _expect_config_failure(rd: Path) -> str:
    st = status(rd)
    assert st["state"] == "failed" and st["error_kind"] == "config" and st["exit_code"] == 2, st
    assert st["error"].startswith(f"{TINY}: rejected by trl sft: ") and "\n" not in st["error"]
    assert "Traceback" not in (rd / "stderr.log").read_text()
    assert not (rd / "metrics.jsonl").exists(), "nothing trained"
    return str(st["error"])


@pytest.mark.slow
def test_post_init_error_in_the_worker_exits_2_like_a_refusal(tmp_path: Path) -> None:
    proc = run_cli(["train", str(TINY), "--headless", "--runs-dir", "runs", "--name", "bad", *_POST_INIT], cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = _expect_config_failure(tmp_path / "runs" / "bad")
    assert proc.stderr.strip().splitlines()[-1] == f"tuneterm: error: {error}"
    assert proc.stdout.splitlines() == ["bad"], "only the run name; no progress, no findings"


@pytest.mark.slow
def test_detached_post_init_error_shows_in_runs(tmp_path: Path) -> None:
    load_schema()  # the cache for the installed versions exists (built here if it did not)
    cases = {"detach": ["train", str(TINY), "--detach", "--runs-dir", str(tmp_path / "runs"), "--name", "bg", *_POST_INIT]}
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(cases), str(TINY)], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path)
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["codes"] == {"detach": 0} and got["heavy"] == [], proc.stderr
    rd = tmp_path / "runs" / "bg"
    deadline = time.monotonic() + 180
    while status(rd).get("state") not in ("failed", "finished", "stopped") and time.monotonic() < deadline:
        time.sleep(0.3)
    error = _expect_config_failure(rd)
    listed = run_cli(["runs", "--runs-dir", "runs", "--json"], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    rows = doc if isinstance(doc, list) else doc["runs"]
    assert [(r["name"], r["state"]) for r in rows] == [("bg", "failed")]
    # The listing shows the recorded error, cut to one table-friendly line when the config's path
    # makes it long (a checkout under a long path): never anything but its start.
    shown = rows[0]["error"]
    assert shown == error or (shown.endswith("…") and error.startswith(shown[:-1])), (shown, error)


def test_bf16_without_a_bf16_gpu_is_refused_before_a_run_directory(tmp_path: Path) -> None:
    """What `tuneterm check` reports (C122) is what `tuneterm train` refuses: no failed run
    directory from TRL's 'Your setup doesn't support bf16/gpu' (this test machine has no GPU)."""
    load_schema()
    # a machine whose NVML finds no driver (a fake pynvml first on the path: any machine behaves so)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "pynvml.py").write_text("class NVMLError(Exception):\n    pass\n\n\n"
                                    "def nvmlInit():\n    raise NVMLError('Driver Not Loaded')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli(["train", str(TINY), "--headless", "--runs-dir", "runs", "--name", "nobf16", "--set", "bf16=true"],
                   cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "C122" in proc.stderr and "bf16" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs" / "nobf16").exists()
    check = run_cli(["check", str(TINY)], cwd=tmp_path, env=env)
    assert "C122" not in check.stdout  # the shipped tiny config trains in fp32 on the CPU
