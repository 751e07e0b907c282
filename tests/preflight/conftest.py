"""Fixtures for the dataset pre-flight tests: real tokenizers trained locally, and dataset writers.

The tokenizers are byte-level BPE models trained with the ``tokenizers`` library on a few hundred
sentences (under a second), wrapped in ``PreTrainedTokenizerFast`` with real special tokens and a
chat template, and saved with ``save_pretrained`` -- exactly what ``--model DIR`` loads. Nothing is
downloaded. Built once per session.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# ChatML without generation markers (assistant-only loss finds no assistant tokens).
CHATML_PLAIN = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# A template whose turns end without any end-of-turn/EOS token.
NO_EOS_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_WORDS = (
    "the model learns to answer questions about data training loss gradient token sequence length "
    "paris france capital blue sky sun answer question summary report please explain why how what "
    "one two three four five six seven eight nine ten hello world python code function return value"
).split()


def _corpus() -> list[str]:
    import random

    rng = random.Random(0)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 30))) for _ in range(600)]


def build_tokenizer(
    directory: Path,
    *,
    specials: list[str],
    bos: str | None,
    eos: str | None,
    pad: str | None,
    template: str | None,
    add_bos: bool = False,
    model_type: str | None = None,
) -> Path:
    """Train a byte-level BPE tokenizer, wrap it, save it to ``directory``; return the directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_corpus(), trainer)
    if add_bos and bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad)
    if template is not None:
        fast.chat_template = template
    directory.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(directory))
    if model_type:
        (directory / "config.json").write_text(json.dumps({"model_type": model_type}), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def tokenizers_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Local tokenizer directories by name: chatml, chatml_plain, llama3, base, pad_eos, no_eos, chatml_on_llama3."""
    root = tmp_path_factory.mktemp("tokenizers")
    chatml = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    llama3 = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
              "<|finetune_right_pad_id|>"]
    return {
        "chatml": build_tokenizer(root / "chatml", specials=chatml, bos=None, eos="<|im_end|>", pad="<pad>",
                                  template=CHATML_TEMPLATE, model_type="qwen2"),
        "chatml_plain": build_tokenizer(root / "chatml_plain", specials=chatml, bos=None, eos="<|im_end|>",
                                        pad="<pad>", template=CHATML_PLAIN),
        "qwen_base": build_tokenizer(root / "qwen_base", specials=chatml, bos=None, eos="<|endoftext|>", pad="<pad>",
                                     template=CHATML_PLAIN, model_type="qwen2"),
        "llama3": build_tokenizer(root / "llama3", specials=llama3, bos="<|begin_of_text|>", eos="<|eot_id|>",
                                  pad="<|finetune_right_pad_id|>", template=LLAMA3_TEMPLATE, add_bos=True,
                                  model_type="llama"),
        "chatml_on_llama3": build_tokenizer(root / "chatml_on_llama3", specials=llama3, bos="<|begin_of_text|>",
                                            eos="<|eot_id|>", pad="<|finetune_right_pad_id|>",
                                            template=CHATML_TEMPLATE, add_bos=True, model_type="llama"),
        "base": build_tokenizer(root / "base", specials=["<s>", "</s>", "<unk>", "<pad>"], bos="<s>", eos="</s>",
                                pad="<pad>", template=None, add_bos=True),
        "pad_eos": build_tokenizer(root / "pad_eos", specials=["<s>", "</s>", "<unk>"], bos="<s>", eos="</s>",
                                   pad="</s>", template=None, add_bos=True),
        "no_eos": build_tokenizer(root / "no_eos", specials=chatml, bos=None, eos="<|im_end|>", pad="<pad>",
                                  template=NO_EOS_TEMPLATE),
    }


def write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    """Write one JSON value per line (values that are already strings are written verbatim)."""
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


@pytest.fixture
def jsonl(tmp_path: Path) -> Callable[..., Path]:
    """``jsonl(rows, name="data.jsonl") -> Path``: write rows to a JSONL file in tmp_path."""

    def make(rows: Iterable[Any], name: str = "data.jsonl") -> Path:
        return write_jsonl(tmp_path / name, rows)

    return make


def sentence(i: int, n: int = 12) -> str:
    """A distinct, deterministic sentence of ``n`` words (distinct rows never look duplicated)."""
    import random

    rng = random.Random(i * 7919 + n)
    return " ".join(rng.choice(_WORDS) for _ in range(n)) + f" number {i}"
