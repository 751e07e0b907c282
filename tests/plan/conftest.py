"""Fixtures for the planner tests: offline model lookups and a fake NVML."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the Hub: this machine is offline and tests must be deterministic."""
    monkeypatch.setenv("TUNETERM_OFFLINE", "1")


class NVMLError(Exception):
    """Stand-in for pynvml.NVMLError."""


@dataclass
class _Mem:
    total: int
    used: int
    free: int


@dataclass
class _Util:
    gpu: int
    memory: int


@dataclass
class _Proc:
    pid: int
    usedGpuMemory: int | None


def make_fake_nvml(gpus: list[dict], *, init_error: str | None = None) -> types.ModuleType:
    """A module exposing the pynvml functions tuneterm.plan.gpu calls, backed by ``gpus``.

    Each GPU dict: name, total, used, util, temp, power_mw, limit_mw, cc, procs [(pid, bytes)],
    and optionally ``no_power`` (NVML NotSupported for power, as on many GeForce boards).
    """
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.NVML_TEMPERATURE_GPU = 0
    state = {"init": False}

    def nvmlInit() -> None:
        if init_error:
            raise NVMLError(init_error)
        state["init"] = True

    def _h(i: int) -> dict:
        return gpus[i]

    m.nvmlInit = nvmlInit
    m.nvmlShutdown = lambda: state.update(init=False)
    m.nvmlSystemGetDriverVersion = lambda: b"550.54.15"
    m.nvmlSystemGetCudaDriverVersion_v2 = lambda: 12040
    m.nvmlSystemGetNVMLVersion = lambda: "12.550.54.15"
    m.nvmlDeviceGetCount = lambda: len(gpus)
    m.nvmlDeviceGetHandleByIndex = _h
    m.nvmlDeviceGetName = lambda h: h["name"]
    m.nvmlDeviceGetUUID = lambda h: "GPU-" + h["name"].replace(" ", "-")
    m.nvmlDeviceGetMemoryInfo = lambda h: _Mem(h["total"], h["used"], h["total"] - h["used"])
    m.nvmlDeviceGetUtilizationRates = lambda h: _Util(h["util"], 10)
    m.nvmlDeviceGetTemperature = lambda h, kind: h["temp"]

    def power(h: dict) -> int:
        if h.get("no_power"):
            raise NVMLError("Not Supported")
        return h["power_mw"]

    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: h["limit_mw"]
    m.nvmlDeviceGetCudaComputeCapability = lambda h: h["cc"]
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: [_Proc(pid, b) for pid, b in h.get("procs", [])]
    m.nvmlDeviceGetGraphicsRunningProcesses = lambda h: []
    return m


H100 = dict(name="NVIDIA H100 80GB HBM3", total=85899345920, used=2 * 2**30, util=37, temp=41, power_mw=120000,
            limit_mw=700000, cc=(9, 0), procs=[])
T4 = dict(name="Tesla T4", total=16 * 2**30, used=0, util=0, temp=30, power_mw=10000, limit_mw=70000, cc=(7, 5),
          procs=[], no_power=True)


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch):
    """Install a fake ``pynvml``: ``fake_nvml([gpu, ...], init_error=None)``."""

    def install(gpus: list[dict], init_error: str | None = None) -> types.ModuleType:
        mod = make_fake_nvml(gpus, init_error=init_error)
        monkeypatch.setitem(sys.modules, "pynvml", mod)
        return mod

    return install


def set_installed(monkeypatch: pytest.MonkeyPatch, name: str, installed: bool) -> None:
    """Make ``importlib.util.find_spec(name)`` say ``name`` is (or is not) installed, whatever this
    machine has: the planner only asks whether a package is there (bitsandbytes, the Liger
    kernel) and never imports it, so its proposals can be tested for both answers."""
    import importlib.machinery

    if installed:
        stand_in = types.ModuleType(name)
        stand_in.__spec__ = importlib.machinery.ModuleSpec(name, None)
        monkeypatch.setitem(sys.modules, name, stand_in)
    else:
        monkeypatch.setitem(sys.modules, name, None)  # what find_spec answers for a package that is absent
