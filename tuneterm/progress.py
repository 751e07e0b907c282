"""How far a run got, in one short cell: the same text in ``runs``, ``watch`` and the app.

A module of its own at the top of the package (like :mod:`tuneterm.textsafe`): every layer may use
it, and importing it costs nothing (the app's first frame imports it).

A run that ended early (stopped, failed, died) shows the step it reached and the share of the
planned steps, so ``stopped 4628/20000 (23%)`` never reads as complete.

>>> step_text(7, 100, "running"), step_text(4628, 20000, "stopped"), step_text(100, 100, "finished")
('7/100', '4628/20000 (23%)', '100/100')
>>> step_text(None, 100, "starting"), step_text(12, None, "failed")
('-', '12')
"""

from __future__ import annotations

ENDED_EARLY = frozenset({"stopped", "failed", "died"})


def step_text(step: int | None, max_steps: int | None, state: str | None) -> str:
    """``step/max_steps``, with the percentage reached when the run ended early; ``-`` unknown."""
    if step is None:
        return "-"
    if not max_steps or max_steps <= 0:
        return str(step)
    text = f"{step}/{max_steps}"
    if state in ENDED_EARLY and step < max_steps:
        text += f" ({100 * step // max_steps}%)"
    return text
