"""Console logs: what transformers/TRL/axolotl/Unsloth/LLaMA-Factory/torchtune print to a terminal.

:class:`ConsoleParser` is fed one segment at a time (see :mod:`tuneterm.logs.textio`) by both the
whole-file reader and the tailer. It recognises:

* metric dicts ``{'loss': 0.69, 'grad_norm': 0.3, ...}`` with numeric or string values (transformers
  5), ``nan``/``inf`` spellings, glued to tqdm bars or behind ``[INFO|...] >>`` prefixes. A dict is a
  metric dict only if it is flat, every value is a number (or numeric string / ``None``) and at
  least one key is a metric name; DeepSpeed config dicts, ``{'pad_token_id': 2}`` and app dicts
  with text values are skipped. Values are read with a precompiled, anchored key/value scanner
  (no ``ast.literal_eval``: it is ~20x slower and recursion-prone on hostile input);
* the ``***** Running training *****`` header, the Unsloth banner, PEFT's ``trainable params`` line,
  a ``TrainingArguments(...)`` dump, ``***** train metrics *****`` blocks;
* tqdm bars (``N/M``), tqdm postfix metrics (``loss=0.49``) when a log has no dicts, torchtune
  ``Step 1 | loss:2.08 lr:2e-05`` lines, the metric lines of hand-written loops when a log has no
  dicts (``step 10/611 loss=12.1181 lr=1.97e-04``, nanoGPT's ``iter 10: loss 4.57``; read by
  :mod:`tuneterm.logs.kvlines`), and a step printed before a dict (``Step:      3 {'loss': ...}``,
  text-generation-webui's Training_PRO);
* ``logging_steps`` from a ``TrainingArguments`` dump, a CLI flag (``--logging_steps 2``) or a
  config echo (``logging_steps: 2``);
* tracebacks (final ``SomeError: message`` line -> an ``exception``/``oom`` event; a log that
  ends inside a traceback, before that line -> an ``exception`` event coded
  ``TruncatedTraceback`` naming the last frame) and known warnings (stable codes, see
  :data:`WARNINGS`).

Steps. A dict's own ``step`` wins. Otherwise HF's console dicts carry no step, and the tqdm position
printed next to a dict is *not* its step: stdout (dicts) is block-buffered when redirected while
tqdm writes to unbuffered stderr, so dicts arrive in bursts glued to a later bar (a TRL DPO log of
iiicellled/Clean-Code-Qwen: the step-10 dict sits next to ``50/160``; a Trainer log of
2200xiaohu/LMSYS: next to ``200/8264``). So a dict's step is
``index x logging_steps``; logging_steps comes from the log (``TrainingArguments`` dump, config) or
is inferred at the end from the training bar (``last N / number of train dicts``; the training bar
is the one whose total the header or the glued dicts name, else the bar redrawn last before most
train dicts), and the already stored steps are rescaled then. Without either, steps are the
1-based logging index.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Any, Final

from tuneterm.logs.entries import EntrySink, LineIndex, to_float
from tuneterm.logs.kvlines import may_be_kv_line, read_kv_line
from tuneterm.logs.model import LogEvent, Run
from tuneterm.logs.names import STEP_KEYS, classify, is_metric_name, is_summary_keys

# --- metric dicts -------------------------------------------------------------------------------
_DICT_START: Final = re.compile(r"\{\s*['\"]")
# One anchored `'key': value` pair; every class is bounded, so a hostile line costs linear time.
_PAIR: Final = re.compile(
    r"""\s*(?:'([^'\\\n]{1,200})'|"([^"\\\n]{1,200})")\s*:\s*"""
    r"""(?:'([^'\\\n]{0,80})'|"([^"\\\n]{0,80})"|([^,'"{}\[\]()\s]{1,80}(?:\([^()'"]{0,80}\))?))"""
    r"""\s*([,}])"""
)
_MAX_PAIRS = 400

