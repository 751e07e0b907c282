"""The memory record of a run directory: the planner's estimate beside the measured CUDA peak.

``tuneterm train`` records the planner's estimate in launch.json (``memory_estimate``); the
training process samples CUDA memory into gpu.jsonl. Either side may be missing (a CPU run has no
CUDA peaks; a run launched before 0.2, or of a model the planner does not know, has no estimate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneterm.logs.model import MemoryRecord
from tuneterm.runs.files import JsonlRows
from tuneterm.runs.layout import GPU, LAUNCH, read_json_object


def _mib(row: dict[str, Any], keys: tuple[str, ...], best: float | None) -> float | None:
    for key in keys:
        v = row.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
            best = v if best is None else max(best, v)
    return best


def read_memory_record(d: Path) -> MemoryRecord | None:
    """The estimate (launch.json ``memory_estimate`` with a numeric ``peak_gib``) and the largest
    ``peak_allocated_mib``/``peak_reserved_mib`` (or ``mem_*``) of gpu.jsonl, in GiB, with the
    GPU's name; None when neither side is recorded. Malformed rows are skipped."""
    launch = read_json_object(d / LAUNCH)
    est = launch.get("memory_estimate") if launch is not None else None
    estimate = est if isinstance(est, dict) and isinstance(est.get("peak_gib"), (int, float)) else None
    alloc = reserved = None
    name = None
    for row in JsonlRows(d / GPU):
        alloc = _mib(row, ("peak_allocated_mib", "mem_allocated_mib"), alloc)
        reserved = _mib(row, ("peak_reserved_mib", "mem_reserved_mib"), reserved)
        if name is None and isinstance(row.get("name"), str):
            name = row["name"][:100]
    record = MemoryRecord(
        estimate=estimate,
        peak_allocated_gib=round(alloc / 1024, 3) if alloc is not None else None,
        peak_reserved_gib=round(reserved / 1024, 3) if reserved is not None else None,
        gpu_name=name,
    )
    return None if record.is_empty() else record


def memory_line(record: MemoryRecord | None) -> str | None:
    """``memory per GPU: estimated 18.6 GiB, measured 17.9 GiB reserved (...)``, or None when no CUDA
    peak was measured (a CPU run, or a run that has not logged yet: an estimate "per GPU" alone
    would mislead there). The planner's peak is a reserved-memory figure, so it is compared with
    the measured reserved peak when there is one.

    >>> memory_line(MemoryRecord({"peak_gib": 10.0}, peak_allocated_gib=9.0, peak_reserved_gib=11.0))
    'memory per GPU: estimated 10.0 GiB, measured 11.0 GiB reserved (estimate -9%; allocated 9.0)'
    """
    if record is None:
        return None
    peak = record.peak_estimate_gib
    alloc, reserved = record.peak_allocated_gib, record.peak_reserved_gib
    measured = reserved if reserved is not None else alloc
    if measured is None:
        return None
    parts = []
    if peak is not None:
        parts.append(f"estimated {peak:.1f} GiB")
    what = "reserved" if reserved is not None else "allocated"
    extras = []
    if peak is not None and measured > 0:
        extras.append(f"estimate {(peak - measured) / measured:+.0%}")
    if what == "reserved" and alloc is not None:
        extras.append(f"allocated {alloc:.1f}")
    parts.append(f"measured {measured:.1f} GiB {what}" + (f" ({'; '.join(extras)})" if extras else ""))
    return "memory per GPU: " + ", ".join(parts)
