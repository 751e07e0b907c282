"""A user's own training script with TunetermCallback attached (run as a subprocess by the tests).

``python -m tests.train.callback_script KIND LR RUNS_DIR NAME [--stop-on error] [--notify URL]
[--wandb] [--steps N] [--peft] [--no-samples] [--raise-at STEP] [--step-sleep S] [+ KIND LR ...]``;
KIND is ``hf`` (a plain transformers Trainer on the tokenized tiny chat data), ``sft`` (TRL's
SFTTrainer), ``dpo`` (DPOTrainer with LoRA on the shipped preference pairs) or ``grpo``
(GRPOTrainer with LoRA and the built-in length reward). The model is tuneterm's built-in tiny Llama;
no network. This is exactly what the README shows: the callback added to a trainer tuneterm did not
build.

Several scenarios separated by ``+`` are trained one after another in this one process, each with
its own model, trainer, ``TunetermCallback`` and run directory (a user script that trains several
models; it also saves the tests a process start of torch/transformers/TRL imports per run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def builtin_dir() -> Path:
    """Where tuneterm's shipped tiny datasets live."""
    from tuneterm.assets import builtin

    return Path(builtin.__file__).parent / "data"


def _texts() -> list[str]:
    path = builtin_dir() / "tiny_sft.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [" ".join(m["content"] for m in r["messages"]) for r in rows]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["hf", "sft", "dpo", "grpo"])
    ap.add_argument("lr", type=float)
    ap.add_argument("runs_dir")
    ap.add_argument("name")
    ap.add_argument("--stop-on", default="never")
    ap.add_argument("--notify", action="append", default=[])
    ap.add_argument("--wandb", action="store_true")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--peft", action="store_true")
    ap.add_argument("--no-samples", action="store_true")
    ap.add_argument("--raise-at", type=int, default=0, help="raise RuntimeError at this step (a crash)")
    ap.add_argument("--step-sleep", type=float, default=0.0, help="sleep after every step (a slow run)")
    return ap


def scenarios(argv: list[str]) -> list[argparse.Namespace]:
    """The scenarios of a command line: its arguments split on ``+``, each parsed on its own."""
    specs: list[list[str]] = [[]]
    for arg in argv:
        if arg == "+":
            specs.append([])
        else:
            specs[-1].append(arg)
    return [_parser().parse_args(spec) for spec in specs]


def main() -> None:
    for a in scenarios(sys.argv[1:]):
        train(a)


def train(a: argparse.Namespace) -> None:
    """Train one scenario with a fresh model, trainer and callback, as a user script would."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneterm import TunetermCallback
    from tuneterm.assets.builtin import resolve_model

    torch.manual_seed(0)
    path = resolve_model("tuneterm:tiny-llama")
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path)
    if a.peft:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    common = dict(
        output_dir=str(Path(a.runs_dir) / f".out-{a.name}"),
        max_steps=a.steps,
        per_device_train_batch_size=8,
        learning_rate=a.lr,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        report_to=["wandb"] if a.wandb else [],
        run_name=a.name,
        seed=42,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    cb = TunetermCallback(runs_dir=a.runs_dir, name=a.name, stop_on=a.stop_on, samples=not a.no_samples, notify=a.notify)
    texts = _texts()
    if a.kind == "hf":
        from transformers import (
            DataCollatorForLanguageModeling,
            Trainer,
            TrainingArguments,
        )

        ds = Dataset.from_dict({"text": texts}).map(
            lambda b: tok(b["text"], truncation=True, max_length=64), batched=True, remove_columns=["text"]
        )
        trainer = Trainer(
            model=model,
            args=TrainingArguments(**common),
            train_dataset=ds,
            data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
        )
    elif a.kind == "sft":
        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**common, max_length=64, bf16=False),
            train_dataset=Dataset.from_dict({"text": texts}),
            processing_class=tok,
        )
    else:
        from peft import LoraConfig

        lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")
        data = Path(builtin_dir()) / ("tiny_dpo.jsonl" if a.kind == "dpo" else "tiny_prompts.jsonl")
        rows = Dataset.from_json(str(data))
        if a.kind == "dpo":
            from trl import DPOConfig, DPOTrainer

            trainer = DPOTrainer(model=model, args=DPOConfig(**common, max_length=128, bf16=False, beta=0.1),
                                 train_dataset=rows, processing_class=tok, peft_config=lora)
        else:
            from trl import GRPOConfig, GRPOTrainer

            from tuneterm.train.rewards import length_reward

            common["per_device_train_batch_size"] = 8
            trainer = GRPOTrainer(model=model, reward_funcs=[length_reward],
                                  args=GRPOConfig(**common, num_generations=4, max_completion_length=16, beta=0.0, bf16=False),
                                  train_dataset=rows, processing_class=tok, peft_config=lora)
    trainer.add_callback(cb)
    if a.step_sleep:
        import time

        from transformers import TrainerCallback

        class Slow(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == 3:
                    Path(a.runs_dir, f"{a.name}.step3").touch()
                time.sleep(a.step_sleep)

        trainer.add_callback(Slow())
    if a.raise_at:
        from transformers import TrainerCallback

        class Crash(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == a.raise_at:
                    raise RuntimeError(f"injected failure at step {state.global_step}")

        trainer.add_callback(Crash())
    trainer.train()
    if a.wandb:
        import wandb

        # The transformers integration leaves its W&B run open until the process exits; a script
        # that trains several models ends each one's run itself (W&B's advice for several runs
        # in one process), so the next training is not logged into it.
        wandb.finish()
    print(f"TRAINED {trainer.state.global_step} {os.fspath(cb.run_dir)}", flush=True)


if __name__ == "__main__":
    main()
