"""Findings + run context -> one :class:`~tuneterm.report.prescription.Prescription`.

Every finding carries its own fixes, written for any run. A user needs one answer for *this* run,
so the advisor reads all findings together:

1. **Blockers first.** Where no config change cures what was found (a GRPO reward that is the
   same for every completion at every step), the prescription says what must change and holds no
   patch at all (a run trained again with any patch would still learn nothing); steps remain.
2. **Fit each key to the run** (:func:`tuneterm.advise.keys.fit_key`): renamed keys, non-config
   arguments, adapter keys on a full fine-tune, bf16 on a GPU without it, keys the installed TRL
   does not accept.
3. **One value per key.** Findings come most severe first; within a severity, in the engine's
   order (first step, then code). The best-ranked finding decides a key; coupled keys (per-device
   batch and accumulation; scheduler type and its kwargs) are decided together so the effective
   batch stays what the deciding finding computed. Every overruled value is reported.
4. **The run's own numbers.** A learning rate comes from the size table for the model and method
   when it moves the rate the deciding finding's way; an out-of-memory crash gets the per-device
   batch halved and the accumulation doubled (the effective batch kept), and chunked/fused
   cross-entropy when the traceback points at the loss; a batch change that leaves the effective
   batch as it was is dropped.
5. **Nothing already in effect.** A change equal to the value the run used is dropped.
6. **Steps**: diagnostics (inspect, print, unit-test) before commands that act, deduplicated,
   placeholders filled from what is known; a tuneterm command whose placeholders cannot be filled
   is left out rather than printed unrunnable.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneterm.advise.context import RunContext
from tuneterm.advise.keys import fit_key, same_value
from tuneterm.advise.learning_rate import choose
from tuneterm.engine.model import Finding, Severity
from tuneterm.logs.model import LogEvent, Run
from tuneterm.report.prescription import Change, Conflict, Prescription, Step
from tuneterm.report.result import command_prompt

BATCH = ("per_device_train_batch_size", "gradient_accumulation_steps")
SCHEDULER = ("lr_scheduler_type", "lr_scheduler_kwargs")
_GROUPS: dict[str, tuple[str, ...]] = {k: g for g in (BATCH, SCHEDULER) for k in g}
_OOM_CODES = {"X110"}
EXPLAINED_BY: tuple[tuple[str, str, str], ...] = (
    ("G101", "R101", "grad_norm 0 follows from groups with identical rewards (zero advantages)"),
    ("L103", "S101", "a learning rate of 0 keeps the loss flat"),
    ("O102", "S101", "a learning rate of 0 keeps the eval loss frozen"),
    ("L101", "L102", "the spike is part of the divergence"),
    ("S102", "L102", "the schedule is not what kept a diverging loss from improving"),
)
"""A finding that is the consequence of another: its fixes (aimed at other causes) are withheld."""
_LOSS_FRAMES = re.compile(r"cross_entropy|log_softmax|lm_head|logits|loss_function|ForCausalLMLoss", re.IGNORECASE)
_DIAGNOSTIC = re.compile(
    r"^(?:model\.print_trainable_parameters|print\(|batch = |dmesg|pgrep|nvidia-smi|pip list|python -c|python -X|"
    r"py-spy|tuneterm check|tuneterm doctor|huggingface-cli download)"
)
_PLACEHOLDER = re.compile(r"\b(DATA|CONFIG|MODEL|GIB|RUN_DIR|RUN|N|SIZE|METHOD|TRAINER|TASK)\b")
_UNFILLED = re.compile(r"(?<![\w/.:-])[A-Z][A-Z0-9_]{2,}(?![\w/.:-])")
"""An all-capitals word left in a tuneterm command: a placeholder nothing known fills."""


@dataclass(frozen=True, slots=True)
class _Candidate:
    """One key a finding asks for, with the finding's rank (lower is stronger)."""

    key: str
    value: Any
    why: str
    code: str
    severity: Severity
    rank: tuple[int, int, int]


