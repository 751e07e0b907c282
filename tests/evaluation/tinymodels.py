"""Tiny real models for the eval tests, trained on CPU in seconds with plain torch loops.

* ``base``: the built-in tiny Llama (:func:`tuneterm.assets.builtin.build_tiny_model`: hidden 64,
  2 layers, BPE tokenizer with a chat template) pretrained briefly on *general* text: the bundled
  probe prompts with their answers and the general-text passages. It "knows" the general prompts,
  so forgetting them is measurable.
* ``adapter``: a LoRA adapter (peft) trained on the task ("What colour is the X?" -> "The X is
  Y.") over ``base``: the model trained to answer the task.
* ``collapsed``: ``base`` with its output pinned to one word (what a learning rate ~1000x too high
  leaves behind: loops, exploding perplexity), saved as a merged model directory. Its behaviour is
  set by its weights, not by training, so it is the same under any library version.

The task data is written as ``train.jsonl`` and ``test.jsonl`` (messages format); held-out objects
never occur in the training file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tuneterm.evaluation.probes import load_probes

OBJECTS = [
    "apple", "banana", "cherry", "lemon", "grape", "carrot", "tomato", "pepper", "leaf", "rose",
    "sky", "sea", "cloud", "snow", "coal", "milk", "grass", "brick", "gold", "silver",
    "orange", "plum", "lime", "mango", "olive", "pearl", "ruby", "jade", "ink", "salt",
    "pumpkin", "peach", "violet", "lily", "pine", "oak", "moss", "sand", "clay", "rust",
    "cocoa", "honey", "cream", "smoke", "ash", "berry", "melon", "kiwi", "fig", "date",
]
COLOURS = ["red", "yellow", "green", "blue", "white", "black", "brown", "purple", "orange", "grey"]


def task_rows(seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, test) rows of the colour task; test objects are disjoint from train objects."""
    rng = random.Random(seed)
    objs = OBJECTS[:]
    rng.shuffle(objs)
    rows = []
    for o in objs:
        c = rng.choice(COLOURS)
        rows.append({"messages": [{"role": "user", "content": f"What colour is the {o}?"},
                                  {"role": "assistant", "content": f"The {o} is {c} in colour."}]})
    return rows[:36], rows[36:]


def _general_pairs() -> list[tuple[str, str]]:
    ps = load_probes("general")
    pairs = []
    for p in ps.prompts:
        if p.answers:
            ans = p.answers[0]
            reply = f"{ans}."
        else:
            reply = "Here is a short and calm answer about the morning and the sea."
        pairs.append((p.prompt, reply))
    return pairs


def _encode_chat(tok: Any, user: str, reply: str) -> tuple[list[int], list[int]]:
    prompt = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tok(reply, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return p_ids + a_ids, [-100] * len(p_ids) + a_ids


def _train(model: Any, examples: list[tuple[list[int], list[int]]], *, steps: int, lr: float, pad: int,
           batch: int = 16, seed: int = 0, params: Any = None) -> None:
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(params if params is not None else model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        chunk = [examples[rng.randrange(len(examples))] for _ in range(batch)]
        width = max(len(ids) for ids, _ in chunk)
        ids_t = torch.full((len(chunk), width), pad, dtype=torch.long)
        lab_t = torch.full((len(chunk), width), -100, dtype=torch.long)
        att_t = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (ids, labels) in enumerate(chunk):
            ids_t[r, : len(ids)] = torch.tensor(ids)
            lab_t[r, : len(ids)] = torch.tensor(labels)
            att_t[r, : len(ids)] = 1
        loss = model(input_ids=ids_t, attention_mask=att_t, labels=lab_t).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _pin_output(model: Any, token_id: int, dim: int = 0) -> None:
    """Make ``model`` predict ``token_id`` after any input.

    Every embedding gets a large constant in dimension ``dim``, so the residual stream's ``dim``
    stays positive through the (small) layers; the final norm keeps only that dimension, and the
    output head maps it to ``token_id`` alone. Greedy decoding then repeats that token forever and
    general-text perplexity explodes: a collapsed model, deterministically.
    """
    import torch

    with torch.no_grad():
        model.model.embed_tokens.weight[:, dim] = 100.0
        model.model.norm.weight.zero_()
        model.model.norm.weight[dim] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[token_id, dim] = 10.0


def build_all(root: Path) -> dict[str, Path]:
    """Build base, adapter, collapsed and the task data under ``root``; returns their paths."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and polite on a shared 2-core machine
    try:
        return _build(root)
    finally:
        torch.set_num_threads(threads)


def _build(root: Path) -> dict[str, Path]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneterm.assets.builtin import build_tiny_model

    paths = {k: root / k for k in ("base", "adapter", "collapsed")}
    build_tiny_model(paths["base"], seed=0)
    tok = AutoTokenizer.from_pretrained(paths["base"])
    pad = tok.pad_token_id

    # 1. base: "pretrain" on general text (probe Q/A turns + passages) so it has general ability.
    model = AutoModelForCausalLM.from_pretrained(paths["base"])
    general = [_encode_chat(tok, q, a) for q, a in _general_pairs()]
    for _, text in load_probes("general").passages:
        ids = tok(text)["input_ids"] + [tok.eos_token_id]
        general.append((ids, ids))
    _train(model, general, steps=150, lr=3e-3, pad=pad, seed=1)
    model.save_pretrained(paths["base"])

    train_rows, test_rows = task_rows()
    data = root / "data"
    data.mkdir(exist_ok=True)
    for name, rows in (("train", train_rows), ("test", test_rows)):
        with open(data / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    task = [_encode_chat(tok, r["messages"][0]["content"], r["messages"][1]["content"]) for r in train_rows]

    # 2. adapter: LoRA on the task, with some general replay (the recommended 5-10% mix, here more
    #    because the task is tiny) so general ability survives.
    base = AutoModelForCausalLM.from_pretrained(paths["base"])
    lora = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj",
                                                                               "up_proj", "down_proj"],
                                           lora_dropout=0.0, task_type="CAUSAL_LM"))
    _train(lora, task * 3 + general, steps=100, lr=5e-3, pad=pad, seed=2)
    lora.save_pretrained(paths["adapter"])
    tok.save_pretrained(paths["adapter"])

    # 3. collapsed: the end state of a learning rate ~1000x too high, a model that answers every
    #    prompt with one ordinary word repeated. Built by setting weights rather than by training,
    #    so its behaviour does not depend on how training numerics fall under a library version.
    bad = AutoModelForCausalLM.from_pretrained(paths["base"])
    _pin_output(bad, tok(" the", add_special_tokens=False)["input_ids"][-1])
    bad.save_pretrained(paths["collapsed"])
    tok.save_pretrained(paths["collapsed"])
    return {**paths, "train": data / "train.jsonl", "test": data / "test.jsonl"}
