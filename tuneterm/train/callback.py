"""The TrainerCallback that turns a live Trainer into the files of the run directory.

``TunetermCallback`` writes, on the main process only (``state.is_world_process_zero``):

* ``metrics.jsonl``: one line per ``on_log`` (the logs dict + step/epoch/time), flushed at once;
* ``gpu.jsonl``: a memory/utilisation sample per logging window (CUDA counters, or the process RSS
  on CPU);
* ``samples.jsonl``: greedy generations for a few fixed prompts every ``sample_every`` steps;
* ``status.json``: state ``running`` at train begin, step/epoch at most every 2 s and at train end.

It also turns a stop request (SIGTERM, see :mod:`tuneterm.train.worker`) into
``control.should_training_stop`` at the next step end, agreed across ranks when distributed so no
rank is left waiting in a collective. Cost per step is a clock read and an integer compare; files
are appended with line buffering, so a crash loses at most the line being written.

The same class is tuneterm's public callback for a trainer tuneterm did not launch
(``from tuneterm import TunetermCallback``)::

    trainer.add_callback(TunetermCallback(runs_dir="runs", name="my-run", stop_on="error"))

Without a ``run_dir`` it creates one at train begin (:mod:`tuneterm.train.attach`: config.yaml
from the TrainingArguments and the model/PEFT config, launch.json, status.json), evaluates the
rules in a background thread as lines arrive (:mod:`tuneterm.train.live_rules`), stops training at
the next step end after the first error finding when ``stop_on="error"``, records the end
(finished, stopped, failed through ``sys.excepthook``) and sends notifications
(:mod:`tuneterm.report.notify`). The run then reads like any other in ``tuneterm runs``, ``watch``,
``doctor`` and the app.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any

from transformers import TrainerCallback

from tuneterm.report.text import finding_summary
from tuneterm.runs.layout import GPU, METRICS, SAMPLES, RunDir
from tuneterm.train.live_rules import LiveRules
from tuneterm.train.workers import WorkerReporter

if TYPE_CHECKING:
    from peft import PeftModel
    from torch.utils.data import DataLoader
    from transformers import (
        PreTrainedModel,
        PreTrainedTokenizerBase,
        TrainerControl,
        TrainerState,
        TrainingArguments,
    )

    from tuneterm.engine.model import Finding
    from tuneterm.logs.model import Run
    from tuneterm.report.notify import Notifier

_STATUS_EVERY_S = 2.0


def _jsonable(value: Any) -> Any:
    """Numbers stay numbers (NaN/inf included), bools and None stay, everything else becomes str."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        f = float(value)  # numpy / torch scalars
    except (TypeError, ValueError):
        return str(value)
    return f


@dataclass(frozen=True, slots=True)
class SamplePrompt:
    """One fixed prompt: ``shown`` is what samples.jsonl records, ``text`` what the model sees."""

    shown: str
    text: str


