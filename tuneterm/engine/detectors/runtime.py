"""Crash detectors for ``rules/diagnostics/runtime.yaml``: why a run died, with fixes.

Each detector looks at the event that ended the run (:func:`tuneterm.engine.detectors.crash.final_crash`)
and fires when it matches the rule's ``codes``/``texts``: CUDA out of memory, NCCL/distributed
errors, a missing package, a model or dataset that could not be downloaded, a death by signal.
``run-vanished`` fires for a run directory whose process disappeared without recording an end
(:func:`tuneterm.runs.status.mark_died` marks such runs ``died``); ``run-stalled`` for a live one
that stopped making progress (:mod:`tuneterm.runs.progress`). The generic ``run-crashed`` rule defers to
these through its ``defer_codes``/``defer_texts`` parameters.

Importing :mod:`tuneterm.engine.detectors` registers them with the other log detectors.

>>> from tuneterm.logs.model import LogEvent, Run
>>> run = Run("x.log", "console")
>>> run.events.append(LogEvent("exception", "ModuleNotFoundError: No module named 'sklearn'", line=5, code="ModuleNotFoundError"))
>>> d = crash_missing_package(run, {"codes": ["ModuleNotFoundError"], "texts": []})[0]
>>> d.evidence["package"], d.fixes[0].command
('scikit-learn', 'pip install scikit-learn')
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.detectors.crash import event_code, final_crash, matches
from tuneterm.engine.detectors.oomfix import oom_fixes
from tuneterm.engine.registry import Param, detector
from tuneterm.engine.stats import fmt_duration
from tuneterm.logs.model import LogEvent, Run
from tuneterm.textsafe import inert_line

_MATCH_PARAMS = {
    "codes": Param("str_list", "event codes (exception class, cuda-oom, SIGKILL ...) this rule owns"),
    "texts": Param("str_list", "case-insensitive substrings of the final error line this rule owns"),
}
_BASE_EVIDENCE = ("exception", "text", "step", "line")


def _evidence(ev: LogEvent, **more: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "exception": inert_line(event_code(ev), 80),
        "text": inert_line(ev.text, 300),
        "step": ev.step,
        "line": ev.line,
    }
    d.update(more)
    return d


def _crash(run: Run, params: Mapping[str, Any]) -> LogEvent | None:
    ev = final_crash(run)
    if ev is None or not matches(ev, params["codes"], params["texts"]):
        return None
    return ev



def _kind_detection(run: Run, params: Mapping[str, Any], classify: Callable[[LogEvent], tuple[str, list[Fix]]]) -> list[Detection]:
    """The final crash this rule owns, as one detection whose evidence names the ``kind`` that
    ``classify`` reads from the error text, with that kind's fixes; none if the rule does not own it."""
    ev = _crash(run, params)
    if ev is None:
        return []
    kind, fixes = classify(ev)
    return [Detection(ev.step, ev.step, _evidence(ev, kind=kind), None, tuple(fixes))]

