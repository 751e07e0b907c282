"""TunetermCallback through Axolotl's own plugin manager (where Axolotl is installed).

Axolotl is not part of tuneterm's test environment (it pins other transformers/TRL/peft releases;
see docs/callback.md). Where it is importable, this loads the documented plugin by import path
with Axolotl's ``PluginManager`` exactly as ``axolotl train`` does for ``plugins:``, collects the
callbacks with ``add_callbacks_post_trainer`` (what its trainer builder calls) and trains a real
tiny transformers Trainer with them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.train.conftest import needs_trl

pytestmark = [pytest.mark.slow, pytest.mark.train, needs_trl]


def test_axolotl_plugin_manager_adds_the_callback(tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = pytest.importorskip("axolotl.integrations.base", reason="Axolotl is not installed here")
    from axolotl.utils.dict import DictDefault
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    monkeypatch.chdir(tmp_path)
    manager = base.PluginManager.get_instance()
    manager.register("tests.train.axolotl_plugin.TunetermPlugin")
    cfg = DictDefault({"plugins": ["tests.train.axolotl_plugin.TunetermPlugin"], "output_dir": str(tmp_path / "out"), "tuneterm_name": "axo"})
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.pad_token = tok.pad_token or tok.eos_token
    ds = Dataset.from_dict({"text": ["the cat sat on the mat"] * 32}).map(lambda b: tok(b["text"]), batched=True, remove_columns=["text"])
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=6, logging_steps=1, learning_rate=1e-3,
                             per_device_train_batch_size=4, report_to=[], save_strategy="no", use_cpu=True)
    trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args, train_dataset=ds,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
    for cb in manager.add_callbacks_post_trainer(cfg, trainer):
        trainer.add_callback(cb)
    trainer.train()
    run = tmp_path / "out" / "runs" / "axo"
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert len((run / "metrics.jsonl").read_text().splitlines()) >= 6
