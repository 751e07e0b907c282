"""Generate the sample runs shipped for ``tuneterm doctor --demo`` and the TUI's demo.

Run from the repository root (the output is committed; rerunning reproduces it byte for byte)::

    python tuneterm/samples/make_samples.py

Two HF-style output directories, both written with a seeded RNG (seed 1234):

``qlora-undertrained/``
    A QLoRA SFT run (Llama-style, r=16/alpha 32, nf4) that learned nothing.
    500 steps at per-device batch 1 x gradient accumulation 8 over ~45,000 examples (epoch 0.089
    at the end), loss 2.7335 -> 2.7150 (0.68%), grad_norm 0.0 throughout, cosine LR 5e-5 ->
    ~5e-10, eval loss 2.9310 at steps 150, 300 and 450. Files: ``trainer_state.json``,
    ``adapter_config.json``, ``config.json`` (vocab 32000) and ``training_config.yaml``.

``grpo-no-signal/``
    A GRPO run (TRL 1.x metric names) that gets no learning signal: most steps
    have reward 0, reward_std 0 and frac_reward_zero_std 1 (every group scored the same), the
    completions are cut at max_completion_length 256, and the reward stays flat. Files:
    ``trainer_state.json`` and ``grpo_config.yaml``.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEED = 1234


def _dump(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def qlora_undertrained(rng: random.Random) -> None:
    """Write ``qlora-undertrained/``."""
    out = HERE / "qlora-undertrained"
    steps, log_every, epoch_end = 500, 25, 0.089
    history: list[dict[str, Any]] = []
    n = steps // log_every
    for i in range(1, n + 1):
        step = i * log_every
        t = (i - 1) / (n - 1)
        loss = 2.7335 + (2.7150 - 2.7335) * t
        if 1 < i < n:  # a little logging noise, ends pinned to the seed's numbers
            loss += rng.uniform(-0.002, 0.002)
        lr = 5e-10 + (5e-5 - 5e-10) * (1 + math.cos(math.pi * step / steps)) / 2
        history.append(
            {
                "epoch": round(epoch_end * step / steps, 6),
                "grad_norm": 0.0,
                "learning_rate": lr,
                "loss": round(loss, 4),
                "mean_token_accuracy": round(0.452 + 0.008 * t, 4),
                "num_tokens": float(step * 8 * 512),
                "step": step,
            }
        )
        if step in (150, 300, 450):
            history.append(
                {
                    "epoch": round(epoch_end * step / steps, 6),
                    "eval_loss": 2.931,
                    "eval_mean_token_accuracy": 0.455,
                    "eval_runtime": 41.2,
                    "eval_samples_per_second": 24.27,
                    "eval_steps_per_second": 3.03,
                    "step": step,
                }
            )
    history.append(
        {
            "epoch": epoch_end,
            "step": steps,
            "total_flos": 1.2e16,
            "train_loss": 2.7213,
            "train_runtime": 812.4,
            "train_samples_per_second": 4.92,
            "train_steps_per_second": 0.615,
        }
    )
    _dump(
        out / "trainer_state.json",
        {
            "best_global_step": None,
            "best_metric": None,
            "best_model_checkpoint": None,
            "epoch": epoch_end,
            "eval_steps": 150,
            "global_step": steps,
            "is_hyper_param_search": False,
            "is_local_process_zero": True,
            "is_world_process_zero": True,
            "log_history": history,
            "logging_steps": log_every,
            "max_steps": steps,
            "num_input_tokens_seen": 0,
            "num_train_epochs": 1,
            "save_steps": 500,
            "total_flos": 1.2e16,
            "train_batch_size": 1,
            "trial_name": None,
            "trial_params": None,
        },
    )
    _dump(
        out / "adapter_config.json",
        {
            "base_model_name_or_path": "meta-llama/Llama-2-7b-hf",
            "bias": "none",
            "lora_alpha": 32,
            "lora_dropout": 0.05,
            "peft_type": "LORA",
            "r": 16,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
            "task_type": "CAUSAL_LM",
            "use_dora": False,
        },
    )
    _dump(
        out / "config.json",
        {
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": 4096,
            "model_type": "llama",
            "num_attention_heads": 32,
            "num_hidden_layers": 32,
            "quantization_config": {
                "bnb_4bit_compute_dtype": "bfloat16",
                "bnb_4bit_quant_type": "nf4",
                "bnb_4bit_use_double_quant": True,
                "load_in_4bit": True,
                "quant_method": "bitsandbytes",
            },
            "torch_dtype": "bfloat16",
            "vocab_size": 32000,
        },
    )
    (out / "training_config.yaml").write_text(
        "# SFTConfig of the run (TRL field names), as launched.\n"
        "model_name_or_path: meta-llama/Llama-2-7b-hf\n"
        "learning_rate: 5.0e-5\n"
        "lr_scheduler_type: cosine\n"
        "per_device_train_batch_size: 1\n"
        "gradient_accumulation_steps: 8\n"
        "max_steps: 500\n"
        "logging_steps: 25\n"
        "eval_steps: 150\n"
        "gradient_checkpointing: true\n"
        "bf16: true\n"
        "max_grad_norm: 0.3\n"
        "use_peft: true\n"
        "lora_r: 16\n"
        "lora_alpha: 32\n"
        "load_in_4bit: true\n",
        encoding="utf-8",
    )


def grpo_no_signal(rng: random.Random) -> None:
    """Write ``grpo-no-signal/``."""
    out = HERE / "grpo-no-signal"
    steps, cap = 120, 256
    history: list[dict[str, Any]] = []
    for step in range(1, steps + 1):
        alive = rng.random() < 0.15  # a few groups where one completion happened to score
        reward = 0.125 if alive else 0.0
        reward_std = 0.3536 if alive else 0.0
        frac = 0.75 if alive else 1.0
        clipped = 1.0 if rng.random() < 0.85 else 0.875
        mean_len = cap * clipped + (1 - clipped) * rng.uniform(180, 240)
        lr = 1e-6 * (1 - (step - 1) / steps)
        history.append(
            {
                "clip_ratio/high_max": 0.0,
                "clip_ratio/high_mean": 0.0,
                "clip_ratio/low_mean": 0.0,
                "clip_ratio/low_min": 0.0,
                "clip_ratio/region_mean": 0.0,
                "completions/clipped_ratio": clipped,
                "completions/max_length": float(cap),
                "completions/max_terminated_length": 0.0 if clipped == 1.0 else 231.0,
                "completions/mean_length": round(mean_len, 2),
                "completions/mean_terminated_length": 0.0 if clipped == 1.0 else 212.0,
                "completions/min_length": float(cap) if clipped == 1.0 else 198.0,
                "completions/min_terminated_length": 0.0 if clipped == 1.0 else 198.0,
                "entropy": round(rng.uniform(0.55, 0.65), 4),
                "epoch": round(step / 240, 6),
                "frac_reward_zero_std": frac,
                "grad_norm": round(rng.uniform(0.02, 0.08), 5) if alive else 0.0,
                "learning_rate": lr,
                "loss": round(rng.uniform(-0.01, 0.01), 5) if alive else 0.0,
                "num_tokens": float(step * 8 * (cap + 180)),
                "reward": reward,
                "reward_std": reward_std,
                "rewards/accuracy_reward/mean": reward,
                "rewards/accuracy_reward/std": reward_std,
                "step": step,
                "step_time": round(rng.uniform(11.0, 13.0), 3),
            }
        )
    history.append({"epoch": round(steps / 240, 6), "step": steps, "train_loss": 0.0003, "train_runtime": 1450.2})
    _dump(
        out / "trainer_state.json",
        {
            "best_global_step": None,
            "best_metric": None,
            "best_model_checkpoint": None,
            "epoch": round(steps / 240, 6),
            "eval_steps": 500,
            "global_step": steps,
            "is_hyper_param_search": False,
            "is_local_process_zero": True,
            "is_world_process_zero": True,
            "log_history": history,
            "logging_steps": 1,
            "max_steps": steps,
            "num_train_epochs": 1,
            "save_steps": 500,
            "total_flos": 0.0,
            "train_batch_size": 8,
            "trial_name": None,
            "trial_params": None,
        },
    )
    (out / "grpo_config.yaml").write_text(
        "# GRPOConfig of the run (TRL field names), as launched.\n"
        "model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct\n"
        "learning_rate: 1.0e-6\n"
        "per_device_train_batch_size: 8\n"
        "num_generations: 8\n"
        f"max_completion_length: {cap}\n"
        "max_steps: 120\n"
        "logging_steps: 1\n"
        "beta: 0.0\n"
        "bf16: true\n",
        encoding="utf-8",
    )


def main() -> None:
    """Regenerate both sample runs."""
    rng = random.Random(SEED)
    qlora_undertrained(rng)
    grpo_no_signal(rng)


if __name__ == "__main__":
    main()
