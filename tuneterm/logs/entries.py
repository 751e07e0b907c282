"""Turning metric entries (one dict per logged step) into points of a :class:`~tuneterm.logs.model.Run`.

Every format ends here: a ``trainer_state.json`` ``log_history`` element, a JSONL line, a console
``{'loss': ...}`` dict, a CSV row. :class:`EntrySink` normalises keys once per distinct key tuple
(:func:`tuneterm.logs.names.plan_keys`, cached), converts values (numbers, numeric strings, ``nan``,
``inf``), and appends to the run's series. It is the hot loop of the 300,000-entry benchmark, so it
avoids per-value function calls on the common path (floats and ints).
"""

from __future__ import annotations

import math
import struct
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping, MutableMapping
from itertools import groupby
from operator import itemgetter
from typing import Any

from tuneterm.logs.model import Run, Series
from tuneterm.logs.names import STEP_KEYS, plan_keys

_MAX_PLANS = 4096  # distinct key tuples cached per run; a pathological log cannot grow it unbounded
_MIN_BLOCK = 8  # shorter runs of equal keys take the per-entry path (column set-up costs more)
_MAX_BLOCK = 16384  # longer runs go column-wise in chunks, so the temporary columns stay small
_NUMBER_TYPES = frozenset({float, int})  # exact types: bool is not a metric value
_INT_ONLY = {int}
_ZERO8 = bytes(8)  # 0 and 0.0 packed (native int64 / float64)
_ONE_Q = struct.pack("q", 1)
_ONE_D = struct.pack("d", 1.0)
_OTHER_KEYS = -1  # EntrySink._add_block: the block's entries do not all have the given keys


def to_float(value: Any) -> float | None:
    """Convert a logged value to float, or ``None`` when it is not a number.

    Accepts ints, floats, numeric strings (transformers 5 prints ``'0.9528'``), the spellings
    ``nan``/``NaN``/``inf``/``-inf``/``Infinity``, and ``np.float64(0.5)`` / ``tensor(0.5)`` reprs.
    Booleans, ``None``, lists and other strings are not numbers.

    >>> to_float("1e-05"), to_float("nan") != to_float("nan"), to_float(True)
    (1e-05, True, None)
    """
    t = type(value)
    if t is float:
        return value  # type: ignore[no-any-return]
    if t is int:
        try:
            return float(value)
        except OverflowError:  # JSON allows integers beyond float range: a loss of 10**400 is inf
            return math.inf if value > 0 else -math.inf
    if t is str:
        s = value.strip()
        if not s or len(s) > 64:
            return None
        if s.endswith(")") and "(" in s:  # np.float64(0.5), tensor(0.5), np.float32(nan)
            s = s[s.index("(") + 1 : -1].split(",", 1)[0].strip()
        try:
            return float(s)
        except ValueError:
            return None
    if isinstance(value, float | int) and not isinstance(value, bool):
        return float(value)
    return None


