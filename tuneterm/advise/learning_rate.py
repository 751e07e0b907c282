"""A learning rate for this run from the size table (``rules/recommend/learning_rate.yaml``).

Findings know the direction (too high: divergence, collapse; too low: plateau, lr 0) but each
proposes its own number; the table knows the rate that works for this model size, method and
trainer. The advisor takes the table's ``default`` when it moves the rate the way the deciding
finding asks, and the finding's own value otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneterm.advise.context import RunContext
from tuneterm.engine.tables import load_yaml_table

ASSUMED_SIZE_B = 7.0
"""Model size assumed when the run does not say (the middle row of each method's table)."""


@dataclass(frozen=True, slots=True)
class TableRate:
    """The table's rate for a run: value, row id, the row's reason, and the size it assumed."""

    value: float
    row: str
    why: str
    assumed_size: bool


def table_rate(ctx: RunContext) -> TableRate | None:
    """The table's default learning rate for the run's trainer, method and model size.

    ``None`` when the method is unknown (the two rows differ tenfold) or the trainer has no rows.
    """
    return _row(ctx, "full" if ctx.method == "full" else "lora") if ctx.method != "unknown" else None


def _row(ctx: RunContext, method: str) -> TableRate | None:
    trainer = ctx.trainer if ctx.trainer in ("sft", "dpo", "grpo") else "sft"
    size = ctx.model_size_b if ctx.model_size_b is not None else ASSUMED_SIZE_B
    for r in load_yaml_table("recommend/learning_rate.yaml", "rows"):
        if r.get("trainer") == trainer and r.get("method") == method and r["min_b"] <= size < r["max_b"]:
            return TableRate(float(r["default"]), str(r["id"]), str(r.get("why", "")), ctx.model_size_b is None)
    return None


def choose(proposed: float, current: Any, ctx: RunContext) -> tuple[float, str | None, TableRate | None]:
    """The learning rate to prescribe when a finding proposes ``proposed`` against ``current``.

    Returns ``(value, why, row)``: the table's rate when it moves the rate in the finding's
    direction (or ``current`` is 0 or unknown), else ``proposed``; ``why`` is the table's reason
    (``None`` when the finding's own value stands).

    >>> from tuneterm.advise.context import RunContext
    >>> ctx = RunContext(source="x", trainer="sft", method="qlora")
    >>> choose(0.5, 5.0, ctx)[0]   # divergence at lr 5 on a QLoRA run: the table's 1e-4, not 0.5
    0.0001
    >>> from dataclasses import replace
    >>> choose(0.5, 5.0, replace(ctx, method="unknown"))[0]   # method unknown: the (lower) full-FT rate
    1e-05
    """
    cur = current if isinstance(current, int | float) and not isinstance(current, bool) else None
    row = table_rate(ctx)
    if row is None and ctx.method == "unknown" and (cur is None or cur == 0 or proposed < cur):
        # Method unknown and the rate must come down (or start): the full fine-tuning row, the
        # lower of the two, cannot overshoot; an adapter run trains slower with it but safely.
        row = _row(ctx, "full")
    if row is None:
        return proposed, None, None
    if cur is None or cur == 0:
        return row.value, row.why, row
    down = proposed < cur
    if (down and row.value < cur) or (not down and row.value > cur):
        return row.value, row.why, row
    return proposed, None, None
