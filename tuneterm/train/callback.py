"""The TrainerCallback that turns a live Trainer into the files of the run directory.

``TunetermCallback`` writes, on the main process only (``state.is_world_process_zero``):

* ``metrics.jsonl``: one line per ``on_log`` (the logs dict + step/epoch/time), flushed at once;
* ``gpu.jsonl``: a memory/utilisation sample per logging window (CUDA counters, or the process RSS
  on CPU);
* ``samples.jsonl``: greedy generations for a few fixed prompts every ``sample_every`` steps;
* ``status.json``: state ``running`` at train begin, step/epoch at most every 2 s and at each log.

It also turns a stop request (SIGTERM, see :mod:`tuneterm.train.worker`) into
``control.should_training_stop`` at the next step end, agreed across ranks when distributed so no
rank is left waiting in a collective. Cost per step is a clock read and an integer compare; files
are appended with line buffering, so a crash loses at most the line being written.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from transformers import TrainerCallback

from tuneterm.runs.layout import GPU, METRICS, SAMPLES, RunDir

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
    """Write metrics, gpu, samples and status files of ``run_dir`` from Trainer events.

    Args:
        run_dir: the run directory.
        tokenizer: the processing class (used for samples; ``None`` disables samples).
        prompts: fixed prompts for samples (empty disables samples).
        sample_every: sample every N optimizer steps (also at the end of training); 0 disables.
        max_new_tokens: generation budget per sample.
        stop_flag: returns True once a stop was requested (SIGTERM).
        samples_off_reason: when set, samples are disabled and the reason is put in status.json.
    """

    def __init__(
        self,
        run_dir: RunDir,
        *,
        tokenizer: Any = None,
        prompts: Sequence[SamplePrompt] = (),
        sample_every: int = 0,
        max_new_tokens: int = 32,
        stop_flag: Callable[[], bool] = lambda: False,
        samples_off_reason: str | None = None,
    ) -> None:
        self.rd = run_dir
        self.tokenizer = tokenizer
        self.prompts = list(prompts)
        self.sample_every = sample_every
        self.max_new_tokens = max_new_tokens
        self.stop_flag = stop_flag
        self.samples_off_reason = samples_off_reason
        self._files: dict[str, IO[str]] = {}
        self._last_status = 0.0
        self._last_sample_step = -1
        self._nvml: Any = None

    # -- files -------------------------------------------------------------------------------
    def _file(self, name: str) -> IO[str]:
        fh = self._files.get(name)
        if fh is None:
            fh = self._files[name] = open(self.rd.path / name, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        return fh

    def _write(self, name: str, obj: Mapping[str, Any]) -> None:
        fh = self._file(name)
        fh.write(json.dumps(obj, allow_nan=True, ensure_ascii=False) + "\n")
        fh.flush()

    def close(self) -> None:
        """Close the open JSONL files (idempotent)."""
        for fh in self._files.values():
            try:
                fh.close()
            except OSError:
                pass
        self._files.clear()

    # -- events ------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        fields: dict[str, Any] = {"state": "running", "step": state.global_step, "max_steps": state.max_steps}
        fields["samples"] = "on" if self._samples_enabled() else f"off: {self.samples_off_reason or 'disabled'}"
        fields["world_size"] = int(getattr(args, "world_size", 1) or 1)
        self.rd.update_status(**fields)
        self._last_status = time.monotonic()

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or logs is None:
            return
        now = time.time()
        row: dict[str, Any] = {k: _jsonable(v) for k, v in logs.items()}
        row["step"] = int(state.global_step)
        row["epoch"] = float(state.epoch) if state.epoch is not None else None
        row["time"] = round(now, 3)
        self._write(METRICS, row)
        self._write(GPU, self._gpu_sample(state.global_step, now))
        self.rd.update_status(step=state.global_step, max_steps=state.max_steps, epoch=row["epoch"])
        self._last_status = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._stop_agreed(args):
            control.should_training_stop = True
        if not state.is_world_process_zero:
            return
        if time.monotonic() - self._last_status >= _STATUS_EVERY_S:
            self.rd.update_status(step=state.global_step, max_steps=state.max_steps, epoch=state.epoch)
            self._last_status = time.monotonic()
        if self._samples_enabled() and state.global_step % self.sample_every == 0:
            self._sample(kwargs.get("model"), state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            if self._samples_enabled() and self._last_sample_step != state.global_step and not self.stop_flag():
                self._sample(kwargs.get("model"), state.global_step)
            self.rd.update_status(step=state.global_step, max_steps=state.max_steps, epoch=state.epoch)
        self.close()

    # -- stop --------------------------------------------------------------------------------
    def _stop_agreed(self, args: Any) -> bool:
        local = self.stop_flag()
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

    def _sample(self, model: Any, step: int) -> None:
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
            self.rd.update_status(samples=f"off: {self.samples_off_reason}")
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


def finite_or_none(x: float | None) -> float | None:
    """``x`` if it is a finite number, else None (helper for progress lines)."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None
