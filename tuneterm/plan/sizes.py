"""Memory sizes as people type them (``--gpu-memory 24GiB``, the app's plan form)."""

from __future__ import annotations

import re

from tuneterm.errors import ConfigError

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(gib|gb|g|mib|mb|m)?\s*$", re.I)


def parse_size_gib(text: str) -> float:
    """GiB from ``24``, ``24GiB``, ``24G``, ``80GB`` (GB = 1e9 bytes) or ``24576MiB``.

    >>> parse_size_gib("80GB") < 80 < parse_size_gib("80GiB") + 1
    True

    Raises:
        ConfigError: not a size.
    """
    m = _SIZE_RE.match(text or "")
    if not m:
        raise ConfigError(f"--gpu-memory: {text!r} is not a size (examples: 24GiB, 80GB, 24)")
    v = float(m.group(1))
    unit = (m.group(2) or "gib").lower()
    gib = {"gib": v, "g": v, "gb": v * 1e9 / 2**30, "mib": v / 1024, "m": v / 1024, "mb": v * 1e6 / 2**30}[unit]
    if gib <= 0:
        raise ConfigError("--gpu-memory must be positive")
    return gib