# ------------------------------------------------------------------------------------- OOM
@detector("crash-oom", params=_MATCH_PARAMS, evidence=(*_BASE_EVIDENCE, "capacity_gib", "advice"))
def crash_oom(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """CUDA out of memory ended the run; fixes sized by the installed memory estimator
    (:func:`tuneterm.engine.detectors.oomfix.use_sizer`) when it knows the model and the GPU
    capacity, else the standard remedies with the run's own numbers."""
    ev = _crash(run, params)
    if ev is None:
        return []
    from tuneterm.engine.detectors.oomfix import capacity_gib, planned_fixes

    # The phase read from the traceback decides the advice: an OOM in the evaluation loop or in
    # GRPO's sampling is not cured by a smaller training batch (huggingface/transformers#26702,
    # huggingface/trl#2688).
    planned = [] if ev.phase in ("eval", "generation") else planned_fixes(run.facts, ev.text)
    fixes = planned or oom_fixes(run.facts, ev.text, ev.phase)
    cap = capacity_gib(ev.text)
    if ev.phase == "eval":
        advice = "OOM in the evaluation loop: evaluation remedies"
    elif ev.phase == "generation":
        advice = "OOM while generating completions: generation remedies"
    else:
        advice = "sizes from the memory estimator (tuneterm plan)" if planned else "standard remedies"
    causes: tuple[str, ...] = ()
    if ev.phase == "eval":
        causes = ("evaluation keeps every batch's [batch, seq, vocab] logits on the GPU until the whole eval set "
                  "is done (compute_metrics; eval_accumulation_steps unset): the training step fitted",)
    elif ev.phase == "generation":
        causes = ("sampling holds the KV cache of generation_batch_size sequences x (prompt + max_completion_length) "
                  "tokens beside the policy (and vLLM's reserved share when colocated)",)
    return [Detection(ev.step, ev.step, _evidence(ev, capacity_gib=cap, advice=advice), None, tuple(fixes), causes)]


# ----------------------------------------------------------------------------- distributed
_PORT = re.compile(r"(?:port|:)\s*(\d{4,5})\b")


@detector("crash-distributed", params=_MATCH_PARAMS, evidence=(*_BASE_EVIDENCE, "kind"))
def crash_distributed(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """An NCCL / torch.distributed error ended the run (timeouts, a port in use, a rank that died)."""
    return _kind_detection(run, params, _distributed_kind)


def _distributed_kind(ev: LogEvent) -> tuple[str, list[Fix]]:
    """What kind of distributed failure ``ev`` is, and its fixes."""
    low = ev.text.lower()
    fixes: list[Fix] = []
    if "address already in use" in low or "errno: 98" in low:
        kind = "port in use"
        fixes.append(Fix(command="accelerate launch --main_process_port 29511 ...  # or torchrun --master_port 29511", why="another run (or a leftover process) holds the rendezvous port"))
        fixes.append(Fix(command="pgrep -af 'torchrun|accelerate|python'", why="find and stop the leftover process of a previous run"))
    elif "timeout" in low or "timed out" in low or "watchdog" in low:
        kind = "collective timeout"
        fixes.append(Fix(key="ddp_timeout", value=7200, why="a long first step (dataset mapping, a slow eval on rank 0) must not be mistaken for a hang"))
        fixes.append(Fix(command="NCCL_DEBUG=INFO TORCH_DISTRIBUTED_DEBUG=DETAIL tuneterm train CONFIG --gpus N", why="shows which rank stopped participating and in which collective"))
    else:
        kind = "NCCL/distributed error"
        fixes.append(Fix(command="NCCL_DEBUG=INFO tuneterm train CONFIG --gpus N", why="NCCL says which transport (P2P, SHM, IB) failed"))
        fixes.append(Fix(command="NCCL_P2P_DISABLE=1 tuneterm train CONFIG --gpus N", why="works around broken GPU peer-to-peer on some consumer boards and VMs, at some speed"))
    fixes.append(Fix(command="tuneterm train CONFIG --gpus 1", why="confirm the run itself works on one GPU before debugging the multi-GPU setup"))
    return kind, fixes


# -------------------------------------------------------------------------- missing package
# import name -> pip distribution, where they differ.
PIP_NAMES: Mapping[str, str] = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "cv2": "opencv-python",
    "PIL": "pillow",
    "google": "protobuf",
    "flash_attn": "flash-attn --no-build-isolation",
    "bitsandbytes": "bitsandbytes",
    "deepspeed": "deepspeed",
    "sentencepiece": "sentencepiece",
    "tiktoken": "tiktoken",
    "vllm": "vllm",
    "liger_kernel": "liger-kernel",
    "wandb": "wandb",
    "dotenv": "python-dotenv",
    "bs4": "beautifulsoup4",
    "attr": "attrs",
    "Levenshtein": "python-Levenshtein",
    "huggingface_hub": "huggingface_hub",
    "tensorboard": "tensorboard",
    "rouge_score": "rouge-score",
    "unsloth": "unsloth",
    "mpi4py": "mpi4py",
}
_NO_MODULE = re.compile(r"No module named '([A-Za-z_][\w.]{0,100})'")
_CANNOT_IMPORT = re.compile(r"cannot import name '(\w{1,100})' from '([A-Za-z_][\w.]{0,100})'")
_REQUIRES = re.compile(r"requires the (\w[\w-]{0,60}) library", re.IGNORECASE)
_PIP_CMD = re.compile(r"pip install (?:-U |--upgrade )?([A-Za-z0-9_.\-\[\]=<>~!, ]{1,120}?)(?:`|'|\"|$|\s{2}|\)|\. )")


def pip_name(module: str) -> str:
    """The pip distribution of an import name (``sklearn`` -> ``scikit-learn``)."""
    top = module.split(".", 1)[0]
    return PIP_NAMES.get(top, top.replace("_", "-"))


@detector("crash-missing-package", params=_MATCH_PARAMS, evidence=(*_BASE_EVIDENCE, "package", "module"))
def crash_missing_package(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """A ``ModuleNotFoundError``/``ImportError`` ended the run: name the package and the pip command."""
    ev = _crash(run, params)
    if ev is None:
        return []
    text = ev.text
    module, package, upgrade = "", "", False
    if m := _NO_MODULE.search(text):
        module = m.group(1)
        package = pip_name(module)
    elif m := _CANNOT_IMPORT.search(text):
        module = m.group(2)
        package, upgrade = pip_name(module), True
    elif m := _PIP_CMD.search(text):
        package = m.group(1).strip().rstrip(".,")
        upgrade = "-U" in text or "--upgrade" in text
    elif m := _REQUIRES.search(text):
        module = m.group(1)
        package = pip_name(module.lower())
    fixes: list[Fix] = []
    if package:
        cmd = f"pip install {'-U ' if upgrade else ''}{package}"
        why = (f"'{module}' is installed but too old or too new for the calling code; upgrade it (or pin the version the training script was written for)"
               if upgrade and module else f"install the missing package into the environment the run uses ({'module ' + module if module else package})")
        fixes.append(Fix(command=cmd, why=why))
    fixes.append(Fix(command="python -c 'import sys; print(sys.executable)'", why="check the run uses the virtualenv you installed into (a different python is the usual cause)"))
    evidence = _evidence(ev, package=package or "unknown", module=module or package or "unknown")
    return [Detection(ev.step, ev.step, evidence, None, tuple(fixes))]


# --------------------------------------------------------------------------------- download
@detector("crash-download", params=_MATCH_PARAMS, evidence=(*_BASE_EVIDENCE, "kind"))
def crash_download(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """A model or dataset could not be downloaded (no network, wrong id, gated or private repo)."""
    return _kind_detection(run, params, _download_kind)


def _download_kind(ev: LogEvent) -> tuple[str, list[Fix]]:
    """What kind of download failure ``ev`` is (authentication, not found, no connection), and its fixes."""
    low = ev.text.lower()
    code = event_code(ev)
    fixes: list[Fix] = []
    if code == "GatedRepoError" or "gated" in low or "401" in low or "403" in low or "unauthorized" in low:
        kind = "gated or private repository (authentication)"
        fixes.append(Fix(command="huggingface-cli login   # or: export HF_TOKEN=hf_...", why="a gated model (Llama, Gemma, Mistral) needs a token of an account that accepted its licence on its hub page"))
        fixes.append(Fix(command="open https://huggingface.co/MODEL_ID and accept the licence", why="a token alone is not enough until the licence is accepted (403)"))
    elif code in ("RepositoryNotFoundError", "HFValidationError", "DatasetNotFoundError", "RevisionNotFoundError", "EntryNotFoundError") or "not found" in low or "not a valid model identifier" in low:
        kind = "repository or file not found"
        fixes.append(Fix(key="model_name_or_path", value="ORG/NAME (as shown on the hub page)", why="the id is misspelt, the revision does not exist, or the repo is private (then log in: huggingface-cli login)"))
        fixes.append(Fix(command="huggingface-cli download ORG/NAME", why="check the id and your access outside the training run"))
    else:
        kind = "no connection to the Hub"
        fixes.append(Fix(command="huggingface-cli download ORG/NAME   # on a machine with network, then copy ~/.cache/huggingface", why="pre-download the model and dataset into the cache"))
        fixes.append(Fix(command="HF_HUB_OFFLINE=1 tuneterm train CONFIG", why="once cached, offline mode stops every network lookup"))
        fixes.append(Fix(command="export HF_ENDPOINT=https://your-mirror   # and check HTTPS_PROXY", why="behind a firewall the Hub is reached through a mirror or a proxy"))
    return kind, fixes


# ---------------------------------------------------------------------------------- signals
_SIGNAL_ADVICE: Mapping[str, tuple[str, tuple[Fix, ...]]] = {
    "SIGKILL": (
        "killed by SIGKILL: most often the kernel's out-of-memory killer (host RAM, not GPU memory), else kill -9 or a scheduler's hard limit",
        (
            Fix(command="dmesg -T | grep -i -E 'killed process|out of memory'", why="the kernel logs every OOM kill with the process and its memory"),
            Fix(key="dataloader_num_workers", value=0, why="each worker holds a copy of the dataset; fewer workers, less host RAM"),
            Fix(key="low_cpu_mem_usage", value=True, why="loads the checkpoint shard by shard instead of twice in RAM"),
            Fix(key="dataset_num_proc", value=1, why="dataset mapping processes multiply RAM use"),
        ),
    ),
    "SIGSEGV": (
        "a segmentation fault in native code (CUDA kernels, bitsandbytes, flash-attn, a tokenizer library)",
        (
            Fix(command="pip list 2>/dev/null | grep -i -E 'torch|bitsandbytes|flash|triton|deepspeed'", why="a compiled extension built for another torch/CUDA version is the usual cause"),
            Fix(command="python -X faulthandler train.py", why="prints the Python stack at the crash"),
        ),
    ),
    "SIGBUS": (
        "a bus error: usually /dev/shm too small for the data-loader workers (Docker's default is 64 MB)",
        (
            Fix(command="docker run --shm-size=16g ...   # or --ipc=host", why="shared memory for the data-loader workers"),
            Fix(key="dataloader_num_workers", value=0, why="no worker processes, no shared-memory transfers"),
        ),
    ),
    "SIGABRT": (
        "aborted by native code (a C++ exception: an NCCL watchdog timeout or a CUDA assert)",
        (
            Fix(command="CUDA_LAUNCH_BLOCKING=1 NCCL_DEBUG=INFO tuneterm train CONFIG", why="reports the failing kernel or collective where it happens"),
        ),
    ),
}


@detector("crash-signal", params=_MATCH_PARAMS, evidence=(*_BASE_EVIDENCE, "signal", "exit_code", "meaning"))
def crash_signal(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """The run was killed by a signal it did not ask for (SIGKILL, SIGSEGV, SIGBUS, SIGABRT ...).

    A run stopped on request (``tuneterm stop --force`` records ``stopped``) is not a crash.
    """
    if run.state == "stopped":
        return []
    ev = _crash(run, params)
    if ev is None:
        return []
    sig = event_code(ev)
    meaning, fixes = _SIGNAL_ADVICE.get(sig, (f"killed by {sig}", ()))
    evidence = _evidence(ev, signal=sig, exit_code=run.exit_code, meaning=meaning)
    return [Detection(ev.step, ev.step, evidence, None, fixes)]


# ------------------------------------------------------------------------------- vanished
@detector("run-vanished", params={}, evidence=("pid", "state", "step", "last_update"))
def run_vanished(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """The run's status says running but its process is gone and nothing recorded an end.

    Only the run-directory reader can tell (it checks the pid); it marks such a run's status
    ``died`` (:func:`tuneterm.runs.status.mark_died`).
    """
    status = run.status
    if status is None or status.state != "died":
        return []
    evidence = {
        "pid": status.pid,
        "state": status.recorded_state or "running",
        "step": run.last_step,
        "last_update": status.last_update,
    }
    return [Detection(run.last_step, run.last_step, evidence, Severity.ERROR)]


# -------------------------------------------------------------------------------- stalled
@detector(
    "run-stalled",
    params={
        "min_stall_s": Param("float", "shortest silence reported, seconds", min=0.0),
        "interval_factor": Param("float", "silence as a multiple of the run's logging interval", min=1.0),
    },
    evidence=("stalled_for", "stalled_s", "log_interval_s", "step", "pid"),
)
def run_stalled(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """A live run whose logs, metrics and checkpoints have not moved for far longer than its own
    logging rhythm (:mod:`tuneterm.runs.progress` records what moved and when).

    Fires when the silence is both long in absolute terms (``min_stall_s``, default 10 minutes:
    model loading, a long evaluation or a big checkpoint stay below it) and long against the run's
    own rhythm (``interval_factor`` logging intervals, default 20). Needs at least 3 logged
    training steps: before that, model loading and the first compiled steps have no rhythm to
    compare with. Only a live run on this host has progress recorded: an ended run cannot stall,
    and a run on another host cannot be seen.
    """
    status = run.status
    progress = status.progress if status is not None else None
    if progress is None or progress.log_interval_s is None:
        return []
    silent, interval = progress.silent_s, progress.log_interval_s
    threshold = max(float(params.get("min_stall_s", 600.0)), float(params.get("interval_factor", 20.0)) * interval)
    if silent < threshold:
        return []
    pid = status.worker_pid or status.pid
    evidence = {
        "stalled_for": fmt_duration(silent),
        "stalled_s": round(silent, 1),
        "log_interval_s": round(interval, 2),
        "step": run.last_step,
        "pid": pid,
    }
    fixes: list[Fix] = []
    if isinstance(pid, int):
        fixes.append(Fix(command=f"py-spy dump --pid {pid}", why="prints every thread's Python stack: shows the call it hangs in (pip install py-spy)"))
    return [Detection(run.last_step, run.last_step, evidence, Severity.WARNING, tuple(fixes))]