def prescribe(run: Run, findings: Sequence[Finding], ctx: RunContext) -> Prescription:
    """The prescription for ``run`` given its ``findings`` (engine order) and context.

    ``run`` is read for what the findings' fixes cannot know (the reward series of a GRPO run,
    the out-of-memory traceback); ``ctx`` for the values in effect (see the module docstring).
    """
    assumptions: list[str] = []
    blockers, blocked = _blockers(run, findings)
    codes = {f.code for f in findings}
    for code, cause, why in EXPLAINED_BY:
        if code in codes and cause in codes:
            blocked.add(code)
            _note(assumptions, f"{code}'s own fixes left out: {why} ({cause})")
    candidates: list[_Candidate] = []
    raw_steps: list[tuple[tuple[int, int, int], str, str, str]] = []
    for i, f in enumerate(findings):
        if f.code in blocked:
            continue
        for j, fix in enumerate(f.fixes):
            rank = (-f.severity.rank, i, j)
            if fix.command is not None:
                raw_steps.append((rank, fix.command, fix.why, f.code))
                continue
            if fix.key is None:
                continue
            fitted = fit_key(fix.key, fix.value, ctx)
            if fitted.key is None:
                _note(assumptions, fitted.dropped)
                continue
            candidates.append(_Candidate(fitted.key, fitted.value, fix.why, f.code, f.severity, rank))
        if f.code in _OOM_CODES:
            candidates.extend(_oom_candidates(run, f, i, ctx, assumptions))
    candidates = _warmup_as_steps(candidates, ctx)
    changes, conflicts = _resolve(candidates)
    changes, conflicts = _apply_run_numbers(changes, conflicts, ctx, assumptions)
    changes = _keep_micro_batch(changes, ctx)
    changes = [c for c in changes if not _in_effect(c, ctx)]
    changes = _drop_noop_batch(changes, ctx, assumptions)
    steps = _steps(raw_steps, ctx, assumptions)
    assumptions.extend(_unknowns(changes, ctx))
    return Prescription(
        changes=tuple(changes),
        steps=tuple(steps),
        assumptions=tuple(dict.fromkeys(assumptions)),
        conflicts=tuple(conflicts),
        blockers=tuple(blockers),
    )


def _note(notes: list[str], text: str | None) -> None:
    if text and text not in notes:
        notes.append(text)


# --- 1. blockers -------------------------------------------------------------------------------


def _blockers(run: Run, findings: Sequence[Finding]) -> tuple[list[str], set[str]]:
    """What no config change cures, and the codes whose fixes are therefore withheld."""
    codes = {f.code for f in findings}
    if "R101" not in codes:
        return [], set()
    reward = run.series("reward")
    values = [v for _, v in reward.finite()] if reward is not None else []
    if len(values) < 3 or max(values) - min(values) > 1e-9:
        return [], set()
    if "R102" in codes and values[0] == 0:
        return [], set()  # every completion cut off and scored 0: max_completion_length is a config cure
    # Every change is withheld: training again with any patch would still learn nothing.
    blocked = {f.code for f in findings}
    text = (
        f"the reward is {values[0]:g} for every completion at every step ({len(values)} logged steps): the reward "
        "function never tells completions apart, so GRPO has no advantage to learn from and no config change "
        "fixes that; change the reward function (test it on logged completions first)"
    )
    return [text], blocked


# --- 3. one value per key ----------------------------------------------------------------------


def _resolve(candidates: list[_Candidate]) -> tuple[list[Change], list[Conflict]]:
    """Pick one value per key (coupled keys together) and record what was overruled."""
    by_key: dict[str, list[_Candidate]] = {}
    for c in sorted(candidates, key=lambda c: c.rank):
        by_key.setdefault(c.key, []).append(c)
    group_winner: dict[tuple[str, ...], str] = {}
    for key, cands in by_key.items():
        group = _GROUPS.get(key)
        if group is not None:
            best = min((c for k in group for c in by_key.get(k, ())), key=lambda c: c.rank)
            group_winner.setdefault(group, best.code)
    changes: list[Change] = []
    conflicts: list[Conflict] = []
    for key, cands in by_key.items():
        group = _GROUPS.get(key)
        winner = cands[0]
        if group is not None:
            preferred = [c for c in cands if c.code == group_winner[group]]
            winner = preferred[0] if preferred else cands[0]
        agreeing = [winner.code]
        for other in cands:
            if other is winner or other.code in agreeing:
                continue
            if same_value(other.value, winner.value):
                agreeing.append(other.code)
            else:
                conflicts.append(Conflict(key, winner.value, winner.code, other.value, other.code, _reason(winner, other)))
        changes.append(Change(key, winner.value, None, winner.why, tuple(agreeing)))
    order = {c.key: min(x.rank for x in by_key[c.key]) for c in changes}
    changes.sort(key=lambda c: order[c.key])
    return changes, conflicts


