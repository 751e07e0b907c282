"""Fast series statistics shared by the detectors (pure Python, O(n) passes, no numpy).

Logs can hold hundreds of thousands of points, and a full rule evaluation must stay well under a
second on them, so everything here works in C-level builtins (``sum``, ``sorted``, slicing,
``array.count``) where it can and never does per-point Python sorting. Long series are reduced to
block medians (:func:`blocks`) before windowed work.

Results that several detectors need (the finite points of a series, its block summary) are cached
for the duration of one :func:`tuneterm.engine.evaluate.evaluate` call via :func:`analysis_cache`.
Finite points are :class:`array.array` copies rather than lists: a list would allocate (and later
free) one Python object per point, which on a 300,000-point run cost more than the rules themselves.

>>> median([3.0, 1.0, 2.0])
2.0
>>> relative_change(2.7335, 2.7150) < 0.01
True
"""

from __future__ import annotations

import math
import sys
from array import array
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


# The byte of a float64 holding its sign and top 7 exponent bits: 0x7F/0xFF for NaN, +-inf and
# |x| >= 2**1009, something else for every other double.
_TOP_BYTE = slice(7, None, 8) if sys.byteorder == "little" else slice(0, None, 8)


def all_finite(values: Sequence[float]) -> bool:
    """True when every value is finite.

    For a float64 ``array`` the sign/exponent byte of every value is checked as bytes (C-level
    slicing and ``memchr``, ~10x faster than ``sum`` over the array): no byte 0x7F/0xFF means no
    NaN or inf. Otherwise (that byte test is inconclusive for |x| >= 2**1009), or for any other
    sequence, a C-level ``sum``, and a per-value scan only if the sum is not finite.

    >>> all_finite(array("d", [1.0, -2.5, 1e300])), all_finite([1.0, float("nan")])
    (True, False)
    """
    if isinstance(values, array) and values.typecode == "d" and values.itemsize == 8:
        top = values.tobytes()[_TOP_BYTE]
        if b"\x7f" not in top and b"\xff" not in top:
            return True
    total = sum(values)
    if math.isfinite(total):
        return True
    return all(math.isfinite(v) for v in values)


def finite_points(series: Series) -> tuple[array[int], array[float]]:
    """The steps and values of ``series`` whose value is finite (cached per evaluation).

    Returns:
        ``(steps, values)`` as new ``array('q')`` / ``array('d')`` objects (copies: the series is
        never exposed). They are read-only sequences to the caller: index, slice (a slice is an
        array too), iterate, ``len``, ``max``, ``.index``, ``sorted``. Copying an all-finite
        300,000-point series is a ``memcpy``; ``tolist()`` would build 600,000 Python objects.

    >>> s = Series("loss"); s.append(1, 2.0); s.append(2, float("nan")); s.append(3, 1.0)
    >>> steps, values = finite_points(s)
    >>> list(steps), list(values)
    ([1, 3], [2.0, 1.0])
    """

    def compute() -> tuple[array[int], array[float]]:
        values = series.values
        if all_finite(values):
            return array("q", series.steps), array("d", values)
        keep = list(map(math.isfinite, values))
        return array("q", compress(series.steps, keep)), array("d", compress(values, keep))

    return cached(("finite", id(series), len(series)), compute)


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence (``nan`` for an empty one)."""
    n = len(values)
    if n == 0:
        return math.nan
    s = sorted(values)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2.0


def relative_change(first: float, last: float) -> float:
    """``(first - last) / |first|``: the fraction by which a quantity fell (negative if it rose)."""
    if first == 0:
        return 0.0 if last == 0 else -math.copysign(math.inf, last)
    return (first - last) / abs(first)


def head_tail(values: Sequence[float], fraction: float, min_count: int = 1) -> tuple[float, float]:
    """Medians of the first and last ``fraction`` of ``values`` (at least ``min_count`` each).

    Exact (two sorts of ``k`` values). Inside an :func:`analysis_cache` the result for a long
    sequence (``k`` >= 1000; shorter ones are cheaper to sort than to key) is kept, so detectors
    asking the same question of one series (plateau, schedule exhaustion and near-zero loss all
    compare the ends of the loss) sort it once. The cache holds a reference to ``values``, so the
    ``id`` in its key cannot be reused by another object; like every cached input, ``values``
    must not be mutated during the evaluation (:func:`finite_points` arrays never are).
    """
    k = max(min_count, int(len(values) * fraction))
    k = min(k, len(values))
    if k < 1000 or not cache_active():
        return median(values[:k]), median(values[-k:])
    entry = cached(
        ("head_tail", id(values), len(values), k),
        lambda: (values, median(values[:k]), median(values[-k:])),
    )
    return entry[1], entry[2]


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
    ``values`` may be a list or an :class:`array.array` (as :func:`finite_points` returns); an
    array is turned into a list one block at a time, because ``max``/``min``/``index`` run about
    twice as fast over a list's existing float objects as over an array's unboxed doubles.
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
    unbox = isinstance(values, array)
    for start in range(0, n, size):
        chunk = values[start : start + size]
        if unbox:
            chunk = chunk.tolist()  # type: ignore[attr-defined]
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


def peak_point(series: Series) -> tuple[int, float]:
    """Index (into :func:`finite_points`) and value of the first maximum of the finite values.

    Exactly ``(values.index(max(values)), max(values))``, read from the cached block summary
    (whose maxima and argmax are exact) in O(number of blocks) instead of two passes over a
    300,000-point array. ``(-1, nan)`` when there is no finite value.

    >>> s = Series("lr"); [s.append(i, v) for i, v in enumerate([1.0, 3.0, float("nan"), 3.0, 2.0])]
    [None, None, None, None, None]
    >>> peak_point(s)
    (1, 3.0)
    """
    b = series_blocks(series)
    if not b.maxima:
        return -1, math.nan
    top = max(b.maxima)
    return b.argmax[b.maxima.index(top)], top


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


def fmt_duration(seconds: float | None) -> str:
    """``42s``, ``5m07s``, ``3h12m``, ``2d04h``; ``-`` when unknown.

    >>> fmt_duration(42), fmt_duration(307), fmt_duration(11520), fmt_duration(None)
    ('42s', '5m07s', '3h12m', '-')
    """
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
