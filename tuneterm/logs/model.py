"""The normalised form of a training run that every parser produces and every rule reads.

A :class:`Run` holds metric series keyed by *canonical* metric names (``loss``, ``grad_norm``,
``learning_rate``, ``reward``, ``rewards/chosen`` ...; see :mod:`tuneterm.logs.names`), with the
training series kept apart from each evaluation set (``eval``, ``eval_g0`` ...), plus the facts a
rule needs (trainer kind, max_steps, batch geometry, vocab size, LoRA settings), notable events
(tracebacks, known warnings) and parser notes (e.g. "salvaged 1,204 entries from truncated JSON").

Series store steps and values in :class:`array.array` (8 bytes a number rather than ~32 for a
Python float in a list), because a million-line console log must fit in memory well below the
file's size. Series are append-only while a log is read or tailed; everything else treats them as
read-only.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

TrainerKind = Literal["sft", "dpo", "grpo", "classification", "unknown"]
"""Trainer families rules are written for.

``dpo`` covers offline preference trainers (DPO, ORPO, KTO, SimPO, CPO); ``grpo`` covers online RL
(GRPO, PPO, RLOO, Online DPO); ``sft`` covers causal-LM training (SFT, continued pretraining,
seq2seq); ``classification`` covers sequence/image classifiers. The specific algorithm, where known,
is kept in :attr:`RunFacts.algorithm`.
"""

TRAINER_KINDS: tuple[TrainerKind, ...] = ("sft", "dpo", "grpo", "classification", "unknown")


class Series:
    """One metric over training steps: parallel ``steps`` (int64) and ``values`` (float64) arrays.

    Values may be NaN or ±inf: they are data (a NaN grad_norm is the most important thing a log can
    say), never parse errors.

    ``resolution`` is the unit the values were printed rounded to when the format says so (a tqdm
    postfix ``loss 0.0000`` -> ``1e-4``), else 0.0: a value of 0.0 then means "below half that
    unit", not an exact zero.
    """

    __slots__ = ("name", "resolution", "steps", "values")

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps: array[int] = array("q")
        self.values: array[float] = array("d")
        self.resolution = 0.0

    def append(self, step: int, value: float) -> None:
        """Add one point. Steps are expected non-decreasing but this is not enforced."""
        self.steps.append(step)
        self.values.append(value)

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return zip(self.steps, self.values, strict=True)

    def __repr__(self) -> str:
        return f"Series({self.name!r}, n={len(self)})"

    def finite(self) -> list[tuple[int, float]]:
        """The (step, value) pairs whose value is finite."""
        return [(s, v) for s, v in zip(self.steps, self.values, strict=True) if math.isfinite(v)]

    def last(self) -> float | None:
        """The last value, or ``None`` for an empty series."""
        return self.values[-1] if self.values else None

    def upto(self, step: int) -> Series:
        """A new series holding the leading points with ``steps <= step`` (C-level slices).

        Steps are non-decreasing in every parser's output, so the cut is a bisection; a series
        whose steps go backwards (a resumed run) is cut at the first point past ``step``.

        >>> s = Series("loss"); [s.append(i, float(i)) for i in (1, 2, 3)]
        [None, None, None]
        >>> list(s.upto(2))
        [(1, 1.0), (2, 2.0)]
        """
        n = bisect.bisect_right(self.steps, step)
        out = Series(self.name)
        out.steps = self.steps[:n]
        out.values = self.values[:n]
        out.resolution = self.resolution
        return out


@dataclass(slots=True)
class RunFacts:
    """What is known about the run beyond its metric series. ``None`` means unknown.

    Parsers fill what their format carries (trainer_state.json top-level keys, config.json beside a
    checkpoint, adapter_config.json, the ``***** Running training *****`` header of a console log,
    LLaMA-Factory's ``total_steps``); :func:`tuneterm.logs.infer.infer_facts` fills the rest from the
    metrics (trainer kind, eval sets).
    """

    trainer_kind: TrainerKind = "unknown"
    algorithm: str | None = None  # "dpo", "orpo", "kto", "grpo", "ppo", "rloo", "sft", ...
    model_name: str | None = None
    model_type: str | None = None  # config.json model_type, e.g. "llama", "qwen2"
    vocab_size: int | None = None
    global_step: int | None = None  # last step the log reached
    max_steps: int | None = None  # steps the run was scheduled for
    num_train_epochs: float | None = None
    epoch: float | None = None  # last epoch value logged
    logging_steps: int | None = None
    eval_steps: int | None = None
    num_examples: int | None = None  # training examples (dataset size), if printed
    train_batch_size: int | None = None  # per device
    gradient_accumulation_steps: int | None = None
    total_train_batch_size: int | None = None  # effective: per device x GA x world size
    world_size: int | None = None
    learning_rate: float | None = None  # configured peak LR, if known
    lr_scheduler_type: str | None = None
    warmup_steps: int | None = None
    warmup_ratio: float | None = None
    max_grad_norm: float | None = None
    bf16: bool | None = None
    fp16: bool | None = None
    gradient_checkpointing: bool | None = None
    peft_type: str | None = None  # "LORA", ...
    lora_r: int | None = None
    lora_alpha: float | None = None
    lora_target_modules: tuple[str, ...] | None = None
    use_dora: bool | None = None
    quantization: str | None = None  # "nf4", "int8", ...
    trainable_params: int | None = None
    total_params: int | None = None
    max_completion_length: int | None = None  # GRPO
    num_generations: int | None = None  # GRPO
    beta: float | None = None  # DPO / GRPO KL coefficient
    max_length: int | None = None
    finished: bool | None = None  # True if the log shows the end-of-training summary
    architectures: tuple[str, ...] | None = None  # config.json ``architectures``
    torch_dtype: str | None = None  # config.json ``torch_dtype`` / ``dtype``
    checkpoints: tuple[int, ...] | None = None  # step numbers of checkpoint-N/ directories (last 50)
    best_metric: float | None = None  # trainer_state.json best_* (load_best_model_at_end)
    best_model_checkpoint: str | None = None
    best_global_step: int | None = None
    num_input_tokens_seen: int | None = None
    llamafactory_accuracy: bool = False  # LLaMA-Factory's ``accuracy`` read as rewards/accuracies
    logging_steps_inferred: bool = False  # logging_steps guessed from a progress bar, not printed

    @property
    def is_peft(self) -> bool:
        """True when the run trains adapters (LoRA/DoRA/...) rather than all weights."""
        return self.peft_type is not None or self.lora_r is not None


@dataclass(frozen=True, slots=True)
class Progress:
    """What a live run directory shows about progress, read without touching the process
    (:func:`tuneterm.runs.progress.mark_progress`; the ``run-stalled`` rule reads it).

    Attributes:
        checked_at: when the check ran (Unix seconds).
        last_progress: the newest sign of progress (Unix seconds): metrics rows, log and sample
            writes, checkpoint files.
        log_interval_s: median seconds between logged training steps (None with fewer than 3).
    """

    checked_at: float
    last_progress: float
    log_interval_s: float | None = None

    @property
    def silent_s(self) -> float:
        """Seconds without a sign of progress at the time of the check (never negative)."""
        return max(0.0, self.checked_at - self.last_progress)


@dataclass(frozen=True, slots=True)
class RunStatus:
    """A run directory's ``status.json`` as a typed record (see :mod:`tuneterm.runs.layout` for the
    schema), plus what a reader found out about the processes. ``None`` means not recorded.

    ``state`` is the state to judge the run by: the recorded one, or ``"died"`` when the recorded
    state is live but the process is gone (:func:`tuneterm.runs.status.mark_died`); then
    ``recorded_state`` keeps what status.json said and ``last_update`` when it last changed.
    """

    state: str | None = None
    pid: int | None = None
    worker_pid: int | None = None
    step: int | None = None
    max_steps: int | None = None
    started: str | None = None
    ended: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    error: str | None = None
    error_kind: str | None = None
    stop_reason: str | None = None
    host: str | None = None
    trainer: str | None = None
    method: str | None = None
    recorded_state: str | None = None
    last_update: str | None = None
    progress: Progress | None = None

    def live_prefix(self) -> RunStatus:
        """The status of the same run while it was still being written: nothing about how it
        ended (state ``running`` when a state was recorded; no exit code, signal, error, end time;
        progress kept)."""
        return replace(
            self, state="running" if self.state is not None else None, exit_code=None, signal=None,
            error=None, error_kind=None, stop_reason=None, ended=None, recorded_state=None,
        )


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    """The planner's estimate recorded at launch beside the measured CUDA peak of a run directory
    (:func:`tuneterm.runs.memory.read_memory_record`).

    Attributes:
        estimate: launch.json ``memory_estimate`` as recorded (``peak_gib`` at least).
        peak_allocated_gib, peak_reserved_gib: the largest CUDA peaks in gpu.jsonl.
        gpu_name: the GPU the peaks were measured on.
    """

    estimate: dict[str, Any] | None = None
    peak_allocated_gib: float | None = None
    peak_reserved_gib: float | None = None
    gpu_name: str | None = None

    @property
    def peak_estimate_gib(self) -> float | None:
        """The estimate's ``peak_gib``, when recorded."""
        v = self.estimate.get("peak_gib") if self.estimate is not None else None
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def is_empty(self) -> bool:
        """True when neither side was recorded."""
        return self == MemoryRecord()

