"""The column-wise fast path of EntrySink.add_many equals the per-entry path, value for value."""

from __future__ import annotations

import json
import math
import random

import pytest

from tests.conftest import corpus_file
from tuneterm.logs.entries import EntrySink, LineIndex, to_float
from tuneterm.logs.model import Run


def _dump(run: Run) -> dict[str, list[tuple[int, float]]]:
    out = {f"train:{k}": [(st, repr(v)) for st, v in s] for k, s in run.train.items()}
    for name, bucket in run.evals.items():
        out.update({f"{name}:{k}": [(st, repr(v)) for st, v in s] for k, s in bucket.items()})
    return out  # type: ignore[return-value]


def _per_entry(entries: list[object]) -> Run:
    run = Run("x", "y")
    sink = EntrySink(run)
    for i, e in enumerate(entries, 1):
        if not isinstance(e, dict):
            continue
        st = e.get("step")
        if type(st) is not int:
            st = sink.step_of(e)
            if st is None:
                st = i
        sink.add(e, st)
    return run


def test_add_many_equals_per_entry_on_mixed_history() -> None:
    rnd = random.Random(3)
    entries: list[object] = []
    for step in range(1, 400):
        e: dict[str, object] = {"epoch": step / 100, "loss": rnd.random(), "grad_norm": rnd.random(),
                                "learning_rate": 1e-4, "step": step}
        if step % 37 == 0:
            e["grad_norm"] = math.nan
        if step % 53 == 0:
            e["loss"] = "0.5"  # string value: per-entry path for this run of entries
        if step % 71 == 0:
            e["grad_norm"] = None
        entries.append(e)
        if step % 50 == 0:
            entries.append({"eval_loss": rnd.random(), "eval_runtime": 1.0, "epoch": step / 100, "step": step})
        if step % 90 == 0:
            entries.append("junk")
    entries.append({"train_runtime": 1.0, "train_loss": 0.4, "epoch": 4.0, "step": 399})
    fast = Run("x", "y")
    sink = EntrySink(fast)
    n, skipped = sink.add_many(entries)
    slow = _per_entry(entries)
    assert _dump(fast) == _dump(slow)
    assert fast.summary == slow.summary == {"train_runtime": 1.0, "train_loss": 0.4}
    assert skipped == 4 and n == 399 + 7


def test_add_many_equals_per_entry_on_corpus() -> None:
    for prefix in ("010_", "017_", "028_"):
        hist = json.loads(corpus_file(prefix).read_bytes())["log_history"]
        fast = Run("x", "y")
        EntrySink(fast).add_many(hist)
        assert _dump(fast) == _dump(_per_entry(hist))


def test_to_float_spellings() -> None:
    assert to_float("np.float64(0.25)") == 0.25
    assert math.isnan(to_float("NaN") or 0.0) and to_float("-inf") == -math.inf
    assert to_float("Infinity") == math.inf and to_float(" 3 ") == 3.0
    for bad in (True, None, "abc", "2.02.0000", [1], {"a": 1}, "x" * 100):
        assert to_float(bad) is None


def test_line_index() -> None:
    li = LineIndex()
    for step, line in ((10, 3), (10, 4), (20, 7), (5, 9)):
        li.add(step, line)
    assert dict(li.items()) == {10: 3, 20: 7, 5: 9}
    assert li.get(20) == 7 and li.get(30) is None and max(li.values()) == 9
    li.rescale(1, 2)
    assert li.get(40) == 7


# --- add_many's column path against the per-entry path (edge cases) ---

def _tr(s: int, **kw: object) -> dict[str, object]:
    return {"epoch": s / 100, "loss": 1 / s, "grad_norm": 0.5, "learning_rate": 1e-4, "step": s, **kw}

def _ev(s: int, **kw: object) -> dict[str, object]:  # same length as _tr, other keys
    return {"eval_loss": 1 / s, "eval_runtime": 1.0, "eval_x": 2, "epoch": s / 100, "step": s, **kw}

CASES = {
    "same-length eval inside a train run": [_tr(s) for s in range(1, 50)] + [_ev(50)] + [_tr(s) for s in range(51, 99)],
    "booleans (value, step, epoch)": [_tr(s, **({"loss": True} if s == 20 else {"step": False} if s == 25 else {"epoch": True} if s == 30 else {})) for s in range(1, 60)],
    "genuine 0/1 values stay numbers": [_tr(s, loss=[1.0, 0.0, 1, 0, -0.0][s % 5]) for s in range(1, 40)],
    "per-entry run between two column runs of one series": [_tr(s) for s in range(1, 11)] + [_tr(s, loss=None) for s in range(11, 14)] + [_tr(s) for s in range(14, 30)],
    "other key set feeding the same series": [{"loss": 1.0, "step": s} for s in range(1, 11)] + [{"loss": 2.0, "grad_norm": 1.0, "step": s} for s in range(11, 14)] + [{"loss": 3.0, "step": s} for s in range(14, 30)],
    "a run longer than one chunk": [_tr(s) for s in range(1, 40_000)] + [_ev(s) for s in range(40_000, 40_020)],
}

@pytest.mark.parametrize("name", list(CASES))
def test_add_many_fast_path_edges(name: str) -> None:
    entries = CASES[name]
    fast = Run("x", "y")
    sink = EntrySink(fast)
    sink.add_many(entries)
    slow = _per_entry(entries)
    assert _dump(fast) == _dump(slow) and list(fast.train) == list(slow.train)
    ref = EntrySink(Run("x", "y"))
    for e in entries:
        ref.add(e, e["step"] if type(e["step"]) is int else ref.step_of(e) or 0)
    assert (sink.bad_values, sink.last_epoch) == (ref.bad_values, ref.last_epoch)


def test_integer_beyond_float_range_is_infinite_not_a_crash() -> None:
    # JSON integers have no size limit; float() of 10**400 raises OverflowError.
    assert to_float(10**400) == math.inf and to_float(-(10**400)) == -math.inf
    run = Run("x", "y")
    EntrySink(run).add_many([{"loss": 10**400, "step": 1}, {"loss": 2.0, "step": 2}])
    assert list(run.train["loss"].values) == [math.inf, 2.0]
