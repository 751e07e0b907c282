"""Fast series statistics shared by the detectors (pure Python, O(n) passes, no numpy).

Logs can hold hundreds of thousands of points, and a full rule evaluation must stay well under a
second on them, so everything here works in C-level builtins (``sum``, ``sorted``, slicing,
``array.count``) where it can and never does per-point Python sorting. Long series are reduced to
block medians (:func:`blocks`) before windowed work.

Results that several detectors need (the finite points of a series, its block summary) are cached
for the duration of one :func:`tuneterm.engine.evaluate.evaluate` call via :func:`analysis_cache`.

>>> median([3.0, 1.0, 2.0])
2.0
>>> relative_change(2.7335, 2.7150) < 0.01
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import compress
from typing import Any, TypeVar

from tuneterm.logs.model import Series

T = TypeVar("T")

_CACHE: ContextVar[dict[Any, Any] | None] = ContextVar("tuneterm_engine_cache", default=None)


@contextmanager
def analysis_cache() -> Iterator[None]:
    """Cache derived series data (finite points, block summaries) inside this block."""
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


def cache_active() -> bool:
    """True inside an :func:`analysis_cache` block."""
    return _CACHE.get() is not None


def cached(key: Any, compute: Callable[[], T]) -> T:
    """Return ``compute()``, memoised under ``key`` while an :func:`analysis_cache` is active."""
    cache = _CACHE.get()
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]  # type: ignore[no-any-return]


def all_finite(values: Sequence[float]) -> bool:
    """True when every value is finite (a C-level ``sum`` first, a scan only if needed)."""
    total = sum(values)
    if math.isfinite(total):
        return True
    return all(math.isfinite(v) for v in values)


def finite_points(series: Series) -> tuple[list[int], list[float]]:
    """The steps and values of ``series`` whose value is finite (cached per evaluation)."""

    def compute() -> tuple[list[int], list[float]]:
        values = series.values
        if all_finite(values):
            return series.steps.tolist(), values.tolist()
        isf = math.isfinite
        pairs = [(s, v) for s, v in zip(series.steps, values) if isf(v)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    return cached(("finite", id(series), len(series)), compute)


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence (``nan`` for an empty one)."""
    n = len(values)
    if n == 0:
        return math.nan
    s = sorted(values)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2.0


def mad(values: Sequence[float], center: float | None = None) -> float:
    """Median absolute deviation around ``center`` (the median by default)."""
    if not values:
        return math.nan
    c = median(values) if center is None else center
    return median([abs(v - c) for v in values])


def relative_change(first: float, last: float) -> float:
    """``(first - last) / |first|``: the fraction by which a quantity fell (negative if it rose)."""
    if first == 0:
        return 0.0 if last == 0 else -math.copysign(math.inf, last)
    return (first - last) / abs(first)


def head_tail(values: Sequence[float], fraction: float, min_count: int = 1) -> tuple[float, float]:
    """Medians of the first and last ``fraction`` of ``values`` (at least ``min_count`` each)."""
    k = max(min_count, int(len(values) * fraction))
    k = min(k, len(values))
    return median(values[:k]), median(values[-k:])


@dataclass(frozen=True, slots=True)
class Blocks:
    """A long series summarised in consecutive blocks of ``size`` points.

    ``steps[i]`` is the step of the block's first point; ``medians``/``maxima``/``minima`` are per
    block; ``argmax[i]`` is the index (into the finite points) of the block's maximum.
    """

    size: int
    steps: list[int]
    medians: list[float]
    maxima: list[float]
    minima: list[float]
    argmax: list[int]