# --- progress bars and other line shapes --------------------------------------------------------
_TQDM: Final = re.compile(r"(\d{1,12})/(\d{1,12}) \[([^\]\n]{0,300})\]")
_POSTFIX_PAIR: Final = re.compile(
    r"(?:^|,\s*)([A-Za-z_][\w/.-]{0,40})\s*[= :]\s*"
    r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)|nan|NaN|-?inf)(?=,|$)"
)
_FIXED_POINT: Final = re.compile(r"^[-+]?\d{1,12}\.(\d{1,8})$")
# `Step:      3 {'loss': ...}` (text-generation-webui Training_PRO), `step 12 {...}`: a step printed
# right before a metric dict.
_STEP_PREFIX: Final = re.compile(r"(?i)\bstep\s*[:=]?\s*(\d{1,12})\s*$")
# logging_steps as a CLI flag, YAML/JSON config echo or inside a config repr.
_LOGGING_STEPS: Final = re.compile(r"""(?:--|\b|["'])logging_steps["']?\s*(?:=|:|\s)\s*["']?(\d{1,7})(?![\d.])""")
_TORCHTUNE_STEP: Final = re.compile(r"^\s*Step (\d{1,12}) \| (.{1,2000})$")
_TORCHTUNE_DESC: Final = re.compile(r"^\s*(\d{1,6})\|(\d{1,12})\|Loss: ([-+0-9.eE]{1,40}|nan|inf):")
_KV_COLON: Final = re.compile(r"([A-Za-z_][\w/.-]{0,60}):\s?([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?)|nan|inf)")
_HEADER_FIELD: Final = re.compile(
    r"(Num examples|Num Epochs|Instantaneous batch size per device|Batch size per device|"
    r"Total train batch size|Total batch size|Gradient Accumulation steps|"
    r"Total optimization steps|Total steps|Number of trainable parameters|Trainable parameters|"
    r"Num GPUs used|Num GPUs)[^=\n|]{0,60}?=\s*([\d,]{1,20}(?:\.\d+)?)(?:\s*/\s*([\d,]{1,20}))?",
    re.IGNORECASE,
)
_PEFT_PARAMS: Final = re.compile(
    r"trainable params:\s*([\d,]{1,20})\s*\|\|\s*all params:\s*([\d,]{1,20})", re.IGNORECASE
)
_ARG_LINE: Final = re.compile(r"^([a-z_][a-z0-9_]{1,60})=(.{0,200}?),?$")
_BLOCK_HEADER: Final = re.compile(r"\*{5} (\w+) metrics \*{5}")
_BLOCK_LINE: Final = re.compile(r"^(?:\[[^\]]{0,120}\][^>]{0,80}>>)?\s+([\w/.-]{1,80})\s*=\s*(\S.{0,80}?)\s*$")
_RANK_PREFIX: Final = re.compile(r"^\[(?:rank|default)\d{0,4}\]:\s?")
_EXC_LINE: Final = re.compile(r"^([A-Za-z_][\w]{0,80}(?:\.[A-Za-z_]\w{0,80}){0,8})(?::\s?(.{0,2000}))?$")
# Cheap prefilter: a case-sensitive alternation of plain literals lets `re` skip ahead quickly (an
# IGNORECASE pattern with anchors was ~50x slower on long tqdm segments). Precise checks follow.
_TRIGGER_WORDS: Final = (
    "Traceback", "memory", "OutOfMemory", "OVERFLOW", "requires_grad", "bnb_4bit", "label_names",
    "strongly recommended", "params", "Num ", "atch size", "otal ", "rainable", "*****", "Step ",
    "|Loss", "Killed", "Segmentation", "response key", "generation %}", "Untrained", "PAD/BOS",
    "lr value", "radient",
)
_TRIGGER: Final = re.compile("|".join(re.escape(w) for w in _TRIGGER_WORDS))