def _warmup_as_steps(candidates: list[_Candidate], ctx: RunContext) -> list[_Candidate]:
    """A warmup share (float ``warmup_steps`` below 1) as whole steps of the max_steps the
    prescription ends with, so "10% warmup" and "200 steps" of a 2000-step run agree."""
    steps = [c for c in candidates if c.key == "max_steps" and isinstance(c.value, int)]
    total = min(steps, key=lambda c: c.rank).value if steps else ctx.value("max_steps")
    if not isinstance(total, int) or total <= 0:
        return candidates
    out = []
    for c in candidates:
        if c.key == "warmup_steps" and isinstance(c.value, float) and 0 < c.value < 1:
            n = max(1, round(c.value * total))
            c = _Candidate(c.key, n, f"{c.why.split(' (a float below 1')[0]} ({c.value:.0%} of max_steps {total})", c.code, c.severity, c.rank)
        out.append(c)
    return out


def _reason(winner: _Candidate, other: _Candidate) -> str:
    if winner.severity.rank > other.severity.rank:
        return f"{winner.code} is an {winner.severity.value}, {other.code} a {other.severity.value}"
    if winner.rank[1] < other.rank[1]:
        return f"{winner.code} ranks first (earlier onset or stronger evidence at the same severity)"
    return f"{winner.code} decides the coupled keys {', '.join(_GROUPS.get(winner.key, (winner.key,)))}"


# --- 4. the run's own numbers ------------------------------------------------------------------


def _oom_candidates(run: Run, f: Finding, i: int, ctx: RunContext, notes: list[str]) -> list[_Candidate]:
    """Halve the per-device batch, double accumulation; fused cross-entropy when the loss OOMed."""
    out: list[_Candidate] = []
    rank = (-f.severity.rank, i, -1)  # computed from the run: before the finding's own fixes
    ooms = [e for e in run.events if e.kind == "oom" or (e.kind == "exception" and "out of memory" in e.text.lower())]
    if any(e.phase is not None for e in ooms[-1:]):
        return out  # an OOM in evaluation or generation: a smaller training batch does not cure it
    b, ga = ctx.value("per_device_train_batch_size"), ctx.value("gradient_accumulation_steps")
    if isinstance(b, int) and b > 1:
        ga = ga if isinstance(ga, int) and ga > 0 else 1
        new_b = b // 2
        new_ga = ga * b // new_b if b % new_b == 0 else ga * 2
        out.append(_Candidate("per_device_train_batch_size", new_b, f"halves the activation memory of a step ({b} -> {new_b})", f.code, f.severity, rank))
        out.append(_Candidate("gradient_accumulation_steps", new_ga, f"keeps the effective batch at {new_b * new_ga}", f.code, f.severity, rank))
    elif b is None:
        _note(notes, "the per-device batch of the crashed run is not known: no batch halving computed")
    text = " ".join([*(e.text for e in ooms), *(traceback_before(run, e) for e in ooms[-1:])])
    if _LOSS_FRAMES.search(text) and ctx.trainer in ("sft", "unknown"):
        fitted = fit_key("use_liger_kernel", True, ctx)
        if fitted.key is not None:
            out.append(_Candidate(
                fitted.key, True,
                "the traceback ends in the loss: Liger's fused linear cross-entropy never holds the full-vocabulary "
                "logits at once (pip install liger-kernel)", f.code, f.severity, (rank[0], i, 0)))
    return out


def traceback_before(run: Run, event: LogEvent, lines: int = 60) -> str:
    """The log lines just before ``event`` (its traceback's frames), read from the run's file.

    The parser keeps only the exception line; which frames the out-of-memory struck in (the loss,
    the logits) decides whether fused cross-entropy helps. Empty when the file is gone, not a
    plain file, or larger than 64 MiB.
    """
    path = Path(run.source)
    if path.is_dir():
        path = path / "stderr.log"
    if event.line is None or not path.is_file():
        return ""
    try:
        if path.stat().st_size > 64 * 1024 * 1024:
            return ""
        with open(path, encoding="utf-8", errors="replace") as fh:
            window: deque[str] = deque(maxlen=lines)
            for i, line in enumerate(fh, 1):
                if i >= event.line:
                    break
                window.append(line)
    except OSError:
        return ""
    return "".join(window)


