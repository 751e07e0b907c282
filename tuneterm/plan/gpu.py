"""GPU profile through NVML (``nvidia-ml-py``, imported as ``pynvml``), plus CPU and RAM.

:func:`probe` never raises: no NVML library, no driver, or no GPU is a fact reported in
:attr:`SystemProfile.gpu_error`, and the CPU/RAM part is always filled. Every per-GPU query is
guarded on its own, because NVML answers ``NotSupported`` for some fields on some boards (power on
GeForce cards, processes inside containers ...).

Nothing here imports torch.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process holding memory on a GPU."""

    pid: int
    used_bytes: int | None
    command: str | None  # command line from /proc where visible

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"pid": self.pid, "used_gib": None if self.used_bytes is None else round(self.used_bytes / GIB, 3),
                "command": self.command}


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU as NVML reports it (None where NVML does not support the query)."""

    index: int
    name: str
    uuid: str | None
    total_bytes: int
    used_bytes: int
    free_bytes: int
    utilization_pct: int | None
    memory_utilization_pct: int | None
    temperature_c: int | None
    power_w: float | None
    power_limit_w: float | None
    compute_capability: tuple[int, int] | None
    processes: tuple[GpuProcess, ...] = ()

    @property
    def total_gib(self) -> float:
        """Total memory in GiB."""
        return self.total_bytes / GIB

    @property
    def bf16(self) -> bool | None:
        """bf16 tensor cores: compute capability 8.0 (Ampere) or newer."""
        return None if self.compute_capability is None else self.compute_capability >= (8, 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (memory in GiB)."""
        cc = self.compute_capability
        return {
            "index": self.index, "name": self.name, "uuid": self.uuid,
            "memory_total_gib": round(self.total_bytes / GIB, 3),
            "memory_used_gib": round(self.used_bytes / GIB, 3),
            "memory_free_gib": round(self.free_bytes / GIB, 3),
            "utilization_pct": self.utilization_pct, "memory_utilization_pct": self.memory_utilization_pct,
            "temperature_c": self.temperature_c, "power_w": self.power_w, "power_limit_w": self.power_limit_w,
            "compute_capability": None if cc is None else f"{cc[0]}.{cc[1]}", "bf16": self.bf16,
            "processes": [p.to_dict() for p in self.processes],
        }


@dataclass(frozen=True, slots=True)
class SystemProfile:
    """GPUs (possibly none), driver/CUDA versions, and the host's CPU and RAM."""

    gpus: tuple[GpuInfo, ...]
    driver_version: str | None
    cuda_version: str | None
    nvml_version: str | None
    gpu_error: str | None  # why no GPU is shown (None when NVML answered)
    cpu_model: str | None
    cpu_count: int | None
    ram_total_bytes: int | None
    ram_available_bytes: int | None
    hostname: str = field(default_factory=platform.node)

    def to_dict(self) -> dict[str, Any]:
        """JSON form of ``tuneterm gpu --json``."""
        return {
            "gpus": [g.to_dict() for g in self.gpus],
            "gpu_count": len(self.gpus),
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "nvml_version": self.nvml_version,
            "gpu_error": self.gpu_error,
            "cpu": {"model": self.cpu_model, "count": self.cpu_count},
            "ram": {"total_gib": None if self.ram_total_bytes is None else round(self.ram_total_bytes / GIB, 3),
                    "available_gib": None if self.ram_available_bytes is None else round(self.ram_available_bytes / GIB, 3)},
            "hostname": self.hostname,
        }