class LineIndex(MutableMapping[int, int]):
    """step -> 1-based line number, stored compactly (two int64 arrays, first line per step).

    A million-entry console log would need ~100 MB as a ``dict``; this needs 16 bytes an entry.
    Lookups bisect when steps were appended in order (the normal case) and scan otherwise.
    """

    __slots__ = ("_lines", "_sorted", "_steps")

    def __init__(self) -> None:
        self._steps: array[int] = array("q")
        self._lines: array[int] = array("q")
        self._sorted = True

    def add(self, step: int, line: int) -> None:
        """Record ``line`` for ``step`` unless the step already has one."""
        steps = self._steps
        if steps:
            last = steps[-1]
            if step == last:
                return
            if step < last:
                if step in self:
                    return
                self._sorted = False
        steps.append(step)
        self._lines.append(line)

    def _find(self, step: int) -> int:
        steps = self._steps
        if self._sorted:
            i = bisect_left(steps, step)
            return i if i < len(steps) and steps[i] == step else -1
        try:
            return steps.index(step)
        except ValueError:
            return -1

    def __getitem__(self, step: int) -> int:
        i = self._find(step)
        if i < 0:
            raise KeyError(step)
        return self._lines[i]

    def __setitem__(self, step: int, line: int) -> None:
        i = self._find(step)
        if i >= 0:
            self._lines[i] = line
        else:
            self.add(step, line)

    def __delitem__(self, step: int) -> None:
        i = self._find(step)
        if i < 0:
            raise KeyError(step)
        del self._steps[i]
        del self._lines[i]

    def __iter__(self) -> Iterator[int]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def rescale(self, old: int, new: int) -> None:
        """Multiply every step by ``new / old`` (console logs learn logging_steps late)."""
        self._steps = array("q", (s // old * new for s in self._steps))


class EntrySink:
    """Append metric entries to ``run``, normalising names; one sink per parse.

    Args:
        run: the run to fill.
        track_lines: record step -> line number for findings that point into the file.

    Attributes:
        last_epoch: the last epoch value seen (goes to ``facts.epoch`` at the end).
        last_step: the last step an entry was added at.
        entries: number of entries that produced at least one metric point.
        bad_values: values that were neither numbers nor numeric strings (skipped, counted).
    """

    def __init__(self, run: Run, *, track_lines: bool = False) -> None:
        self.run = run
        self.last_epoch: float | None = None
        self.last_step: int | None = None
        self.entries = 0
        self.bad_values = 0
        self._plans: dict[tuple[str, ...], list[list[Any]]] = {}
        # add_many's packed columns not yet appended: id(steps array) -> (steps, values, chunks, chunks)
        self._pending: dict[int, tuple[array[int], array[float], list[bytes], list[bytes]]] = {}
        if track_lines and not isinstance(run.lines, LineIndex):
            run.lines = LineIndex()  # type: ignore[assignment]

    # kinds in a compiled plan
    _TRAIN, _EVAL, _SUMMARY, _EPOCH, _SKIP = range(5)

    def _compile(self, keys: tuple[str, ...]) -> list[list[Any]]:
        """Plan for one key tuple: ``[key, kind, target, slot]`` items.

        ``slot`` caches the target series' bound ``append`` methods once the first value arrives
        (series are created lazily so a key whose values are all ``null`` leaves no empty series).
        """
        compiled: list[list[Any]] = []
        planned = plan_keys(keys)
        # Two keys can name one series (TRL 0.17+ logs both `completion_length` and
        # `completions/mean_length`): keep the key that is already canonical, else the first.
        owner: dict[tuple[str, str | None, str], str] = {}
        for key, dest, eset, name in planned:
            target = (dest, eset, name)
            if target not in owner or key == name:
                owner[target] = key
        for key, dest, eset, name in planned:
            if owner[(dest, eset, name)] != key:
                continue
            if dest == "train":
                compiled.append([key, self._TRAIN, name, None])
            elif dest == "eval":
                compiled.append([key, self._EVAL, (eset or "eval", name), None])
            elif dest == "summary":
                compiled.append([key, self._SUMMARY, name, None])
            elif dest == "epoch":
                compiled.append([key, self._EPOCH, None, None])
        if len(self._plans) < _MAX_PLANS:
            self._plans[keys] = compiled
        return compiled

    def _slot(self, kind: int, target: Any) -> tuple[Any, Any, array[int], array[float]]:
        """``(steps.append, values.append, steps, values)`` of the series for ``target``.

        The series is created on first use. Bound ``append`` methods save two attribute lookups
        per value on the per-entry path; the arrays serve the column-wise path.
        """
        run = self.run
        if kind == self._TRAIN:
            s = run.train.get(target)
            if s is None:
                s = run.train[target] = Series(target)
        else:
            eset, name = target
            bucket = run.evals.setdefault(eset, {})
            s = bucket.get(name)
            if s is None:
                s = bucket[name] = Series(name)
        return s.steps.append, s.values.append, s.steps, s.values

    def step_of(self, entry: Mapping[str, Any]) -> int | None:
        """The entry's own step (``step``, ``global_step``, ``current_steps`` ...), if any."""
        for k in STEP_KEYS:
            if k in entry:
                v = to_float(entry[k])
                if v is not None and math.isfinite(v):
                    return int(v)
        return None

    def add(self, entry: Mapping[str, Any], step: int, line: int | None = None) -> int:
        """Add one entry's metrics at ``step``.

        Args:
            entry: raw key -> value (numbers or numeric strings; others are skipped).
            step: the x position (the caller resolves it: entry's own step, tqdm, or a counter).
            line: 1-based line number in the source, for line-based formats.

        Returns:
            The number of training/eval points added (summary scalars are not counted).
        """
        keys = tuple(entry)
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._compile(keys)
        added = 0
        train_added = 0
        epoch: float | None = None
        for item in plan:
            v = entry[item[0]]
            t = type(v)
            if t is not float:
                if v is None:
                    continue
                if t is int and -(2**53) <= v <= 2**53:  # exact in a float, cannot overflow
                    v = float(v)
                else:
                    v = to_float(v)
                    if v is None:
                        self.bad_values += 1
                        continue
            kind = item[1]
            if kind <= 1:  # a training or eval series
                slot = item[3]
                if slot is None:
                    slot = item[3] = self._slot(kind, item[2])
                slot[0](step)
                slot[1](v)
                added += 1
                if kind == 0:
                    train_added += 1
            elif kind == 2:
                self.run.summary[item[2]] = v
            else:
                epoch = v
        run = self.run
        if epoch is not None:
            self.last_epoch = epoch
            if train_added:
                # Epoch is charted against training steps only; eval/summary entries repeat it.
                s = run.train.get("epoch")
                if s is None:
                    s = run.train["epoch"] = Series("epoch")
                s.steps.append(step)
                s.values.append(epoch)
        if added:
            self.entries += 1
            self.last_step = step
            if line is not None:
                lines = run.lines
                if isinstance(lines, LineIndex):
                    lines.add(step, line)
                else:
                    lines.setdefault(step, line)
        return added

    def add_many(self, entries: list[Any]) -> tuple[int, int]:
        """Add a ``log_history`` list; the tight loop of the JSON reader.

        Same result as calling :meth:`add` per entry (an entry without an integer ``step`` gets
        its 1-based position; non-dicts are skipped), but column-wise where it can be: runs of
        consecutive entries with the same keys (a trainer logs the same keys every step) whose
        values are all plain numbers are converted per metric with one ``struct.pack`` (C-level,
        the same conversion ``array.append`` does) instead of two method calls per value. That
        loop is most of what tuneterm adds to ``json.load`` on a 300,000-entry trainer_state.json
        (see benchmarks/bench_check.py). Any other run (nulls, strings, booleans, missing steps)
        takes the per-entry path.

        Runs are found without a Python-level step per entry: consecutive entries are grouped by
        their length (C-level ``groupby`` over ``map(len, ...)``), and a group's entries have the
        first entry's keys exactly when every one of those keys is present (same length, no
        ``KeyError`` while the columns are extracted); the rest of a group that mixes key sets of
        one length is split by comparing keys entry by entry.

        The packed columns are queued per series and appended with one ``frombytes`` each when
        the call ends (or before the per-entry path touches that series, so order is kept):
        growing an array block by block re-allocates and copies it every ~1/16 of its size.

        Returns:
            ``(entries with metrics, entries skipped because they were not dicts)``.
        """
        try:
            if set(map(type, entries)) != {dict}:  # non-dicts (or an empty list): the general loop
                return self._add_range(entries, 0, len(entries))
            n = 0
            i = 0
            for _, group in groupby(map(len, entries)):
                j = i + len(list(group))
                if j - i < _MIN_BLOCK:
                    n += self._add_range(entries, i, j)[0]
                else:
                    keys = tuple(entries[i])
                    for lo in range(i, j, _MAX_BLOCK):
                        hi = min(lo + _MAX_BLOCK, j)
                        added = self._add_block(entries, lo, hi, keys)
                        if added == _OTHER_KEYS:  # same length, other keys: find the exact runs
                            n += self._add_range(entries, lo, j)[0]
                            break
                        if added is None:
                            n += self._add_range(entries, lo, hi)[0]
                        else:
                            n += added
                i = j
            return n, 0
        finally:
            self._flush()

    def _add_range(self, entries: list[Any], i: int, j: int) -> tuple[int, int]:
        """:meth:`add_many` over ``entries[i:j]`` for any mix of entries (runs of equal keys found
        entry by entry); positions for entries without a step count from the list's start."""
        skipped = 0
        n = 0
        while i < j:
            e = entries[i]
            if type(e) is not dict:
                skipped += 1
                i += 1
                continue
            keys = e.keys()
            k = i + 1
            while k < j:
                f = entries[k]
                if type(f) is not dict or f.keys() != keys:
                    break
                k += 1
            added = self._add_block(entries, i, k, tuple(e)) if k - i >= _MIN_BLOCK else None
            if added is not None:
                n += added
            else:
                if self._pending and self._touches_pending(tuple(e)):
                    self._flush()
                for m in range(i, k):
                    em = entries[m]
                    st = em.get("step")
                    if type(st) is not int:
                        st = self.step_of(em)
                        if st is None:
                            st = m + 1
                    if self.add(em, st):
                        n += 1
            i = k
        return n, skipped

    def _add_block(self, entries: list[Any], i: int, j: int, keys: tuple[str, ...]) -> int | None:
        """Queue ``entries[i:j]`` column-wise, all assumed to have exactly ``keys``.

        Returns the number of entries that added metric points; ``None`` when the block is not
        plain (no ``step``, a step that is not an int, a value that is not an int or float:
        ``None``, a string, a boolean); :data:`_OTHER_KEYS` when an entry lacks one of ``keys``
        (:meth:`add_many` groups by length only). Every column is extracted, checked and packed
        before anything is queued, so only a count changes the run.
        """
        if "step" not in keys:
            return None
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._compile(keys)
        block = entries[i:j]
        n = j - i
        try:  # every key, not only the planned ones: all present (and same length) = same keys
            cols = {k: list(map(itemgetter(k), block)) for k in keys}
        except KeyError:
            return _OTHER_KEYS
        steps = cols["step"]
        try:
            # struct packs with PyLong_AsLongLong / PyFloat_AsDouble, exactly what array.append
            # does, but in one C call per column. It rejects what add() would not take as a plain
            # number (None, strings, containers, a float step) and a step beyond int64 or an int
            # beyond float range; the per-entry path then handles (or reports) it as before.
            step_bytes = struct.pack(f"{n}q", *steps)
            packed = [(item, struct.pack(f"{n}d", *cols[item[0]])) for item in plan]
        except (struct.error, OverflowError):
            return None
        # struct does accept booleans (as 1 and 0) where add() skips them as non-numbers. A
        # boolean can only hide where a packed value is exactly 1 or 0, so only a column whose
        # bytes contain one of those patterns (a substring search; unaligned matches merely cost
        # the check) gets the exact per-value type check.
        if (_ZERO8 in step_bytes or _ONE_Q in step_bytes) and set(map(type, steps)) != _INT_ONLY:
            return None
        for item, data in packed:
            if (_ZERO8 in data or _ONE_D in data) and not set(map(type, cols[item[0]])) <= _NUMBER_TYPES:
                return None
        train = False
        epoch_bytes: bytes | None = None
        added = False
        for item, data in packed:
            kind = item[1]
            if kind <= 1:
                slot = item[3]
                if slot is None:
                    slot = item[3] = self._slot(kind, item[2])
                self._queue(slot[2], slot[3], step_bytes, data)
                added = True
                train = train or kind == 0
            elif kind == 2:
                self.run.summary[item[2]] = float(cols[item[0]][-1])
            else:
                epoch_bytes = data
                self.last_epoch = float(cols[item[0]][-1])
        if epoch_bytes is not None and train:
            es = self._slot(self._TRAIN, "epoch")
            self._queue(es[2], es[3], step_bytes, epoch_bytes)
        if added:
            self.entries += n
            self.last_step = steps[-1]
            return n
        return 0

    def _queue(self, steps: array[int], values: array[float], step_bytes: bytes, value_bytes: bytes) -> None:
        """Queue packed points for the series whose arrays are ``steps``/``values``."""
        q = self._pending.get(id(steps))
        if q is None:
            self._pending[id(steps)] = (steps, values, [step_bytes], [value_bytes])
        else:
            q[2].append(step_bytes)
            q[3].append(value_bytes)

    def _flush(self) -> None:
        """Append every queued column to its series (one ``frombytes`` per array)."""
        for steps, values, step_chunks, value_chunks in self._pending.values():
            steps.frombytes(b"".join(step_chunks))
            values.frombytes(b"".join(value_chunks))
        self._pending.clear()

    def _touches_pending(self, keys: tuple[str, ...]) -> bool:
        """Whether :meth:`add` of an entry with ``keys`` appends to a series with queued points."""
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._compile(keys)
        run = self.run
        pending = self._pending
        train = epoch = False
        for item in plan:
            kind = item[1]
            if kind == self._TRAIN:
                s = run.train.get(item[2])
                train = True
            elif kind == self._EVAL:
                s = run.evals.get(item[2][0], {}).get(item[2][1])
            else:
                epoch = epoch or kind == self._EPOCH
                continue
            if s is not None and id(s.steps) in pending:
                return True
        if train and epoch:
            s = run.train.get("epoch")
            return s is not None and id(s.steps) in pending
        return False

    def finish(self) -> None:
        """Copy what the sink learned into ``run.facts`` (last epoch, last step)."""
        f = self.run.facts
        if self.last_epoch is not None and math.isfinite(self.last_epoch):
            f.epoch = self.last_epoch
        if "train_runtime" in self.run.summary or "train_loss" in self.run.summary:
            f.finished = True