#: Known warnings (transformers, PEFT, bitsandbytes, DeepSpeed): substring -> stable event code.
WARNINGS: Final[tuple[tuple[str, str], ...]] = (
    ("None of the inputs have requires_grad=True", "no-input-requires-grad"),
    ("bnb_4bit_compute_dtype=torch.float32", "bnb-compute-dtype-float32"),
    ("No label_names provided", "no-label-names"),
    ("strongly recommended to train Gemma", "gemma-eager-attention"),
    ("OVERFLOW! Rank", "fp16-overflow"),
    ("Could not find response key", "response-key-not-found"),
    ("does not contain {% generation %}", "no-generation-keyword"),
    ("Untrained tokens found", "untrained-tokens"),
    ("new PAD/BOS/EOS tokens that differ", "special-tokens-changed"),
    ("tried to get lr value before scheduler", "lr-before-scheduler"),
)
_OOM_TEXT = (
    "CUDA out of memory",
    "OutOfMemoryError",
    "CUDA error: out of memory",
    "HIP out of memory",
    "MPS backend out of memory",
    "XPU out of memory",
)
_MAX_EVENTS = 20_000
_TB_MAX_LINES = 5_000
# Traceback frames (``File "...", line N, in NAME``) that tell what the process was doing: an OOM in
# the evaluation loop has other remedies (eval_accumulation_steps, preprocess_logits_for_metrics;
# huggingface/transformers#26702) than one in GRPO's sampling (num_generations, max_completion_length;
# huggingface/trl#2688) or in the training step.
_FRAME: Final = re.compile(r'^\s*File "([^"]{0,1000})", line \d+, in (\S{1,200})')
_EVAL_FRAMES: Final = frozenset({
    "evaluation_loop", "prediction_loop", "prediction_step", "evaluate", "nested_concat",
    "torch_pad_and_concatenate", "_nested_gather", "gather_function", "compute_metrics",
    "preprocess_logits_for_metrics", "_evaluate",
})
_GEN_FRAMES: Final = frozenset({
    "generate", "_generate", "_sample", "_beam_search", "_generate_and_score_completions",
    "_generate_single_turn", "_generate_completions", "unwrap_model_for_generation",
})
_TB_MAX_JUNK = 60
_ARG_FACTS: Final[dict[str, str]] = {
    "logging_steps": "logging_steps",
    "eval_steps": "eval_steps",
    "max_steps": "max_steps",
    "per_device_train_batch_size": "train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "learning_rate": "learning_rate",
    "lr_scheduler_type": "lr_scheduler_type",
    "warmup_steps": "warmup_steps",
    "warmup_ratio": "warmup_ratio",
    "num_train_epochs": "num_train_epochs",
    "max_grad_norm": "max_grad_norm",
    "bf16": "bf16",
    "fp16": "fp16",
    "gradient_checkpointing": "gradient_checkpointing",
    "activation_checkpointing": "gradient_checkpointing",  # transformers 5 prints both names, mirrored
}


def _int(text: str) -> int | None:
    try:
        return int(float(text.replace(",", "")))
    except ValueError:
        return None


def parse_flat_dict(text: str, start: int) -> dict[str, Any] | None:
    """Parse a flat Python/JSON dict literal starting at ``text[start] == '{'``.

    Returns raw values (strings for quoted values and bare tokens) or ``None`` when the text is not
    a flat ``{'key': scalar, ...}`` literal (nested dicts, lists, calls with arguments).

    >>> parse_flat_dict("x {'loss': 0.5, 'lr': '1e-05'} y", 2)
    {'loss': '0.5', 'lr': '1e-05'}
    """
    out: dict[str, Any] = {}
    pos = start + 1
    match = _PAIR.match
    for _ in range(_MAX_PAIRS):
        m = match(text, pos)
        if m is None:
            return None  # `{}`, nested values, calls with arguments, or not a dict at all
        k1, k2, v1, v2, v3, end = m.groups()
        out[k1 if k1 is not None else k2] = v1 if v1 is not None else (v2 if v2 is not None else v3)
        pos = m.end()
        if end == "}":
            return out
    return None


