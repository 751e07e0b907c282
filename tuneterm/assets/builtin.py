"""The built-in tiny model and datasets: train anywhere, with no GPU, no network and no download.

tuneterm names its built-in assets with a ``tuneterm:`` prefix, which can never be a Hugging Face
Hub id (hub ids have no colon) nor, in practice, a local path:

``model_name_or_path: tuneterm:tiny-llama``
    A random-weight Llama (``LlamaConfig``: hidden 64, 2 layers, 4 heads, intermediate 128) with a
    BPE tokenizer trained in about a second by the ``tokenizers`` library over the shipped SFT data.
    The tokenizer has a chat template (``<|user|>...<|end|><|assistant|>...<|end|>``), ``<|end|>`` as
    eos and a distinct ``<|pad|>``. Both are written once with ``save_pretrained`` into the cache
    directory (:func:`cache_dir`) and loaded from that path like any local model, so every trainer
    code path (TRL's own ``from_pretrained`` by path, PEFT, bitsandbytes) is the real one.

``dataset_name: tuneterm:tiny-sft`` (conversational ``messages``; 84 rows),
``tuneterm:tiny-dpo`` (conversational ``prompt``/``chosen``/``rejected``; 63 rows),
``tuneterm:tiny-prompts`` (conversational ``prompt`` for GRPO; 56 rows),
``tuneterm:tiny-prompt-output`` (``prompt``/``output``), ``tuneterm:tiny-instructions``
(``instruction``/``input``/``response``), ``tuneterm:tiny-sharegpt`` (``conversations`` of
``from``/``value`` turns): the shapes of the multi-stage recipes in ``configs/``
    JSONL files in ``tuneterm/assets/data/``, loaded through ``datasets`` as a ``DatasetDict`` with a
    ``train`` split and a ``test`` split (the last eighth of the rows), so ``eval_strategy`` works.

Only :func:`resolve_model` and :func:`load_builtin_dataset` import the training stack, lazily. The
names, the shipped files and whether the model is built are in :mod:`tuneterm.assets.names`, which
imports nothing heavy (the planner reads the built model's config.json through it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneterm.assets.names import (  # re-exported: the names are part of this module's API
    DATA_DIR,
    DATASETS,
    PREFIX,
    TINY_MODEL,
    built_model_dir,
    data_path,
    is_builtin,
    model_dir,
)
from tuneterm.errors import ConfigError
from tuneterm.resources import cache_dir  # re-exported: built assets live in the cache directory

__all__ = [
    "DATASETS", "PREFIX", "TINY_MODEL", "built_model_dir", "cache_dir", "data_path", "is_builtin",
    "build_tiny_model", "describe", "load_builtin_dataset", "model_dir", "resolve_model",
]

if TYPE_CHECKING:
    from datasets import DatasetDict

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ("<|pad|>", "<|unk|>", "<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>")


def resolve_model(name: str) -> str:
    """Map a model name to what ``from_pretrained`` should load: built-ins become a local path.

    Hub ids and paths are returned unchanged. Building the tiny model takes about a second and
    happens once per cache directory; concurrent builders (two DDP ranks, parallel tests) each build
    into a private temporary directory and the first atomic rename wins.

    Raises:
        ConfigError: an unknown ``tuneterm:`` name.
    """
    if not is_builtin(name):
        return name
    if name != TINY_MODEL:
        raise ConfigError(f"unknown built-in model {name!r} (known: {TINY_MODEL})")
    target = model_dir()
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-llama-", dir=target.parent))
    try:
        build_tiny_model(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race; its copy is identical
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _training_texts() -> list[str]:
    import json

    texts: list[str] = []
    # The tokenizer is trained on the first three sets only: adding a data set must not change the
    # tiny model (its cache key is _BUILD_VERSION).
    for fname in ("tiny_sft.jsonl", "tiny_dpo.jsonl", "tiny_prompts.jsonl"):
        with open(DATA_DIR / fname, encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                for key in ("messages", "prompt", "chosen", "rejected"):
                    for msg in row.get(key) or ():
                        texts.append(msg["content"])
    return texts


def build_tiny_model(out: Path, *, vocab_size: int = 512, seed: int = 0) -> None:
    """Train the tiny tokenizer and write it with a random tiny Llama to ``out`` (save_pretrained).

    Deterministic for a given ``seed``: the same weights every build.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    tok = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_texts(), trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
        unk_token="<|unk|>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.model_max_length = 512
    hf_tok.save_pretrained(out)

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=hf_tok.bos_token_id,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(
        bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id
    )
    model.save_pretrained(out)


def load_builtin_dataset(name: str) -> DatasetDict:
    """Load built-in dataset ``name`` as a ``DatasetDict`` with ``train`` and ``test`` splits."""
    from datasets import DatasetDict, load_dataset

    ds = load_dataset("json", data_files=str(data_path(name)), split="train")
    n_test = max(1, len(ds) // 8)
    return DatasetDict(
        train=ds.select(range(len(ds) - n_test)), test=ds.select(range(len(ds) - n_test, len(ds)))
    )


def describe() -> dict[str, Any]:
    """Names of the built-ins, for ``--help`` texts and docs."""
    return {"models": [TINY_MODEL], "datasets": sorted(DATASETS)}
