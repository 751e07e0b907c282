"""The trainers and methods tuneterm launches and plans for, defined once for every layer.

``logs.model.TrainerKind`` is wider: a log may come from a classifier or an unknown trainer.
"""

from __future__ import annotations

from typing import Literal

Trainer = Literal["sft", "dpo", "grpo"]
Method = Literal["full", "lora", "qlora", "dora"]

TRAINERS: tuple[Trainer, ...] = ("sft", "dpo", "grpo")
"""The TRL trainers ``tuneterm train`` runs (``--trainer`` values)."""

METHODS: tuple[Method, ...] = ("full", "lora", "qlora", "dora")
"""Fine-tuning methods: all weights, LoRA, LoRA on a 4-bit base (QLoRA), DoRA."""
