"""The TRL runner: build the SFT/DPO/GRPO trainer a run directory describes, and train.

Runs inside the training process (:mod:`tuneterm.train.worker`), once per rank. It follows TRL's own
``trl sft|dpo|grpo`` scripts (same dataclasses, same ``model_init_kwargs``, same
``get_peft_config``/``get_quantization_config``), adding what tuneterm needs: built-in model and
dataset names, local data files by extension, the run-directory callback, samples prompts, and the
test-only fault hook (:mod:`tuneterm.train.faults`).

Datasets (``dataset_name``), in this order:

* ``tuneterm:tiny-sft`` / ``tuneterm:tiny-dpo`` / ``tuneterm:tiny-prompts``: shipped JSONL;
* a local file ending in ``.jsonl``, ``.json``, ``.csv``, ``.parquet`` (or ``.pq``): loaded with the
  matching ``datasets`` builder;
* a local directory: ``datasets.load_dataset(path)`` (a saved dataset repo or data files);
* anything else: a hub id, ``datasets.load_dataset(name, name=dataset_config)``;
* or TRL's ``datasets:`` mixture list (``trl.get_dataset``).

When evaluation is on (``eval_strategy`` other than ``no``) and the data has no
``dataset_test_split`` split, a tenth of the training rows (at least one) is held out with a fixed
seed, rather than failing with a ``KeyError`` as the TRL script would.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tuneterm.errors import ConfigError
from tuneterm.assets import builtin
from tuneterm.kinds import Trainer
from tuneterm.runs.layout import RunDir
from tuneterm.runs.writer import now_iso
from tuneterm.train.config import instantiate
from tuneterm.train.workers import WorkerReporter

_LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_DEFAULT_PROMPTS = ("Write one sentence about a river.", "What is 2 plus 3?", "Tell me a short story.")


class StopRequest:
    """SIGTERM handling for the training process: the first SIGTERM asks for a graceful stop (the
    callback ends training at the next step end); another SIGTERM at least 2 s later kills the
    process (a second one within 2 s is the same request delivered twice: to the process group and
    forwarded by the supervisor)."""

    def __init__(self) -> None:
        self.requested_at: float | None = None

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.requested_at is None:
            self.requested_at = now
            print("tuneterm: stop requested (SIGTERM); stopping at the end of this step", file=sys.stderr, flush=True)
            return
        if now - self.requested_at >= 2.0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    def __call__(self) -> bool:
        return self.requested_at is not None


def load_data(script_args: Any, dataset_args: Any, eval_on: bool) -> Any:
    """Load the training data as a ``DatasetDict`` (see the module docstring for the order)."""
    from datasets import DatasetDict, load_dataset

    name = script_args.dataset_name
    if getattr(dataset_args, "datasets", None):
        from trl import get_dataset

        data = get_dataset(dataset_args)
    elif builtin.is_builtin(name):
        data = builtin.load_builtin_dataset(name)
    elif name and Path(name).suffix.lower() in _LOCAL_BUILDERS and Path(name).is_file():
        data = load_dataset(_LOCAL_BUILDERS[Path(name).suffix.lower()], data_files=name)
    elif name and Path(name).suffix.lower() in _LOCAL_BUILDERS and not Path(name).exists() and "/" in name and Path(name).parent.exists():
        raise ConfigError(f"dataset file {name!r} does not exist")
    else:
        data = load_dataset(name, name=script_args.dataset_config, streaming=script_args.dataset_streaming)
    if not isinstance(data, dict) and not isinstance(data, DatasetDict):
        data = DatasetDict(train=data)
    train_split, test_split = script_args.dataset_train_split, script_args.dataset_test_split
    if train_split not in data:
        raise ConfigError(f"dataset {name!r} has no split {train_split!r} (splits: {', '.join(data)})")
    if eval_on and test_split not in data:
        ds = data[train_split]
        n_test = max(1, len(ds) // 10)
        parts = ds.train_test_split(test_size=n_test, seed=0)
        data = DatasetDict({train_split: parts["train"], test_split: parts["test"]})
    return data


def sample_prompts(dataset: Any, tokenizer: Any, k: int = 3) -> list[Any]:
    """Up to ``k`` fixed prompts for samples.jsonl: the first rows of ``dataset`` (the first user
    turn of ``messages``, or ``prompt``), rendered with the chat template when there is one."""
    from tuneterm.train.callback import SamplePrompt

    out: list[SamplePrompt] = []
    rows = []
    try:
        rows = [dataset[i] for i in range(min(len(dataset), 50))]
    except TypeError:  # streaming dataset: no len()
        rows = []
    seen: set[str] = set()
    template = getattr(tokenizer, "chat_template", None)
    for row in rows:
        msgs: list[dict[str, Any]] | None = None
        text: str | None = None
        if isinstance(row.get("messages"), list):
            msgs = []
            for m in row["messages"]:
                if m.get("role") == "assistant":
                    break
                msgs.append(m)
        elif isinstance(row.get("prompt"), list):
            msgs = row["prompt"]
        elif isinstance(row.get("prompt"), str):
            text = row["prompt"]
        elif isinstance(row.get("text"), str):
            text = row["text"][:200]
        if msgs:
            shown = str(msgs[-1].get("content", ""))
            if template:
                rendered = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            else:
                rendered = shown
        elif text:
            shown = rendered = text
        else:
            continue
        if shown in seen:
            continue
        seen.add(shown)
        out.append(SamplePrompt(shown=shown, text=rendered))
        if len(out) >= k:
            break
    if not out:
        for p in _DEFAULT_PROMPTS[:k]:
            rendered = (
                tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                if template
                else p
            )
            out.append(SamplePrompt(shown=p, text=rendered))
    return out


def build_trainer(rd: RunDir, stop: StopRequest, reporter: WorkerReporter | None = None) -> Any:
    """Construct the TRL trainer for run directory ``rd`` with tuneterm's callbacks attached."""
    launch = rd.read_launch()
    trainer_kind: Trainer = launch["trainer"]
    with open(rd.config, encoding="utf-8") as fh:
        values = yaml.safe_load(fh) or {}
    # TRL's CLI config may carry an `env:` mapping of environment variables; TrlParser applies it
    # and does not pass it on, and its dataclasses reject it as an unknown key. Do the same.
    env = values.pop("env", None)
    if isinstance(env, dict):
        os.environ.update({str(k): str(v) for k, v in env.items()})
    model_name = values.get("model_name_or_path")
    values["model_name_or_path"] = builtin.resolve_model(model_name)
    if _world_size() > 1 and not values.get("use_cpu"):
        import torch

        if not torch.cuda.is_available():
            # Several ranks and no GPU: accelerate only forms a gloo process group when told the
            # run is on CPU; otherwise every rank would train alone as its own "rank 0".
            values["use_cpu"] = True
    script_args, training_args, model_args, dataset_args = instantiate(values, trainer_kind, source=str(rd.config))

    from trl import get_peft_config, get_quantization_config

    model_init_kwargs: dict[str, Any] = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,  # False unless the config sets it
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    if training_args.model_init_kwargs is not None:
        model_init_kwargs.update(training_args.model_init_kwargs)
    training_args.model_init_kwargs = model_init_kwargs

    eval_on = str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no"
    data = load_data(script_args, dataset_args, eval_on)
    from tuneterm.train.data_prepare import prepare  # instruction/prompt-output/ShareGPT rows, templates

    data = prepare(data, launch.get("data"), model_args.model_name_or_path)
    train_ds = data[script_args.dataset_train_split]
    eval_ds = data[script_args.dataset_test_split] if eval_on else None

    common: dict[str, Any] = dict(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    if launch.get("init_adapter"):  # a pipeline stage with merge: false continues the previous adapter
        from tuneterm.train.stage_model import load_adapter_model

        common["model"] = load_adapter_model(
            model_args.model_name_or_path, str(launch["init_adapter"]), model_init_kwargs, common["quantization_config"]
        )
        common.update(peft_config=None, quantization_config=None)
        training_args.model_init_kwargs = None
    if trainer_kind == "sft":
        from trl import SFTTrainer

        trainer = SFTTrainer(**common)
    elif trainer_kind == "dpo":
        from trl import DPOTrainer

        trainer = DPOTrainer(**common)
    else:
        from trl import GRPOTrainer

        from tuneterm.train.rewards import resolve_reward_funcs

        funcs: list[Any] = []
        if script_args.reward_model_name_or_path:
            funcs.append(script_args.reward_model_name_or_path)
        funcs += resolve_reward_funcs(script_args.reward_funcs or [], cwd=launch.get("cwd"))
        trainer = GRPOTrainer(reward_funcs=funcs, **common)

    from tuneterm.train.callback import TunetermCallback
    from tuneterm.train.faults import faults_from_env, make_fault_callback

    tokenizer = trainer.processing_class
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor wraps its tokenizer
    off: str | None = None
    if training_args.fsdp or getattr(training_args, "deepspeed", None):
        off = "sharded training (FSDP/DeepSpeed): generation would need every rank"
    sample_every = int(launch.get("sample_every") or 0)
    max_steps = trainer.args.max_steps
    if sample_every <= 0:
        total = max_steps if max_steps and max_steps > 0 else _estimated_steps(trainer)
        sample_every = max(1, total // 4) if total else 100
    on_gpu = training_args.device.type == "cuda"
    cb = TunetermCallback(
        rd,
        tokenizer=tokenizer,
        prompts=sample_prompts(train_ds, tokenizer),
        sample_every=sample_every,
        max_new_tokens=64 if on_gpu else 24,
        stop_flag=stop,
        samples_off_reason=off,
        reporter=reporter,
    )
    trainer.add_callback(cb)
    faults = faults_from_env()
    if faults:
        trainer.add_callback(make_fault_callback(faults, writer=cb))
    return trainer


def _world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _estimated_steps(trainer: Any) -> int | None:
    try:
        n = len(trainer.get_train_dataloader())
    except Exception:  # noqa: BLE001 - an iterable dataset has no length
        return None
    ga = max(1, int(trainer.args.gradient_accumulation_steps))
    return int(max(1, n // ga) * float(trainer.args.num_train_epochs))


def train(rd: RunDir, reporter: WorkerReporter | None = None) -> str:
    """Build the trainer, train, save the model; returns the final state (finished or stopped).

    ``reporter`` records this process's own progress and end (``worker-<rank>.json``).
    Exceptions propagate to :mod:`tuneterm.train.worker`, which records them.
    """
    stop = StopRequest()
    stop.install()
    trainer = build_trainer(rd, stop, reporter)
    is_main = trainer.is_world_process_zero()
    if stop():
        return "stopped"
    trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    if stop():
        final = "stopped"
    else:
        trainer.save_model(trainer.args.output_dir)
        final = "finished"
    step = int(trainer.state.global_step)
    if is_main:
        fields: dict[str, Any] = {"state": final, "ended": now_iso(), "step": step}
        if final == "stopped":
            fields["error"] = "stopped on request"
            fields["stop_requested"] = True
        if reporter is not None and reporter.supervisor_lost:
            # Nobody else will record this run's end: the supervisor is gone.
            fields["exit_code"] = 0
        rd.update_status(**fields)
    if reporter is not None:  # after status.json: a reader never sees an ended worker and a live status
        reporter.end(final, step=step, exit_code=0, error="stopped on request" if final == "stopped" else None)
    if _world_size() > 1 and not is_main:
        # Non-main ranks of a multi-process run are done once the model is saved (save_model ends
        # with a barrier). Freeing the trainer runs the gloo process group's destructor, which can
        # deadlock (it waits on a thread that needs the lock it holds; seen with gdb on torch 2.13
        # CPU runs), so leave without tearing anything down: rank 0 owns the run's records.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    end = getattr(trainer, "end", None)
    if callable(end):  # transformers >= 5.18: finish trackers, destroy the process group
        try:
            end()
        except Exception:  # noqa: BLE001, S110 - teardown trouble must not turn a finished run into a failure
            pass
    return final