def _apply_run_numbers(changes: list[Change], conflicts: list[Conflict], ctx: RunContext,
                       notes: list[str]) -> tuple[list[Change], list[Conflict]]:
    """The learning rate from the size table; findings that pushed the rate the same way then
    agree with the table's value instead of conflicting over their own numbers."""
    out = []
    for c in changes:
        if c.key == "learning_rate" and isinstance(c.value, int | float) and not isinstance(c.value, bool):
            current = ctx.value("learning_rate")
            value, why, row = choose(float(c.value), current, ctx)
            if row is not None and why is not None:
                size = "size unknown: the 4-16B row" if row.assumed_size else f"{ctx.model_size_b:.2g}B"
                method = ctx.method if ctx.method != "unknown" else "method unknown: the full fine-tuning row"
                findings = list(c.findings)
                kept: list[Conflict] = []
                for x in conflicts:
                    if x.key == c.key and _same_direction(x.dropped, value, current):
                        findings.append(x.dropped_by)
                    elif x.key == c.key:
                        kept.append(Conflict(x.key, value, x.kept_by, x.dropped, x.dropped_by, x.reason))
                    else:
                        kept.append(x)
                conflicts = kept
                c = Change(c.key, value, None, f"{why} (learning-rate table row {row.row}, {method}, {size})",
                           tuple(dict.fromkeys(findings)))
                if row.assumed_size:
                    _note(notes, "model size unknown: the learning rate assumes a 4-16B model")
        out.append(c)
    return out, conflicts


def _same_direction(a: Any, b: Any, current: Any) -> bool:
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b, current)):
        return False
    return (a < current) == (b < current)