def blocks(steps: Sequence[int], values: Sequence[float], max_blocks: int = 2000) -> Blocks:
    """Summarise finite ``values`` into at most ``max_blocks`` blocks (size 1 for short series).

    Maxima, minima and their positions are exact (C-level ``max``/``min``/``index``); a block's
    median is taken over at most 33 evenly spaced points of the block, which keeps the cost near
    O(n) for a 300,000-point series while tracking the level as well as the exact median does.
    """
    n = len(values)
    size = max(1, math.ceil(n / max_blocks)) if n else 1
    if size == 1:
        vals = list(values)
        return Blocks(1, list(steps), vals, vals, vals, list(range(n)))
    stride = max(1, size // 33)
    b_steps: list[int] = []
    meds: list[float] = []
    maxs: list[float] = []
    mins: list[float] = []
    argm: list[int] = []
    for start in range(0, n, size):
        chunk = values[start : start + size]
        srt = sorted(chunk[::stride])
        m = len(srt)
        meds.append(srt[m // 2] if m % 2 else (srt[m // 2 - 1] + srt[m // 2]) / 2.0)
        mx = max(chunk)
        maxs.append(mx)
        mins.append(min(chunk))
        argm.append(start + chunk.index(mx))
        b_steps.append(steps[start])
    return Blocks(size, b_steps, meds, maxs, mins, argm)


def within(series: Series, lo: float, hi: float, start: int = 0) -> list[int]:
    """Indices (into :func:`finite_points`) of the points with ``lo <= value <= hi``, from ``start``.

    Only blocks whose [min, max] range meets [lo, hi] are scanned, so asking for a value a long
    series never takes (a zero loss, a learning rate of 0, ln(vocab)) costs O(number of blocks).
    """
    _, values = finite_points(series)
    b = series_blocks(series)
    out: list[int] = []
    size = b.size
    for i, (bmin, bmax) in enumerate(zip(b.minima, b.maxima)):
        if bmax < lo or bmin > hi or (i + 1) * size <= start:
            continue
        first = max(i * size, start)
        chunk = values[first : (i + 1) * size]
        out.extend(first + j for j in compress(range(len(chunk)), [lo <= v <= hi for v in chunk]))
    return out


def index_runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Group sorted indices into ``(start, end_inclusive)`` runs of consecutive values."""
    out: list[tuple[int, int]] = []
    if not indices:
        return out
    start = prev = indices[0]
    for i in indices[1:]:
        if i != prev + 1:
            out.append((start, prev))
            start = i
        prev = i
    out.append((start, prev))
    return out


def series_blocks(series: Series, max_blocks: int = 2000) -> Blocks:
    """:func:`blocks` over the finite points of ``series`` (cached per evaluation)."""
    steps, values = finite_points(series)
    return cached(("blocks", id(series), len(series), max_blocks), lambda: blocks(steps, values, max_blocks))


def rolling_median(values: Sequence[float], window: int) -> list[float]:
    """Trailing rolling median (window includes the point) over a short sequence.

    Uses a sorted window maintained with :mod:`bisect`: O(n log w) comparisons plus a C-level
    memmove per step. Call it on block medians, not on raw 300k-point series.
    """
    import bisect

    out: list[float] = []
    win: list[float] = []
    for i, v in enumerate(values):
        bisect.insort(win, v)
        if i >= window:
            old = values[i - window]
            del win[bisect.bisect_left(win, old)]
        m = len(win)
        out.append(win[m // 2] if m % 2 else (win[m // 2 - 1] + win[m // 2]) / 2.0)
    return out


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs`` (0.0 when undefined)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """``(start, end_inclusive)`` index ranges where ``flags`` is True, in order."""
    return index_runs(list(compress(range(len(flags)), flags)))


def value_at(series: Series | None, step: int) -> float | None:
    """The last value of ``series`` logged at or before ``step`` (``None`` if none)."""
    if series is None or not len(series):
        return None
    import bisect

    i = bisect.bisect_right(series.steps, step) - 1
    return series.values[i] if i >= 0 else None


def fmt_num(x: float) -> str:
    """A compact human form of a number for evidence text (``4`` significant digits)."""
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return f"{x:.4g}"
