"""Benchmark: ``check_dataset`` on a generated 100k-row JSONL (target: well under a minute, 2 cores).

Usage::

    python benchmarks/bench_data.py [--rows 100000] [--format messages|text|prompt_completion]
                                    [--model DIR_OR_ID] [--sample N]

Without ``--model`` a byte-level BPE tokenizer (8k vocab, ChatML template) is trained locally with
``tokenizers`` (no download). Prints the time to generate, the check time split into reading +
rendering + rules, and rows per second.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WORDS = [f"w{i}" for i in range(3000)] + "the a of to and in is it that for on with as was at by be this".split() * 50


def make_tokenizer(directory: Path, texts: list[str]) -> Path:
    """Train and save an 8k-vocab byte-level BPE tokenizer with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=8000, special_tokens=specials, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>")
    fast.chat_template = CHATML
    fast.save_pretrained(str(directory))
    return directory


def make_rows(n: int, fmt: str, seed: int = 0) -> list[dict]:
    """``n`` rows with lengths from ~20 to ~1,500 tokens (some over 1024), 1% exact duplicates."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for i in range(n):
        if i and rng.random() < 0.01:
            rows.append(rows[rng.randrange(len(rows))])
            continue
        q = " ".join(rng.choices(WORDS, k=rng.randint(5, 60)))
        a = " ".join(rng.choices(WORDS, k=int(rng.paretovariate(1.5) * 40)))[:6000]
        if fmt == "messages":
            rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        elif fmt == "prompt_completion":
            rows.append({"prompt": q, "completion": " " + a})
        else:
            rows.append({"text": q + "\n" + a})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--format", default="messages", choices=("messages", "text", "prompt_completion"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--sample", type=int, default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        rows = make_rows(args.rows, args.format)
        path = root / "data.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
        model = args.model
        if model is None:
            texts = [json.dumps(r) for r in rows[:5000]]
            model = str(make_tokenizer(root / "tok", texts))
        t_gen = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6
        del rows

        from tuneterm.preflight.data import check_dataset

        t1 = time.perf_counter()
        report = check_dataset(str(path), model=model, sample=args.sample)
        t_check = time.perf_counter() - t1
        f = report.facts
        print(f"rows: {f['rows']:,} ({size_mb:.1f} MB, format {report.format}); rendered {f['rows_checked']:,}")
        print(f"generate + tokenizer: {t_gen:.1f} s")
        print(f"check_dataset: {t_check:.1f} s ({f['rows_checked'] / t_check:,.0f} rows/s)")
        print(f"tokens/epoch {f.get('tokens_per_epoch'):,}; p50 {f.get('length_p50')} p99 {f.get('length_p99')} "
              f"max {f.get('length_max')}; truncated {f.get('share_truncated', 0) * 100:.1f}%")
        print("findings:", ", ".join(f"{x.code} {x.name} [{x.severity.value}]" for x in report.findings) or "none")


if __name__ == "__main__":
    main()
