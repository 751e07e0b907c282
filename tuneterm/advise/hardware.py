"""The GPU a run used: its name, compute capability and whether it has bf16.

A diagnosed run may have been trained on another machine, so the GPU comes from what the run left
behind (a tuneterm run directory's ``gpu.jsonl``, a console log that names the card, an
out-of-memory message that states its capacity), not from the GPUs of the machine running
``doctor``. NVIDIA's table of compute capabilities (https://developer.nvidia.com/cuda-gpus) maps a
name to its architecture; bf16 needs Ampere (sm_80) or newer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (pattern over the GPU name, compute capability); first match wins, so specific names come first.
_CAPABILITIES: tuple[tuple[str, float], ...] = (
    (r"\bGH200\b|\bH200\b|\bH100\b|\bH800\b|\bH20\b", 9.0),
    (r"\bB200\b|\bB100\b|\bGB200\b", 10.0),
    (r"RTX\s*50\d0|RTX PRO 6000 Blackwell", 12.0),
    (r"\bL40S?\b|\bL4\b|RTX\s*40\d0|RTX 6000 Ada|RTX \d000 Ada", 8.9),
    (r"\bA100\b|\bA800\b|\bA30\b", 8.0),
    (r"\bA10G?\b|\bA40\b|\bA16\b|\bA2\b|RTX\s*A\d000|RTX\s*30\d0", 8.6),
    (r"\bT4\b|RTX\s*20\d0|TITAN RTX|Quadro RTX", 7.5),
    (r"\bV100\b|TITAN V", 7.0),
    (r"\bP100\b", 6.0),
    (r"\bP40\b|\bP4\b|GTX\s*10\d0|TITAN Xp?", 6.1),
    (r"\bK80\b", 3.7),
)
_NAME = re.compile(
    r"((?:NVIDIA |Tesla |Quadro |GeForce )*(?:GH200|H200|H100|H800|H20|B200|B100|A100|A800|A30|A10G|A10|A40|L40S|L40|L4|T4|V100|"
    r"P100|P40|K80|RTX\s*\d{4}(?: Ti| SUPER)?|RTX A\d000|TITAN \w+)(?:[- ](?:SXM\d?|PCIE|PCIe|80GB|40GB|16GB|32GB|NVL))*)"
)


@dataclass(frozen=True, slots=True)
class Hardware:
    """What is known about the GPU of a run.

    Attributes:
        gpu_name: the card's name as the run recorded it, or ``None``.
        compute_capability: e.g. ``7.5`` for a T4, or ``None`` when unknown.
        source: where the name came from (``"gpu.jsonl"``, ``"log"``, ``"nvml"`` for this machine's
            GPU when the run names none), ``"cpu"`` for a tuneterm run that recorded no GPU at
            all, or ``"unknown"``.
    """

    gpu_name: str | None = None
    compute_capability: float | None = None
    source: str = "unknown"

    @property
    def bf16(self) -> bool | None:
        """True on sm_80+, False on older GPUs and on the CPU, None when unknown.

        >>> Hardware("Tesla T4", 7.5, "log").bf16, Hardware().bf16
        (False, None)
        """
        if self.source == "cpu":
            return False
        if self.compute_capability is None:
            return None
        return self.compute_capability >= 8.0

    def describe(self) -> str:
        """``Tesla T4 (sm_75)`` / ``CPU`` / ``unknown GPU``."""
        if self.source == "cpu":
            return "CPU"
        if self.gpu_name is None:
            return "unknown GPU"
        if self.compute_capability is None:
            return self.gpu_name
        return f"{self.gpu_name} (sm_{int(round(self.compute_capability * 10))})"


def capability_of(name: str) -> float | None:
    """The compute capability of a GPU name, ``None`` for a name not in the table.

    >>> capability_of("Tesla T4"), capability_of("NVIDIA A100-SXM4-80GB"), capability_of("Apple M2")
    (7.5, 8.0, None)
    """
    for pattern, cc in _CAPABILITIES:
        if re.search(pattern, name, re.IGNORECASE):
            return cc
    return None


def find_gpu_name(text: str) -> str | None:
    """The first NVIDIA GPU name in a log text (``GPU = Tesla T4. Max memory ...``), or ``None``.

    >>> find_gpu_name("==((====))==  Unsloth: GPU: Tesla T4. Max memory: 14.7 GB")
    'Tesla T4'
    """
    m = _NAME.search(text)
    return m.group(1).strip() if m else None


def from_name(name: str | None, source: str) -> Hardware:
    """A :class:`Hardware` for ``name`` read from ``source`` (``Hardware()`` for no name)."""
    if not name:
        return Hardware()
    return Hardware(gpu_name=name, compute_capability=capability_of(name), source=source)