# ---------------------------------------------------------------------------- host
def _meminfo() -> tuple[int | None, int | None]:
    try:
        text = Path("/proc/meminfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None, None
    vals: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            vals[key] = int(parts[0]) * 1024
    return vals.get("MemTotal"), vals.get("MemAvailable")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None  # another user's process, another container, or gone
    text = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return text or None


# ---------------------------------------------------------------------------- NVML
def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends: the field is unknown
        return None


def _gpu(nv: Any, index: int) -> GpuInfo:
    h = nv.nvmlDeviceGetHandleByIndex(index)
    mem = nv.nvmlDeviceGetMemoryInfo(h)
    util = _try(nv.nvmlDeviceGetUtilizationRates, h)
    temp = _try(nv.nvmlDeviceGetTemperature, h, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
    power = _try(nv.nvmlDeviceGetPowerUsage, h)
    limit = _try(nv.nvmlDeviceGetEnforcedPowerLimit, h)
    cc = _try(nv.nvmlDeviceGetCudaComputeCapability, h)
    procs: list[GpuProcess] = []
    seen: set[int] = set()
    for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        fn = getattr(nv, getter, None)
        for p in (_try(fn, h) or []) if fn else []:
            pid = int(getattr(p, "pid", -1))
            if pid < 0 or pid in seen:
                continue
            seen.add(pid)
            used = getattr(p, "usedGpuMemory", None)
            procs.append(GpuProcess(pid=pid, used_bytes=int(used) if isinstance(used, int) and used >= 0 else None,
                                    command=_cmdline(pid)))
    return GpuInfo(
        index=index, name=_text(nv.nvmlDeviceGetName(h)), uuid=(lambda u: None if u is None else _text(u))(_try(nv.nvmlDeviceGetUUID, h)),
        total_bytes=int(mem.total), used_bytes=int(mem.used), free_bytes=int(mem.free),
        utilization_pct=None if util is None else int(util.gpu),
        memory_utilization_pct=None if util is None else int(util.memory),
        temperature_c=None if temp is None else int(temp),
        power_w=None if power is None else power / 1000.0,
        power_limit_w=None if limit is None else limit / 1000.0,
        compute_capability=None if cc is None else (int(cc[0]), int(cc[1])),
        processes=tuple(procs),
    )


def _cuda_version(nv: Any) -> str | None:
    for fn in ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"):
        v = _try(getattr(nv, fn, None)) if hasattr(nv, fn) else None
        if isinstance(v, int) and v > 0:
            return f"{v // 1000}.{(v % 1000) // 10}"
    return None


def probe() -> SystemProfile:
    """Profile the GPUs (through NVML) and the host. Never raises.

    Returns:
        A :class:`SystemProfile`; ``gpus`` is empty and ``gpu_error`` says why when NVML is
        missing, no driver is loaded, or there is no GPU.
    """
    total, avail = _meminfo()
    host = dict(cpu_model=_cpu_model(), cpu_count=os.cpu_count(), ram_total_bytes=total, ram_available_bytes=avail)
    try:
        import pynvml as nv  # nvidia-ml-py
    except ImportError:
        return SystemProfile(gpus=(), driver_version=None, cuda_version=None, nvml_version=None,
                             gpu_error="NVML is not installed (pip install nvidia-ml-py)", **host)
    try:
        nv.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound / DriverNotLoaded / NoPermission
        msg = _text(getattr(exc, "args", [""])[0] if getattr(exc, "args", None) else exc) or type(exc).__name__
        return SystemProfile(gpus=(), driver_version=None, cuda_version=None, nvml_version=None,
                             gpu_error=f"no NVIDIA driver available ({_text(exc) or msg})", **host)
    try:
        driver = _try(nv.nvmlSystemGetDriverVersion)
        nvml_v = _try(getattr(nv, "nvmlSystemGetNVMLVersion", lambda: None))
        cuda = _cuda_version(nv)
        count = int(nv.nvmlDeviceGetCount())
        gpus = []
        errors = []
        for i in range(count):
            try:
                gpus.append(_gpu(nv, i))
            except Exception as exc:  # noqa: BLE001 - a GPU that fell off the bus: report, keep the rest
                errors.append(f"GPU {i}: {_text(exc)}")
        err = None if gpus else ("; ".join(errors) if errors else "NVML found no GPU")
        return SystemProfile(gpus=tuple(gpus), driver_version=None if driver is None else _text(driver),
                             cuda_version=cuda, nvml_version=None if nvml_v is None else _text(nvml_v),
                             gpu_error=err, **host)
    except Exception as exc:  # noqa: BLE001
        return SystemProfile(gpus=(), driver_version=None, cuda_version=None, nvml_version=None,
                             gpu_error=f"NVML error: {_text(exc)}", **host)
    finally:
        _try(nv.nvmlShutdown)