class TunetermCallback(TrainerCallback):
    """Write metrics, gpu, samples and status files of a run directory from Trainer events.

    Two uses. ``tuneterm train``'s worker passes the ``run_dir`` it launched (the watcher outside
    the process evaluates the rules). Anyone else passes nothing or ``runs_dir``/``name``: the
    callback then creates the run directory itself, evaluates the rules in-process, stops on the
    first error when ``stop_on="error"`` and records how training ended.

    Args:
        run_dir: the run directory tuneterm launched; ``None`` creates one at train begin.
        runs_dir: where to create it (default ``$TUNETERM_RUNS_DIR``, else ``./runs``).
        name: the run's name (default ``<trainer>-<model>-<date>-<time>``).
        stop_on: ``"error"`` stops training gracefully (``control.should_training_stop``) at the
            first error finding; ``"never"`` only reports.
        samples: generate from a few fixed prompts about 4 times per run (own run directories).
        notify: apprise URLs notified when the run ends or an error finding fires, added to those
            of ``$TUNETERM_NOTIFY`` and the user's config file.
        tokenizer: the processing class (used for samples; ``None`` disables samples).
        prompts: fixed prompts for samples (empty disables samples).
        sample_every: sample every N optimizer steps (also at the end of training); 0 disables.
        max_new_tokens: generation budget per sample.
        stop_flag: returns True once a stop was requested (SIGTERM).
        samples_off_reason: when set, samples are disabled and the reason is put in status.json.
        reporter: this rank's own record (``worker-<rank>.json``): progress every 2 s, and the
            supervisor's death noticed within 2 s.

    Raises:
        ValueError: ``stop_on`` is neither ``"error"`` nor ``"never"``.
        InputError: ``name`` is unsafe or a run of that name exists already (raised here, before
            any training time is spent, rather than at train begin).
    """

    def __init__(
        self,
        run_dir: RunDir | None = None,
        *,
        runs_dir: str | os.PathLike[str] | None = None,
        name: str | None = None,
        stop_on: str = "never",
        samples: bool = True,
        notify: Sequence[str] = (),
        tokenizer: PreTrainedTokenizerBase | None = None,
        prompts: Sequence[SamplePrompt] = (),
        sample_every: int = 0,
        max_new_tokens: int = 32,
        stop_flag: Callable[[], bool] = lambda: False,
        samples_off_reason: str | None = None,
        reporter: WorkerReporter | None = None,
    ) -> None:
        if stop_on not in ("error", "never"):
            raise ValueError(f"stop_on must be 'error' or 'never', not {stop_on!r}")
        if run_dir is None and name is not None:
            _check_new_name(runs_dir, name)
        self._own = run_dir is None
        self.rd: RunDir = run_dir if run_dir is not None else RunDir(Path())
        self.runs_dir = runs_dir
        self.name = name
        self.stop_on = stop_on
        self.want_samples = samples
        self.notify_urls = tuple(notify)
        self.tokenizer = tokenizer
        self.prompts = list(prompts)
        self.sample_every = sample_every
        self.max_new_tokens = max_new_tokens
        self.stop_flag = stop_flag
        self.samples_off_reason = samples_off_reason
        self.reporter = reporter
        self._last_report = 0.0
        # Test-only (TUNETERM_FAULT enospc): while set, every write of this callback fails with it.
        self.inject_write_error: OSError | None = None
        self._lost: dict[str, Any] = {}
        self._lost_recorded = False
        self._files: dict[str, IO[str]] = {}
        self._last_status = 0.0
        self._last_sample_step = -1
        self._nvml: ModuleType | None = None  # pynvml, once initialised
        self._rules: LiveRules | None = None
        self._notifier: Notifier | None = None
        self._unhook: Callable[[], None] | None = None
        self._stop_finding: Finding | None = None
        self._term_requested = False
        self._opened = not self._own

    @property
    def run_dir(self) -> Path | None:
        """The run directory (``None`` until training began, for an own one)."""
        return self.rd.path if self._opened else None

    # -- files -------------------------------------------------------------------------------
    def _file(self, name: str) -> IO[str]:
        fh = self._files.get(name)
        if fh is None:
            fh = self._files[name] = open(self.rd.path / name, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        return fh

    def _write(self, name: str, obj: Mapping[str, Any]) -> None:
        """Append one JSON line to ``name``. A write that fails (disk full, quota) never ends
        training: the line is dropped, counted, reported once on stderr, and recorded in
        status.json (``write_errors``) once writing works again."""
        line = json.dumps(obj, allow_nan=True, ensure_ascii=False) + "\n"
        try:
            if self.inject_write_error is not None:
                raise self.inject_write_error
            fh = self._file(name)
            fh.write(line)
            fh.flush()
        except OSError as exc:
            self._write_failed(name, obj.get("step"), exc)
            return
        if self._lost and not self._lost_recorded:
            self._lost_recorded = self._status(write_errors=dict(self._lost))

    def _write_failed(self, name: str, step: Any, exc: OSError) -> None:
        fh = self._files.pop(name, None)
        if fh is not None:
            try:
                fh.close()  # a partly written line stays a partial last line; readers skip it
            except OSError:
                pass
        if not self._lost:
            self._lost.update(error=f"{type(exc).__name__}: {exc}"[:300], first_step=step, lines=0)
            print(f"tuneterm: cannot write {name} ({exc}); training continues, lines are dropped", file=sys.stderr, flush=True)
        self._lost["lines"] = int(self._lost.get("lines", 0)) + 1
        self._lost["last_step"] = step
        self._lost_recorded = False

    def _status(self, **fields: Any) -> bool:
        """Merge ``fields`` into status.json; a failed write is skipped (the next one retries).
        Returns whether it was written."""
        try:
            if self.inject_write_error is not None:
                raise self.inject_write_error
            self.rd.update_status(**fields)
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Close the open JSONL files (idempotent)."""
        for fh in self._files.values():
            try:
                fh.close()
            except OSError:
                pass
        self._files.clear()

    # -- events ------------------------------------------------------------------------------
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if self._own and not self._opened:
            self._open(args, state, kwargs)
        fields: dict[str, Any] = {"state": "running", "step": state.global_step, "max_steps": state.max_steps}
        fields["samples"] = "on" if self._samples_enabled() else f"off: {self.samples_off_reason or 'disabled'}"
        fields["world_size"] = int(getattr(args, "world_size", 1) or 1)
        self._status(**fields)
        self._last_status = time.monotonic()

    def _open(self, args: TrainingArguments, state: TrainerState, kwargs: Mapping[str, Any]) -> None:
        """Create the own run directory; set up samples, the rules thread, crash hooks, notifier."""
        from tuneterm.train.attach import install_crash_hooks, install_stop_signal, open_run_dir

        model = kwargs.get("model")
        if self.want_samples and self.sample_every <= 0 and state.max_steps and state.max_steps > 0:
            self.sample_every = max(1, int(state.max_steps) // 4)
        if self.want_samples and self.tokenizer is None:
            tok = kwargs.get("processing_class")
            self.tokenizer = getattr(tok, "tokenizer", tok)  # a processor wraps its tokenizer
        if self.want_samples and not self.prompts and self.tokenizer is not None:
            self.prompts = _default_prompts(self.tokenizer, kwargs.get("train_dataloader"))
        if not self.want_samples:
            self.samples_off_reason = "disabled (samples=False)"
        elif self.tokenizer is None:
            self.samples_off_reason = "no tokenizer: pass processing_class to the trainer"
        elif getattr(args, "fsdp", None) or getattr(args, "deepspeed", None):
            self.samples_off_reason = "sharded training (FSDP/DeepSpeed): generation would need every rank"
        launch = {"stop_on": self.stop_on, "sample_every": self.sample_every}
        self.rd = open_run_dir(args, model, runs_dir=self.runs_dir, name=self.name, launch=launch)
        self._opened = True
        from tuneterm.report.notify import Notifier
        from tuneterm.train.follow import advise_notice

        self._notifier = Notifier.configured(self.notify_urls, advise=advise_notice)
        unhook_crash = install_crash_hooks(self.rd, self._crashed)
        unhook_term = install_stop_signal(self._terminated)

        def unhook() -> None:
            unhook_crash()
            unhook_term()

        self._unhook = unhook
        self._rules = LiveRules(self.rd, self._on_finding)
        self._rules.start()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or logs is None:
            return
        now = time.time()
        row: dict[str, Any] = {k: _jsonable(v) for k, v in logs.items()}
        row["step"] = int(state.global_step)
        row["epoch"] = float(state.epoch) if state.epoch is not None else None
        row["time"] = round(now, 3)
        self._write(METRICS, row)
        self._write(GPU, self._gpu_sample(state.global_step, now))
        if time.monotonic() - self._last_status >= _STATUS_EVERY_S:
            # status.json is replaced atomically (an os.replace: most of a log event's cost), so at
            # most every 2 s; metrics.jsonl has every step
            self._status(step=state.global_step, max_steps=state.max_steps, epoch=row["epoch"])
            self._last_status = time.monotonic()
        if self._rules is not None:
            self._rules.nudge()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._stop_agreed(args):
            control.should_training_stop = True
            if self._stop_finding is not None and state.is_world_process_zero:
                self.rd.update_status(stop_requested=True)
        if self.reporter is not None and time.monotonic() - self._last_report >= _STATUS_EVERY_S:
            self.reporter.progress(state.global_step, state.max_steps)
            self.reporter.check_supervisor()
            self._last_report = time.monotonic()
        if not state.is_world_process_zero:
            return
        if time.monotonic() - self._last_status >= _STATUS_EVERY_S:
            self._status(step=state.global_step, max_steps=state.max_steps, epoch=state.epoch)
            self._last_status = time.monotonic()
        if self._samples_enabled() and state.global_step % self.sample_every == 0:
            self._sample(kwargs.get("model"), state.global_step)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            if self._samples_enabled() and self._last_sample_step != state.global_step and not self._stopping():
                self._sample(kwargs.get("model"), state.global_step)
            self._status(step=state.global_step, max_steps=state.max_steps, epoch=state.epoch)
            if self._own and self._opened:
                self._finish(state)
        self.close()

    def _finish(self, state: TrainerState) -> None:
        """Record the end of an own run, evaluate it once more and notify."""
        from tuneterm.runs.writer import now_iso

        if self._unhook is not None:
            self._unhook()
        fields: dict[str, Any] = {"ended": now_iso(), "exit_code": 0, "step": state.global_step}
        if self._stop_finding is not None:
            why = finding_summary(self._stop_finding, limit=300, brief=True)
            fields.update(state="stopped", stop_reason=why, error=f"stopped by TunetermCallback(stop_on='error'): {why}")
        elif self._term_requested:
            fields.update(state="stopped", error="stopped on request", stop_requested=True)
        else:
            fields["state"] = "finished"
        self.close()  # metrics.jsonl complete before the final evaluation reads it
        self.rd.update_status(**fields)
        if self._rules is not None:
            self._rules.final()
        self._notify_end(fields["state"], fields.get("error"))
        if self._notifier is not None:
            self._notifier.close()

    # -- rules and notifications (own run directories) ----------------------------------------
    def _on_finding(self, finding: Finding) -> None:
        """A finding fired (rules thread): ask the loop to stop on an error, notify."""
        from tuneterm.engine.model import Severity

        if finding.severity is not Severity.ERROR:
            return
        if self.stop_on == "error" and self._stop_finding is None:
            self._stop_finding = finding
            self.rd.update_status(stop_reason=finding_summary(finding, limit=300, brief=True))
        if self._notifier is not None:
            self._notifier.finding(self.rd, finding, self._parsed_run())

    def _crashed(self, state: str, error: str | None) -> None:
        """The process is ending without on_train_end (recorded by the crash hooks): evaluate the
        run once more (the crash rules read the traceback), notify, and let the message go out."""
        findings: list[Finding] = self._rules.final() if self._rules is not None else []
        if self._notifier is not None:
            self._notifier.run_ended(self.rd, state, error, findings, self._parsed_run())
            self._notifier.close()

    def _notify_end(self, state: str, error: str | None) -> None:
        if self._notifier is not None:
            self._notifier.run_ended(self.rd, state, error, self._rules_findings(), self._parsed_run())

    def _rules_findings(self) -> list[Finding]:
        live = self._rules.evaluator if self._rules is not None else None
        return list(live.findings) if live is not None else []

    def _parsed_run(self) -> Run | None:
        """The run as the rules thread read it (for the advisor's prescription), or None."""
        live = self._rules.evaluator if self._rules is not None else None
        return live.run if live is not None else None

    def _stopping(self) -> bool:
        return self.stop_flag() or self._stop_finding is not None or self._term_requested

    def _terminated(self) -> None:
        """SIGTERM (``tuneterm stop``): stop at the next step end, like a stop on error."""
        self._term_requested = True
        self.rd.update_status(stop_requested=True)

    # -- stop --------------------------------------------------------------------------------
    def _stop_agreed(self, args: TrainingArguments) -> bool:
        local = self._stopping()
        if int(getattr(args, "world_size", 1) or 1) <= 1:
            return local
        import torch
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            return local
        # Every rank must leave the loop at the same step, or one waits forever in a collective.
        flag = torch.tensor([1.0 if local else 0.0], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    # -- samples -----------------------------------------------------------------------------
    def _samples_enabled(self) -> bool:
        return (
            self.samples_off_reason is None
            and self.sample_every > 0
            and self.tokenizer is not None
            and bool(self.prompts)
        )

    def _sample(self, model: PreTrainedModel | PeftModel | None, step: int) -> None:
        if model is None:
            return
        import torch

        self._last_sample_step = step
        tok = self.tokenizer
        was_training = model.training
        model.eval()
        eos = tok.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        try:
            device = next(model.parameters()).device
            for p in self.prompts:
                enc = tok(p.text, return_tensors="pt", add_special_tokens=False).to(device)
                with torch.no_grad():
                    out = model.generate(
                        **enc,
                        max_new_tokens=self.max_new_tokens,
                        do_sample=False,
                        pad_token_id=pad,
                        eos_token_id=eos,
                    )
                new = out[0, enc["input_ids"].shape[1] :].tolist()
                ended = bool(new) and eos is not None and new[-1] == eos
                self._write(
                    SAMPLES,
                    {
                        "step": step,
                        "time": round(time.time(), 3),
                        "prompt": p.shown,
                        "completion": tok.decode(new, skip_special_tokens=True),
                        "n_tokens": len(new) - (1 if ended else 0),
                        "hit_max_tokens": len(new) >= self.max_new_tokens and not ended,
                        "max_new_tokens": self.max_new_tokens,
                    },
                )
        except Exception as exc:  # noqa: BLE001 - a sampling failure must never kill the run
            self.samples_off_reason = f"generation failed: {type(exc).__name__}: {exc}"[:300]
            self._status(samples=f"off: {self.samples_off_reason}")
        finally:
            if was_training:
                model.train()

    # -- gpu ---------------------------------------------------------------------------------
    def _gpu_sample(self, step: int, now: float) -> dict[str, Any]:
        import torch

        row: dict[str, Any] = {"step": int(step), "time": round(now, 3)}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            dev = torch.cuda.current_device()
            mib = 1024 * 1024
            row["device"] = f"cuda:{dev}"
            row["mem_allocated_mib"] = round(torch.cuda.memory_allocated(dev) / mib, 1)
            row["mem_reserved_mib"] = round(torch.cuda.memory_reserved(dev) / mib, 1)
            row["peak_allocated_mib"] = round(torch.cuda.max_memory_allocated(dev) / mib, 1)
            # the planner's peak is a reserved-memory figure: record the window's reserved peak too
            row["peak_reserved_mib"] = round(torch.cuda.max_memory_reserved(dev) / mib, 1)
            row["mem_total_mib"] = round(torch.cuda.get_device_properties(dev).total_memory / mib, 1)
            row["name"] = torch.cuda.get_device_name(dev)
            row["utilization"] = self._utilization(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        else:
            row["device"] = "cpu"
            row["rss_mib"] = _rss_mib()
            # ru_maxrss is KiB on Linux.
            row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        return row

    def _utilization(self, dev: int) -> float | None:
        try:
            if self._nvml is None:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            idx = int(os.environ.get("CUDA_VISIBLE_DEVICES", str(dev)).split(",")[dev]) if os.environ.get(
                "CUDA_VISIBLE_DEVICES", ""
            ).split(",")[0].isdigit() else dev
            handle = self._nvml.nvmlDeviceGetHandleByIndex(idx)
            return float(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:  # noqa: BLE001 - NVML missing or unsupported: utilisation unknown
            return None


def _rss_mib() -> float | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024), 1)
    except (OSError, ValueError, IndexError):
        return None


def _default_prompts(tokenizer: PreTrainedTokenizerBase, loader: DataLoader[Any] | None) -> list[SamplePrompt]:
    """Prompts for samples of a trainer tuneterm did not build: the first rows of the training
    dataset when they still hold text (``messages``, ``prompt``, ``text``), else a few general
    prompts; rendered with the chat template when there is one."""
    from tuneterm.train.runner import sample_prompts

    dataset = getattr(loader, "dataset", None)
    try:
        return sample_prompts(dataset if dataset is not None else [], tokenizer)
    except Exception:  # noqa: BLE001 - tokenized or unusual datasets: general prompts instead
        return sample_prompts([], tokenizer)


def _check_new_name(runs_dir: str | os.PathLike[str] | None, name: str) -> None:
    from tuneterm.errors import InputError
    from tuneterm.runs.layout import check_name, runs_root

    root = runs_root(runs_dir)
    if (root / check_name(name)).exists():
        raise InputError(f"run {name!r} already exists in {root}; choose another name")