def _keep_micro_batch(changes: list[Change], ctx: RunContext) -> list[Change]:
    """A batch change for noise, not memory, keeps the run's larger per-device batch and reaches
    the same effective batch through accumulation (shrinking it would only slow the run)."""
    keys = {c.key: c for c in changes}
    cur = ctx.value(BATCH[0])
    if not all(k in keys for k in BATCH) or _OOM_CODES & set(keys[BATCH[0]].findings) or not isinstance(cur, int):
        return changes
    pd, ga = keys[BATCH[0]].value, keys[BATCH[1]].value
    if not isinstance(pd, int) or not isinstance(ga, int) or cur <= pd:
        return changes
    target = pd * ga
    new_ga = max(1, -(-target // cur))
    out = []
    for c in changes:
        if c.key == BATCH[0]:
            continue  # the per-device batch stays as it was
        if c.key == BATCH[1]:
            c = Change(c.key, new_ga, None, f"effective batch {cur * new_ga} = per_device_train_batch_size {cur} (kept) x {new_ga}", c.findings)
        out.append(c)
    return out


def _in_effect(change: Change, ctx: RunContext) -> bool:
    """The value is in effect already, or (warmup) the run already warms up at least as long."""
    current = ctx.value(change.key)
    if current is None:
        return False
    if change.key == "optim" and change.value == "adamw_torch":
        return not re.search(r"8bit|bnb|paged", str(current))  # the fix replaces an 8-bit optimizer only
    if change.key == "warmup_steps" and _num(current) and _num(change.value):
        total = ctx.value("max_steps")
        cur = current * total if current < 1 and isinstance(total, int) else current
        return bool(change.value <= cur)  # a finding asks for warmup, never for less of it
    return same_value(current, change.value)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _drop_noop_batch(changes: list[Change], ctx: RunContext, notes: list[str]) -> list[Change]:
    """Drop a batch geometry that keeps the effective batch, unless it answers an OOM."""
    keys = {c.key: c for c in changes}
    if not all(k in keys for k in BATCH) or _OOM_CODES & set(keys[BATCH[0]].findings):
        return [_with_was(c, ctx) for c in changes]
    eff = ctx.effective_batch
    new = keys[BATCH[0]].value * keys[BATCH[1]].value if all(isinstance(keys[k].value, int) for k in BATCH) else None
    if eff is not None and new == eff:
        _note(notes, f"effective batch already {eff}: no batch change")
        changes = [c for c in changes if c.key not in BATCH]
    return [_with_was(c, ctx) for c in changes]


def _with_was(c: Change, ctx: RunContext) -> Change:
    return Change(c.key, c.value, ctx.value(c.key), c.why, c.findings)


def _unknowns(changes: list[Change], ctx: RunContext) -> list[str]:
    out = []
    unknown = [c.key for c in changes if c.was is None]
    if unknown:
        out.append(f"the run does not state {', '.join(unknown)}: set explicitly, whatever the default was")
    if ctx.method == "unknown":
        out.append("method unknown (no adapter_config.json or training config found): adapter keys left out")
    if ctx.schema is None:
        out.append("keys not checked against the installed TRL (no cached config schema)")
    if ctx.hardware.source == "nvml":
        out.append(f"the run names no GPU: this machine's {ctx.hardware.describe()} is assumed to be the one it used")
    if any(c.key == "bf16" for c in changes) and ctx.hardware.bf16 is None:
        out.append("bf16 assumes an Ampere (sm_80) or newer GPU; the run does not name its GPU")
    return out


# --- 6. steps ----------------------------------------------------------------------------------


def _steps(raw: list[tuple[tuple[int, int, int], str, str, str]], ctx: RunContext, notes: list[str]) -> list[Step]:
    seen: dict[str, int] = {}
    steps: list[tuple[tuple[int, ...], Step]] = []
    for rank, command, why, code in sorted(raw, key=lambda r: r[0]):
        filled = fill_placeholders(command, ctx)
        if filled is None:
            _note(notes, f"left out `{_bare(command)}`: it needs a value the run does not state")
            continue
        bare, _, comment = filled.partition("  #")
        bare, comment = bare.strip(), comment.strip()
        if comment:
            why = f"{comment}: {why}"
        if bare in seen:
            idx = seen[bare]
            r, s = steps[idx]
            steps[idx] = (r, Step(s.command, s.why, (*s.findings, code)))
            continue
        diagnostic = command_prompt(bare) == ">>>" or bool(_DIAGNOSTIC.match(bare))
        seen[bare] = len(steps)
        steps.append(((0 if diagnostic else 1, *rank), Step(bare, why, (code,))))
    return [s for _, s in sorted(steps, key=lambda x: x[0])]


def _bare(command: str) -> str:
    return command.split("  #")[0].strip()


def fill_placeholders(command: str, ctx: RunContext) -> str | None:
    """``command`` with the placeholders of a tuneterm command filled from the context.

    Returns ``None`` for a tuneterm command with a placeholder nothing known fills (printing it
    would give the user a command that fails). Other commands are returned as they are: their
    capitals (``DATA``, ``ADAPTER_DIR``) name things only the user knows.

    >>> from tuneterm.advise.context import RunContext
    >>> fill_placeholders("tuneterm plan --model MODEL --gpu-memory GIB", RunContext("x", model="Qwen/Qwen2.5-7B", gpu_memory_gib=14.75))
    'tuneterm plan --model Qwen/Qwen2.5-7B --gpu-memory 14.75GiB'
    >>> fill_placeholders("tuneterm plan --model MODEL --gpu-memory GIB", RunContext("x")) is None
    True
    """
    code, sep, comment = command.partition("  #")
    if not re.search(r"(^|\s)tuneterm\s", " " + code):
        return command
    dataset = ctx.config.get("dataset_name")
    values = {
        "DATA": dataset if isinstance(dataset, str) and dataset else None,
        "CONFIG": str(ctx.config_path) if ctx.config_path is not None else None,
        "MODEL": ctx.model,
        "GIB": f"{ctx.gpu_memory_gib:g}GiB" if ctx.gpu_memory_gib else None,
        "SIZE": f"{ctx.gpu_memory_gib:g}GiB" if ctx.gpu_memory_gib else None,
        "RUN_DIR": str(ctx.run_dir) if ctx.run_dir is not None else ctx.source,
        "RUN": str(ctx.run_dir) if ctx.run_dir is not None else ctx.source,
        "METHOD": ctx.method if ctx.method != "unknown" else None,
        "TRAINER": ctx.trainer if ctx.trainer in ("sft", "dpo", "grpo") else None,
        "N": None,
        "TASK": None,
    }
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        v = values.get(m.group(1))
        if v is None:
            missing = True
            return m.group(0)
        return _quote(v)

    filled = _PLACEHOLDER.sub(sub, code)
    if missing or _UNFILLED.search(re.sub(r"\b[A-Z_][A-Z0-9_]*=\S*", "", filled)):
        return None
    return filled + sep + comment


def _quote(value: str) -> str:
    import shlex

    return value if re.fullmatch(r"[\w./:@+=-]+", value) else shlex.quote(value)