EventKind = Literal["exception", "warning", "oom", "signal", "info"]


@dataclass(frozen=True, slots=True)
class LogEvent:
    """A notable non-metric line: a traceback's final exception, a known warning, an OOM.

    ``text`` is raw log text: render it through :func:`tuneterm.textsafe.inert` and never as markup.
    ``code`` is a stable identifier for known patterns (e.g. ``"no-input-requires-grad"``), used by
    rules; ``line`` is 1-based in ``source`` when known. ``phase`` says what the process was doing
    when a traceback ended in this event, read from the traceback's frames: ``"eval"`` (the
    Trainer's evaluation loop, logits gathered for ``compute_metrics``), ``"generation"`` (GRPO /
    online-RL sampling, ``generate``, vLLM) or ``None`` when unknown or training proper; the OOM
    advice differs for each.
    """

    kind: EventKind
    text: str
    line: int | None = None
    step: int | None = None
    code: str | None = None
    phase: str | None = None


@dataclass(slots=True)
class Run:
    """A parsed training run: metric series, facts, events and parser notes.

    Attributes:
        source: the path the user gave (or the file tuneterm picked inside a directory).
        format: the detected format id, e.g. ``"trainer_state"``, ``"console"``,
            ``"llamafactory_jsonl"``, ``"jsonl"``, ``"csv"``, ``"mlflow"``, ``"tensorboard"``,
            ``"run_dir"``.
        train: canonical metric name -> training series.
        evals: eval set name (``"eval"``, ``"eval_g0"``, ...) -> canonical metric -> series.
        summary: end-of-training scalars (``train_loss``, ``train_runtime`` ...).
        facts: see :class:`RunFacts`.
        events: see :class:`LogEvent`, in log order.
        notes: human-readable remarks about the parse itself (salvage, skipped lines).
        lines: for line-based formats, step -> 1-based line number of the entry, so findings can
            point into the file (SARIF regions, GitHub annotations).
        samples: generations logged during training (see the field's docstring).
        status: a run directory's status (None for other sources).
        memory: a run directory's memory record (None for other sources).
    """

    source: str
    format: str
    train: dict[str, Series] = field(default_factory=dict)
    evals: dict[str, dict[str, Series]] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    facts: RunFacts = field(default_factory=RunFacts)
    events: list[LogEvent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lines: MutableMapping[int, int] = field(default_factory=dict)  # parsers use a compact LineIndex
    samples: list[dict[str, Any]] = field(default_factory=list)
    """Generations recorded during training (run directory ``samples.jsonl``): dicts with at least
    ``step``, ``prompt``, ``completion``; optionally ``n_tokens`` and ``hit_max_tokens``."""
    status: RunStatus | None = None
    memory: MemoryRecord | None = None

    @property
    def state(self) -> str | None:
        """The run directory's state (:attr:`RunStatus.state`; ``"died"`` for a vanished process),
        None for other sources or before status.json records one."""
        return self.status.state if self.status is not None else None

    @property
    def exit_code(self) -> int | None:
        """The run directory's recorded exit status, None when unknown."""
        return self.status.exit_code if self.status is not None else None

    def series(self, name: str, eval_set: str | None = None) -> Series | None:
        """Return the training series ``name``, or the one in ``eval_set``; ``None`` if absent."""
        if eval_set is None:
            return self.train.get(name)
        return self.evals.get(eval_set, {}).get(name)

    def add_train(self, name: str, step: int, value: float) -> None:
        """Append a training point to series ``name`` (created on first use)."""
        s = self.train.get(name)
        if s is None:
            s = self.train[name] = Series(name)
        s.append(step, value)

    def add_eval(self, eval_set: str, name: str, step: int, value: float) -> None:
        """Append an evaluation point to ``eval_set``'s series ``name``."""
        bucket = self.evals.setdefault(eval_set, {})
        s = bucket.get(name)
        if s is None:
            s = bucket[name] = Series(name)
        s.append(step, value)

    def has_metrics(self) -> bool:
        """True when at least one training or eval series has a point (else: exit code 3)."""
        return any(len(s) for s in self.train.values()) or any(
            len(s) for bucket in self.evals.values() for s in bucket.values()
        )

    @property
    def last_step(self) -> int | None:
        """Largest step seen in any series, or ``facts.global_step``."""
        steps = [s.steps[-1] for s in self.train.values() if len(s)]
        steps += [s.steps[-1] for b in self.evals.values() for s in b.values() if len(s)]
        if self.facts.global_step is not None:
            steps.append(self.facts.global_step)
        return max(steps) if steps else None

    def prefix(self, step: int) -> Run:
        """The run as a live watcher saw it when ``step`` was the last step logged.

        Every training and eval series is cut after ``step`` (:meth:`Series.upto`), as are
        ``events`` and ``samples`` with a later step (events without a step come from before the
        first metric line and are kept). Planned facts (``max_steps``, warmup, batch geometry,
        model and LoRA settings) are kept -- a live run knows them from its config or header --
        while facts about how far it got or how it ended are those of the prefix: ``global_step``
        is ``step``, ``epoch`` is the last logged ``epoch`` value (else unknown), ``finished`` is
        false, ``summary`` (end-of-training scalars) is empty and the run-directory status is
        :meth:`RunStatus.live_prefix`. A ``step`` at or past :attr:`last_step` returns an equivalent copy of the
        whole run. Series arrays are copied by slicing; ``lines`` is shared (read-only lookups).

        Used to check that rules do not fire on an early part of a healthy run
        (``tuneterm watch`` / ``tuneterm train --stop-on error`` evaluate a growing run).

        >>> run = Run(source="x", format="test")
        >>> for st in (1, 2, 3):
        ...     run.add_train("loss", st, 3.0 - st)
        >>> p = run.prefix(2)
        >>> list(p.train["loss"].steps), p.facts.global_step, p.facts.finished
        ([1, 2], 2, False)
        """
        last = self.last_step
        whole = last is None or step >= last
        train = {k: s.upto(step) for k, s in self.train.items()}
        evals = {name: {k: s.upto(step) for k, s in b.items()} for name, b in self.evals.items()}
        if whole:
            return Run(
                source=self.source, format=self.format, train=train, evals=evals, summary=dict(self.summary),
                facts=replace(self.facts), events=list(self.events),
                notes=list(self.notes), lines=self.lines, samples=list(self.samples),
                status=self.status, memory=self.memory,
            )
        epoch_s = train.get("epoch")
        facts = replace(
            self.facts,
            global_step=step,
            epoch=epoch_s.last() if epoch_s is not None and len(epoch_s) else None,
            finished=False,
        )
        return Run(
            source=self.source,
            format=self.format,
            train=train,
            evals=evals,
            summary={},
            facts=facts,
            events=[e for e in self.events if e.step is None or e.step <= step],
            notes=list(self.notes),
            lines=self.lines,
            samples=[x for x in self.samples if not isinstance(x.get("step"), int) or x["step"] <= step],
            status=self.status.live_prefix() if self.status is not None else None,
            memory=self.memory,
        )
