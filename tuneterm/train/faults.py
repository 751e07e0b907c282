"""Test-only fault injection into real training runs: ``TUNETERM_FAULT``.

The training process reads the environment variable ``TUNETERM_FAULT`` (independent of the config,
so the config stays a valid TRL file) and injects the faults it names into the *real* Trainer
through an ordinary TrainerCallback, never by patching TRL. Used by the integration tests that
prove rules fire on real runs, and handy for trying the watcher. Grammar: comma-separated items
``kind[@step][=value]``:

``freeze``
    Gradient hooks zero every gradient of every trainable parameter: the weights never change and
    the logged ``grad_norm`` is exactly 0 (what a frozen adapter or a broken gradient path shows).
``nan-weights[@STEP]``
    At the start of optimizer step STEP (default 1) the first trainable weight is filled with NaN:
    loss and grad_norm become NaN from that step on.
``crash[@STEP]``
    Raise ``RuntimeError("injected fault: crash")`` at step STEP (default 1).
``oom[@STEP]``
    Raise ``torch.OutOfMemoryError`` with CUDA's wording at step STEP (for crash diagnosis).
``oom-eval``
    Raise the same ``torch.OutOfMemoryError`` inside the Trainer's evaluation loop (from
    ``on_prediction_step``, so the traceback runs through ``evaluation_loop``): the OOM that only
    evaluation hits (huggingface/transformers#26702). Needs ``eval_strategy`` set.
``hang@STEP[=SECONDS]``
    After step STEP (default 1) the process stops making progress for SECONDS (default 3600) while
    staying alive: what a stuck NCCL collective or a generation that never returns looks like.
``sleep=SECONDS``
    Sleep SECONDS after every step (slow a tiny run down to test watching and stopping).
``enospc@STEP[=STEPS]``
    From step STEP (default 1), for STEPS steps (default 3), every write of the run-directory
    callback (metrics, gpu, samples, status) fails with ``OSError(ENOSPC)``, as on a full disk;
    then the disk has room again. Training must go on and keep everything written before.

>>> parse_faults("nan-weights@3,sleep=0.5")
[Fault(kind='nan-weights', step=3, value=None), Fault(kind='sleep', step=None, value=0.5)]
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from typing import Any

from tuneterm.errors import ConfigError

ENV = "TUNETERM_FAULT"
KINDS = ("freeze", "nan-weights", "crash", "oom", "oom-eval", "hang", "sleep", "enospc")
_OOM_TEXT = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.11 GiB "
    "of which 1.06 GiB is free. (injected fault)"
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: its kind, the step it fires at (None: from the start), a value."""

    kind: str
    step: int | None = None
    value: float | None = None


def parse_faults(spec: str | None) -> list[Fault]:
    """Parse a ``TUNETERM_FAULT`` value (see the module docstring).

    Raises:
        ConfigError: an unknown kind or a malformed step/value.
    """
    faults: list[Fault] = []
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        head, _, raw_value = item.partition("=")
        kind, _, raw_step = head.partition("@")
        if kind not in KINDS:
            raise ConfigError(f"{ENV}: unknown fault {kind!r} (known: {', '.join(KINDS)})")
        try:
            step = int(raw_step) if raw_step else None
            value = float(raw_value) if raw_value else None
        except ValueError:
            raise ConfigError(f"{ENV}: malformed fault {item!r}") from None
        faults.append(Fault(kind, step, value))
    return faults


def faults_from_env() -> list[Fault]:
    """The faults named by ``$TUNETERM_FAULT`` (empty when unset)."""
    return parse_faults(os.environ.get(ENV))


def make_fault_callback(faults: list[Fault], writer: Any = None) -> Any:
    """A TrainerCallback that injects ``faults`` (imports transformers; call only in the child).

    ``writer`` is the run-directory callback whose writes ``enospc`` makes fail.
    """
    import torch
    from transformers import TrainerCallback

    class FaultCallback(TrainerCallback):
        def __init__(self) -> None:
            self.hooked = False

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if any(f.kind == "freeze" for f in faults) and model is not None and not self.hooked:
                for p in model.parameters():
                    if p.requires_grad:
                        p.register_hook(torch.zeros_like)
                self.hooked = True

        def on_step_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            step = state.global_step + 1  # the step about to run
            for f in faults:
                if f.step not in (None, step) and not (f.step is None and step == 1):
                    continue
                if f.kind == "nan-weights" and model is not None and step == (f.step or 1):
                    with torch.no_grad():
                        first = next(p for p in model.parameters() if p.requires_grad)
                        first.fill_(float("nan"))
                elif f.kind == "crash" and step == (f.step or 1):
                    raise RuntimeError("injected fault: crash")
                elif f.kind == "oom" and step == (f.step or 1):
                    raise torch.OutOfMemoryError(_OOM_TEXT)

        def on_prediction_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if any(f.kind == "oom-eval" for f in faults):
                raise torch.OutOfMemoryError(_OOM_TEXT)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            for f in faults:
                if f.kind == "enospc" and writer is not None:
                    first = f.step or 1
                    last = first + int(f.value or 3) - 1
                    # runs after the run-directory callback's on_step_end and before on_log, so
                    # the log lines of steps first..last are the ones that fail
                    full = first <= state.global_step <= last
                    writer.inject_write_error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if full else None
            for f in faults:
                if f.kind == "sleep" and f.value:
                    time.sleep(f.value)
                elif f.kind == "hang" and state.global_step == (f.step or 1):
                    time.sleep(f.value or 3600.0)

    return FaultCallback()