class ConsoleParser:
    """Incremental parser for console logs; see the module docstring.

    Args:
        run: the run to fill (its ``format`` is left to the caller).
        metrics: read metric dicts/bars (``False`` for a run directory's stdout/stderr, whose
            metrics come from ``metrics.jsonl``; events and facts are still read).

    Use :meth:`feed` for each ``(line_number, segment)`` and :meth:`finish` at the end (and after
    each poll when tailing: it is idempotent).
    """

    def __init__(self, run: Run, *, metrics: bool = True) -> None:
        self.run = run
        self.sink = EntrySink(run, track_lines=metrics)
        self.metrics = metrics
        self.scale = run.facts.logging_steps or 1  # multiplier applied to index-based steps
        self.n_train = 0
        self.explicit_steps = False
        self.postfix_points = 0
        self.kv_points = 0
        self.kv_lines = 0
        self.skipped_dicts = 0
        self._train_votes: Counter[int] = Counter()  # bar totals seen right before a train dict
        self._decisions: dict[tuple[str, ...], bool] = {}
        self._bar_max: dict[int, int] = {}
        self._glued_totals: Counter[int] = Counter()
        self._bar_seg: str | None = None
        self._bar_count = 0
        self._in_tb = False
        self._tb_lines = 0
        self._tb_junk = 0
        self._tb_phase: str | None = None
        self._tb_start = 0
        self._tb_last_frame = ""
        self._tb_tail_is_frame = False  # the last line read belonged to the traceback's frames
        self._tb_cut: LogEvent | None = None
        self._block: str | None = None
        self._header_left = 0
        self._events_dropped = 0
        self._own_notes: list[str] = []

    # ---------------------------------------------------------------------------------- helpers
    def _step_now(self) -> int | None:
        if not self.metrics:
            return self.run.last_step  # run directory: metrics come from metrics.jsonl
        if self.explicit_steps and self.sink.last_step is not None:
            return self.sink.last_step
        return self.n_train * self.scale

    def _event(self, kind: str, text: str, line: int, code: str | None, phase: str | None = None) -> None:
        if len(self.run.events) >= _MAX_EVENTS:
            self._events_dropped += 1
            return
        self.run.events.append(
            LogEvent(kind=kind, text=text[:2000], line=line, step=self._step_now(), code=code, phase=phase)  # type: ignore[arg-type]
        )

    def _key_info(self, keys: tuple[str, ...]) -> tuple[bool, bool, bool, bool]:
        """Per key tuple (cached): (is a metric dict, has a train key, is the summary, has a step)."""
        info = self._decisions.get(keys)
        if info is None:
            metric = has_train = False
            for k in keys:
                dest, _, name = classify(k)
                if dest in ("eval", "summary") or (dest == "train" and is_metric_name(name)):
                    metric = True
                if dest == "train":
                    has_train = True
            summary = is_summary_keys(keys)
            info = (metric, has_train and not summary, summary, any(k in STEP_KEYS for k in keys))
            if len(self._decisions) < 4096:
                self._decisions[keys] = info
        return info

    @staticmethod
    def _numbers(d: dict[str, Any]) -> dict[str, float | None] | None:
        """Convert every value to float (``None`` stays); ``None`` if any value is not a number."""
        out: dict[str, float | None] = {}
        for k, v in d.items():
            try:
                out[k] = float(v)  # fast path: '0.5', 'nan', '-inf', '1e-05'
            except ValueError:
                if v == "None":
                    out[k] = None
                    continue
                f = to_float(v)  # np.float64(0.5), tensor(0.5)
                if f is None:
                    return None
                out[k] = f
        return out

    # ------------------------------------------------------------------------------------- feed
    def feed(self, lineno: int, seg: str) -> int:
        """Parse one segment; returns the number of metric points it added."""
        if self._in_tb and self._traceback_line(lineno, seg):
            return 0
        if self._block is not None and self._block_line(seg):
            return 0
        added = 0
        brace = seg.find("{")
        if brace >= 0 and self.metrics:
            m = _DICT_START.search(seg, brace)
            if m is not None:
                added = self._dict(lineno, seg, m.start())
                if added >= 0:
                    return added
                added = 0
        if "|" in seg and "/" in seg and "[" in seg:
            added += self._bars(lineno, seg)
            if "%|" in seg or "it/s" in seg or "s/it" in seg:
                # a tqdm redraw holds no warning text except what is glued after its last `]`;
                # its postfix metrics were read by _bars
                if _TRIGGER.search(seg, seg.rfind("]") + 1):
                    added += self._triggered(lineno, seg)
                return added
        if "logging_steps" in seg:
            self._logging_steps(seg)
        triggered = _TRIGGER.search(seg) is not None
        if triggered:
            added += self._triggered(lineno, seg)
            if added:
                return added
        kv = -1
        if (
            self.metrics
            and self.sink.entries <= self.postfix_points + self.kv_points  # a dict log keeps its dicts
            and may_be_kv_line(seg)
        ):
            kv = self._kv_line(lineno, seg)
            added += max(kv, 0)
        if kv < 0 and not triggered and seg[:1].islower() and "=" in seg[:64]:
            self._arg_line(seg)
        return added

    def _dict(self, lineno: int, seg: str, start: int) -> int:
        """Handle a dict literal; returns points added, or -1 when it is not a metric dict."""
        raw = parse_flat_dict(seg, start)
        if raw is None:
            return -1
        metric, has_train, summary, has_step = self._key_info(tuple(raw))
        d = self._numbers(raw) if metric else None
        if d is None:
            self.skipped_dicts += 1
            return -1
        if start > 0 and "/" in seg[:start]:
            bars = _TQDM.findall(seg, 0, start)
            if bars:
                n, m, _ = bars[-1]
                self._glued_totals[int(m)] += 1
                self._note_bar(int(n), int(m))
        elif self._bar_seg is not None:
            last_bar = self._flush_bar_seg()
            if last_bar is not None and has_train and not summary:
                self._train_votes[last_bar] += 1  # the total of the bar redrawn last before a train dict
        own = self.sink.step_of(d) if has_step else None
        if own is None and start > 0:
            pm = _STEP_PREFIX.search(seg, 0, start)
            own = int(pm.group(1)) if pm else None
        if own is not None:
            self.explicit_steps = True
            step = own
        else:
            if has_train:
                self.n_train += 1
            step = self.n_train * self.scale
        if summary:
            self.run.facts.finished = True
        return self.sink.add(d, step, lineno)

    def _kv_line(self, lineno: int, seg: str) -> int:
        """A ``key=value`` metric line of a hand-written loop; returns points added, or -1 when
        the line is not one (fewer than one metric pair with a step/epoch marker, or two
        without; a log with metric dicts keeps only its dicts)."""
        if self.sink.entries > self.postfix_points + self.kv_points:
            return -1
        line = read_kv_line(_RANK_PREFIX.sub("", seg))
        if line is None:
            return -1
        if line.step is not None:
            step = line.step
            if line.total:  # `step 10/611`: the total is the training length, like a glued bar's
                self._glued_totals[line.total] += 1
                self._note_bar(step, line.total)
        elif line.epoch is not None:
            step = line.epoch  # an epoch-level loop: the epoch is the x axis
        else:
            step = (self.kv_lines + 1) * self.scale
        entry = line.entry
        self.kv_lines += 1
        self.explicit_steps = True
        got = self.sink.add(entry, step, lineno)
        self.kv_points += 1 if got else 0
        return got

    def _logging_steps(self, seg: str) -> None:
        """``logging_steps`` from a CLI flag, a config echo or a config repr (first one wins)."""
        m = _LOGGING_STEPS.search(seg)
        if m and self.run.facts.logging_steps is None:
            n = int(m.group(1))
            if n >= 1:
                self.run.facts.logging_steps = n

    def _note_bar(self, n: int, m: int) -> None:
        if n > self._bar_max.get(m, -1):
            if len(self._bar_max) < 1000 or m in self._bar_max:
                self._bar_max[m] = n

    def _flush_bar_seg(self) -> int | None:
        """Record the positions of the pending bar segment; returns the total of its last bar."""
        seg, self._bar_seg = self._bar_seg, None
        last: int | None = None
        if seg is not None:
            for n_s, m_s, _ in _TQDM.findall(seg):
                last = int(m_s)
                self._note_bar(int(n_s), last)
        return last

    def _bars(self, lineno: int, seg: str) -> int:
        if self.sink.entries > self.postfix_points or not self.metrics:
            # Dict log: bars only matter for their positions. Parsing every redraw of a
            # million-line log is the single biggest cost, so keep the latest bar segment and
            # parse it when a dict arrives, at finish, and every 256th redraw (train bars
            # between eval bars).
            self._bar_seg = seg
            self._bar_count += 1
            if self._bar_count & 255 == 0:
                self._flush_bar_seg()
            return 0
        added = 0
        for n_s, m_s, inside in _TQDM.findall(seg):
            n, m = int(n_s), int(m_s)
            self._note_bar(n, m)
            if self.metrics and self.sink.entries == self.postfix_points and "," in inside:
                # Postfix metrics (`loss=0.49`, `loss 0.49`) only in logs without metric dicts.
                post = inside.split(",", 2)[-1] if inside.count(",") >= 2 else ""
                entry = {
                    k: v for k, v in _POSTFIX_PAIR.findall(post.strip()) if is_metric_name(classify(k)[2])
                }
                if entry:
                    s = self.run.train.get(classify(next(iter(entry)))[2])
                    if s is not None and len(s) and s.steps[-1] == n:
                        continue
                    self.explicit_steps = True
                    got = self.sink.add(entry, n, lineno)
                    self.postfix_points += 1 if got else 0
                    added += got
                    self._note_resolution(entry)
        return added

    def _note_resolution(self, entry: dict[str, str]) -> None:
        """Record the rounding unit of fixed-point postfix values (``0.0000`` -> 1e-4): tqdm
        postfixes are formatted strings, so a printed 0 is "below half a unit", not an exact 0."""
        for key, text in entry.items():
            m = _FIXED_POINT.match(text)
            s = self.run.train.get(classify(key)[2]) if m else None
            if s is not None and m is not None:
                s.resolution = max(s.resolution, 10.0 ** -len(m.group(1)))

    def _triggered(self, lineno: int, seg: str) -> int:
        s = _RANK_PREFIX.sub("", seg)
        if "Traceback (most recent call last)" in s:
            self._in_tb, self._tb_lines, self._tb_junk, self._tb_phase = True, 0, 0, None
            self._tb_start, self._tb_last_frame, self._tb_tail_is_frame = lineno, "", True
            return 0
        for needle, code in WARNINGS:
            if needle in s:
                self._event("warning", seg, lineno, code)
                return 0
        if any(t in s for t in _OOM_TEXT):
            last = self.run.events[-1] if self.run.events else None
            if not (last and last.kind == "oom" and last.line and lineno - last.line < 50):
                self._event("oom", seg, lineno, "cuda-oom")
            return 0
        st = s.strip()
        if st == "Killed" or st.startswith("Killed "):
            self._event("signal", seg, lineno, "SIGKILL")
            return 0
        if "Segmentation fault" in s:
            self._event("signal", seg, lineno, "SIGSEGV")
            return 0
        bm = _BLOCK_HEADER.search(s)
        if bm:
            self._block = bm.group(1).lower()
            if self._block == "train":
                self.run.facts.finished = True
            return 0
        if "***** Running training" in s:
            self._header_left = 20
            return 0
        if "***** Running" in s:
            self._header_left = 0
            return 0
        added = 0
        pm = _PEFT_PARAMS.search(s)
        if pm:
            trainable, total = _int(pm.group(1)), _int(pm.group(2))
            self.run.facts.trainable_params = trainable
            self.run.facts.total_params = total
            if trainable == 0:
                self._event("warning", seg, lineno, "no-trainable-params")
            return 0
        if self._header_left > 0 or " | " in s or "trainable parameters" in s.lower():
            self._header(s)
        if self.metrics:
            added += self._torchtune(lineno, s)
        return added

    def _header(self, s: str) -> None:
        f = self.run.facts
        for key, val, of in _HEADER_FIELD.findall(s):
            k = key.lower()
            n = _int(val)
            if n is None:
                continue
            if k == "num examples":
                f.num_examples = n
            elif k == "num epochs":
                f.num_train_epochs = float(val.replace(",", ""))
            elif k in ("instantaneous batch size per device", "batch size per device"):
                f.train_batch_size = n
            elif k in ("total train batch size", "total batch size"):
                f.total_train_batch_size = n
            elif k == "gradient accumulation steps":
                f.gradient_accumulation_steps = n
            elif k in ("total optimization steps", "total steps"):
                f.max_steps = n
            elif k in ("number of trainable parameters", "trainable parameters"):
                f.trainable_params = n
                if of:
                    f.total_params = _int(of)
            elif k.startswith("num gpus"):
                f.world_size = n
        if self._header_left > 0:
            self._header_left -= 1

    def _torchtune(self, lineno: int, s: str) -> int:
        m = _TORCHTUNE_STEP.match(s)
        if m:
            entry = {k: v for k, v in _KV_COLON.findall(m.group(2))}
            if entry:
                self.explicit_steps = True
                return self.sink.add(entry, int(m.group(1)), lineno)
            return 0
        m2 = _TORCHTUNE_DESC.match(s)
        if m2 and self.sink.entries == self.postfix_points:
            step = int(m2.group(2))
            s_loss = self.run.train.get("loss")
            if s_loss is not None and len(s_loss) and s_loss.steps[-1] == step:
                return 0
            self.explicit_steps = True
            got = self.sink.add({"loss": m2.group(3)}, step, lineno)
            self.postfix_points += 1 if got else 0
            return got
        return 0

    def _arg_line(self, seg: str) -> None:
        m = _ARG_LINE.match(seg.strip())
        if not m or m.group(1) not in _ARG_FACTS:
            return
        name, raw = _ARG_FACTS[m.group(1)], m.group(2).strip()
        f = self.run.facts
        if getattr(f, name) is not None and name != "logging_steps":
            return
        value: Any
        if name in ("bf16", "fp16", "gradient_checkpointing"):
            if raw not in ("True", "False"):
                return
            value = raw == "True"
        elif name == "lr_scheduler_type":
            value = raw.split(".")[-1].strip("'\"").lower()
        elif name in ("learning_rate", "warmup_ratio", "num_train_epochs", "max_grad_norm"):
            v = to_float(raw)
            if v is None:
                return
            value = v
        else:
            v = to_float(raw)
            if v is None or v < 1 or v != int(v):
                return
            value = int(v)
        setattr(f, name, value)

    def _block_line(self, seg: str) -> bool:
        m = _BLOCK_LINE.match(seg)
        if not m:
            self._block = None
            return False
        v = to_float(m.group(2))
        if v is not None:
            key = m.group(1)
            if self._block != "train" and not key.startswith(("eval", "predict", "test")):
                key = f"{self._block}_{key}" if key != "epoch" else key
            self.run.summary[key] = v
        return True

    def _note_frame(self, s: str) -> None:
        """Record the phase a traceback frame shows (evaluation wins over generation: an
        evaluation that generates is still an evaluation)."""
        m = _FRAME.match(s)
        if not m:
            return
        path, func = m.group(1), m.group(2)
        if func in _EVAL_FRAMES:
            self._tb_phase = "eval"
        elif func in _GEN_FRAMES or "/vllm/" in path:
            self._tb_phase = "generation"

    def _traceback_line(self, lineno: int, seg: str) -> bool:
        """Consume a line inside a traceback; True when it was part of the traceback."""
        self._tb_lines += 1
        s = _RANK_PREFIX.sub("", seg).rstrip()
        if self._tb_lines > _TB_MAX_LINES:
            self._in_tb = False
            return False
        if not s or s[0] in " \t^~" or s.startswith(
            ("Traceback (most", "During handling", "The above exception", "[")
        ):
            self._tb_tail_is_frame = True
            if s and s.lstrip().startswith("File "):
                self._tb_last_frame = s.strip()[:300]
                if self._tb_phase != "eval":
                    self._note_frame(s)
            return True
        m = _EXC_LINE.match(s)
        if m and (m.group(2) is not None or m.group(1)[0].isupper()):
            self._drop_cut()
            cls, msg = m.group(1), m.group(2) or ""
            short = cls.rsplit(".", 1)[-1]
            if "OutOfMemoryError" in short or "out of memory" in msg:
                last = self.run.events[-1] if self.run.events else None
                if last and last.kind == "oom" and last.line and lineno - last.line < 200:
                    self.run.events[-1] = dataclasses.replace(
                        last, text=seg[:2000], line=lineno, phase=self._tb_phase or last.phase
                    )
                else:
                    self._event("oom", seg, lineno, "cuda-oom", self._tb_phase)
            else:
                self._event("exception", seg, lineno, short, self._tb_phase)
            self._in_tb = False
            return True
        self._tb_tail_is_frame = False
        self._tb_junk += 1  # interleaved output (tqdm, other ranks)
        if self._tb_junk > _TB_MAX_JUNK:
            self._in_tb = False
        return False

    # ----------------------------------------------------------------------------------- finish
    def _train_total(self) -> int | None:
        if self.run.facts.max_steps:
            return self.run.facts.max_steps
        if self._glued_totals:
            return self._glued_totals.most_common(1)[0][0]
        if self._train_votes:
            # dicts on their own lines: the bar redrawn last before most train dicts is training's
            return self._train_votes.most_common(1)[0][0]
        return None

    def _drop_cut(self) -> None:
        """Remove the placeholder of a cut-off traceback added by an earlier :meth:`finish`
        (by code and line: a rescale may have replaced the event object)."""
        cut, self._tb_cut = self._tb_cut, None
        if cut is not None:
            self.run.events[:] = [e for e in self.run.events if not (e.code == cut.code and e.line == cut.line)]

    def _cut_traceback(self) -> None:
        """A log that ends inside a traceback (no exception line yet): an exception event coded
        ``TruncatedTraceback`` naming the last frame, replaced on every call (a tailed log may
        still print the exception line; then the real event is the only one)."""
        self._drop_cut()
        if not (self._in_tb and self._tb_tail_is_frame and self._tb_last_frame) or len(self.run.events) >= _MAX_EVENTS:
            return  # other output after the frames: not a traceback cut off at the end of the log
        where = f"; last frame: {self._tb_last_frame}" if self._tb_last_frame else ""
        self._tb_cut = LogEvent(
            kind="exception",
            text=f"the log ends inside a traceback, before its exception line{where}"[:2000],
            line=self._tb_start,
            step=self._step_now(),
            code="TruncatedTraceback",
            phase=self._tb_phase,  # type: ignore[arg-type]
        )
        self.run.events.append(self._tb_cut)

    def finish(self) -> None:
        """Settle facts and steps from everything seen so far (idempotent; called per poll)."""
        self._flush_bar_seg()
        f = self.run.facts
        total = self._train_total()
        if total and f.max_steps is None:
            f.max_steps = total
        last_n = self._bar_max.get(total) if total else None
        if f.finished and total and last_n is None:
            # The end-of-training summary with no progress bar seen: assume it ran to the end.
            # With a bar, its last position is the step reached: a run stopped at step 4,628 of
            # 20,000 prints the same summary, and must not read as 20,000/20,000.
            last_n = total
        if not self.explicit_steps and self.n_train:
            scale = f.logging_steps
            if scale is None and last_n:
                guess = max(1, round(last_n / self.n_train))
                if abs(last_n // guess - self.n_train) <= 1:
                    scale = guess
                    f.logging_steps_inferred = True
            if scale and scale != self.scale:
                self._rescale(scale)
        if last_n and (f.global_step is None or last_n > f.global_step):
            f.global_step = last_n
        elif f.global_step is None and self.sink.last_step is not None:
            f.global_step = self.sink.last_step
        self._cut_traceback()
        self.sink.finish()
        # Idempotent: replace the notes this parser added on a previous call (tailing).
        notes = self.run.notes
        for n in self._own_notes:
            if n in notes:
                notes.remove(n)
        self._own_notes = []
        if self.skipped_dicts:
            self._own_notes.append(f"skipped {self.skipped_dicts} non-metric {{...}} line(s)")
        if self._events_dropped:
            self._own_notes.append(f"{self._events_dropped} further events not kept")
        notes.extend(self._own_notes)

    def _rescale(self, new: int) -> None:
        old = self.scale
        run = self.run
        for s in run.train.values():
            for i, v in enumerate(s.steps):
                s.steps[i] = v // old * new
        for bucket in run.evals.values():
            for s in bucket.values():
                for i, v in enumerate(s.steps):
                    s.steps[i] = v // old * new
        run.events[:] = [
            dataclasses.replace(e, step=e.step // old * new) if e.step is not None else e
            for e in run.events
        ]
        if isinstance(run.lines, LineIndex):
            run.lines.rescale(old, new)
        if self.sink.last_step is not None:
            self.sink.last_step = self.sink.last_step // old * new
        self.scale = new
