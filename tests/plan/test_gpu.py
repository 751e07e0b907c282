"""`tuneterm gpu` against a fake NVML: 0, 1 and 2 GPUs, NVML missing, driver missing."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.plan.conftest import H100, T4
from tuneterm.cli import main
from tuneterm.plan.gpu import probe


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_two_gpus_with_a_process(fake_nvml, capsys) -> None:
    me = os.getpid()
    fake_nvml([dict(H100, procs=[(me, 3 * 2**30)]), T4])
    prof = probe()
    assert [g.name for g in prof.gpus] == ["NVIDIA H100 80GB HBM3", "Tesla T4"]
    h, t = prof.gpus
    assert h.bf16 is True and t.bf16 is False
    assert abs(h.total_gib - 80.0) < 1e-9 and h.free_bytes == H100["total"] - 2 * 2**30
    assert t.power_w is None  # NVML NotSupported is a missing field, not a failure
    assert prof.driver_version == "550.54.15" and prof.cuda_version == "12.4"
    cmd = h.processes[0].command or ""
    assert h.processes[0].pid == me and ("python" in cmd or "pytest" in cmd)  # our own /proc cmdline
    code, out, _ = run_cli(["gpu", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["gpu_count"] == 2 and data["gpus"][1]["compute_capability"] == "7.5"
    assert data["gpus"][0]["processes"][0]["used_gib"] == 3.0
    code, out, _ = run_cli(["gpu"], capsys)
    assert code == 0 and "Tesla T4" in out and "550.54.15" in out and str(me) in out


def test_one_gpu(fake_nvml, capsys) -> None:
    fake_nvml([H100])
    code, out, _ = run_cli(["gpu", "--json"], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["gpu_count"] == 1 and d["gpus"][0]["bf16"] is True and d["gpu_error"] is None
    assert d["gpus"][0]["utilization_pct"] == 37 and d["gpus"][0]["power_w"] == 120.0


def test_zero_gpus(fake_nvml, capsys) -> None:
    fake_nvml([])
    code, out, _ = run_cli(["gpu"], capsys)
    assert code == 0
    assert "No GPU" in out and "CPU:" in out and "RAM:" in out


def test_driver_missing(fake_nvml, capsys) -> None:
    fake_nvml([H100], init_error="Driver Not Loaded")
    code, out, _ = run_cli(["gpu", "--json"], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["gpus"] == [] and "Driver Not Loaded" in d["gpu_error"]
    assert d["cpu"]["count"] >= 1 and d["ram"]["total_gib"] > 0


def test_nvml_not_installed(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    code, out, _ = run_cli(["gpu"], capsys)
    assert code == 0
    assert "NVML is not installed" in out and "CPU:" in out


def test_escape_sequences_in_gpu_text_are_inert(fake_nvml, capsys) -> None:
    fake_nvml([dict(H100, name="Evil\x1b[31m[bold]GPU")])
    code, out, _ = run_cli(["gpu"], capsys)
    assert code == 0 and "\x1b[31m" not in out and "[bold]" in out
