"""Other JSON dumps of a training history: the history under another name, or series by metric.

Scripts that save their own copy of a run rarely keep transformers' names. Two shapes cover what
is met in public repositories:

* **a list of entries under another key** -- ``{"raw_log_history": [{"loss": ..., "step": ...}]}``,
  ``{"history": [...]}``, ``{"train_log": [...]}``: any top-level list whose elements are objects
  holding a known metric name. Keys naming a history (``*log_history*``, ``*history*``, ``*log*``)
  are preferred when several lists qualify;
* **series by metric** -- ``{"scalar_series": {"loss": [[1, 2.31], [2, 2.25]], "lr": ...}}``: an
  object (top level or under any key) whose values are ``[[step, value], ...]`` pairs, plain
  value lists (steps 1, 2, ...), ``[{"step": s, "value": v}, ...]`` or ``[{"step": s, "loss":
  v}, ...]`` records or ``{"steps": [...], "values": [...]}`` columns, keyed by metric names;
* **one list per metric** -- ``{"train_loss": [{"step": 10, "loss": 2.3}], "eval_loss": [...]}``:
  every top-level entry list, merged by step, when no list is named as the history.

Both become ``log_history``-style entries, so name normalisation, steps and eval sets work exactly
as for a trainer_state.json.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tuneterm.logs.names import STEP_KEYS, classify, is_metric_name

_MAX_SERIES_POINTS = 2_000_000
_HISTORY_WORDS = ("log_history", "history", "log", "records", "entries", "steps")


def _metric_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    dest, _, name = classify(key)
    return dest in ("eval", "summary") or (dest == "train" and is_metric_name(name))


def _is_entry_list(value: Any) -> bool:
    """A list of objects, some of which hold a known metric name."""
    if not isinstance(value, list) or not value:
        return False
    for item in value[:50]:
        if isinstance(item, Mapping) and any(_metric_key(k) for k in item):
            return True
    return False


def find_entry_list(doc: Mapping[str, Any]) -> tuple[str, list[Any]] | None:
    """``(key, entries)`` of the top-level list named as the history (``*log_history*``,
    ``*history*``, ``*log*`` ..., in that order of preference; the longest among equals).

    >>> find_entry_list({"config": {}, "train_loss": [{"loss": 2.1, "step": 5}], "raw_log_history": [{"loss": 2.1, "step": 5}]})[0]
    'raw_log_history'
    """
    found = [(k, v) for k, v in doc.items() if isinstance(k, str) and _is_entry_list(v) and _word(k) < len(_HISTORY_WORDS)]
    if not found:
        return None
    return min(found, key=lambda item: (_word(item[0]), -len(item[1])))


def _word(key: str) -> int:
    low = key.lower()
    return next((i for i, w in enumerate(_HISTORY_WORDS) if w in low), len(_HISTORY_WORDS))


def merged_entry_lists(doc: Mapping[str, Any]) -> tuple[list[str], list[Any]] | None:
    """Every top-level entry list merged and ordered by step (one list per metric)."""
    keys = [k for k, v in doc.items() if isinstance(k, str) and _is_entry_list(v)]
    if not keys:
        return None
    merged = [e for k in keys for e in doc[k] if isinstance(e, Mapping)]

    def step_of(e: Mapping[str, Any]) -> float:
        s = next((e[k] for k in STEP_KEYS if k in e), None)
        return float(s) if isinstance(s, int | float) and not isinstance(s, bool) else math.inf

    merged.sort(key=step_of)
    return keys, merged


def _points(value: Any, key: str) -> list[tuple[int, float]] | None:
    """One metric's points (metric ``key``) from the shapes in the module docstring, or ``None``."""
    if isinstance(value, Mapping):
        steps, values = value.get("steps"), value.get("values")
        if isinstance(steps, list) and isinstance(values, list) and len(steps) == len(values):
            return _pairs(zip(steps, values))
        return None
    if not isinstance(value, list) or not value or len(value) > _MAX_SERIES_POINTS:
        return None
    first = value[0]
    if isinstance(first, list | tuple):
        return _pairs((p[0], p[1]) for p in value if isinstance(p, list | tuple) and len(p) >= 2)
    if isinstance(first, Mapping):
        out = []
        for rec in value:
            if not isinstance(rec, Mapping):
                continue
            step = next((rec[k] for k in STEP_KEYS if k in rec), None)
            out.append((step, rec.get("value", rec.get(key))))
        return _pairs(out)
    return _pairs(enumerate(value, start=1))


def _pairs(raw: Any) -> list[tuple[int, float]] | None:
    out: list[tuple[int, float]] = []
    for step, v in raw:
        if isinstance(step, bool) or isinstance(v, bool) or not isinstance(step, int | float):
            return None
        if v is None:
            continue
        if not isinstance(v, int | float) or not math.isfinite(step):
            return None
        out.append((int(step), float(v)))
    return out or None


def series_entries(obj: Any) -> list[dict[str, Any]] | None:
    """Entries built from an object of series keyed by metric name (``None`` if it is not one).

    >>> series_entries({"loss": [[1, 2.5], [2, 2.25]], "lr": [[1, 1e-4], [2, 1e-4]]})[1]
    {'step': 2, 'loss': 2.25, 'lr': 0.0001}
    """
    if not isinstance(obj, Mapping):
        return None
    by_step: dict[int, dict[str, Any]] = {}
    known = 0
    for key, value in obj.items():
        if not isinstance(key, str) or key in STEP_KEYS:
            continue
        pts = _points(value, key)
        if pts is None:
            continue
        known += _metric_key(key)
        for step, v in pts:
            by_step.setdefault(step, {"step": step})[key] = v
    if not known:
        return None
    return [by_step[s] for s in sorted(by_step)]


def find_series(doc: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """``(where, entries)`` from the first object of series: the document itself or a top-level
    value (``scalar_series``, ``metrics``, ``series`` ...)."""
    own = series_entries(doc)
    if own:
        return "", own
    for key, value in doc.items():
        if isinstance(key, str) and isinstance(value, Mapping):
            got = series_entries(value)
            if got:
                return key, got
    return None
