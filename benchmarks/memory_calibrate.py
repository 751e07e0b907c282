"""Calibrate tuneterm's memory estimator against real training steps on this machine's GPU.

Runs a matrix of small real configurations (a 0.5B-1.5B model; full / LoRA / QLoRA; two sequence
lengths; gradient checkpointing on and off), each for a few optimizer steps of the HF/PEFT stack
that ``tuneterm train`` uses, measures ``torch.cuda.max_memory_allocated`` and
``max_memory_reserved`` (and NVML's per-process usage when available), and writes estimate vs
measured to ``benchmarks/data/memory_calibration.json``.

    python benchmarks/memory_calibrate.py                       # on a GPU box (Qwen2.5-0.5B by default)
    python benchmarks/memory_calibrate.py --model /path/to/Qwen2.5-1.5B-Instruct
    python benchmarks/memory_calibrate.py --dry-run             # CPU, tuneterm's tiny built-in model:
                                                                # proves the code path, measures nothing

The estimate for each row is computed exactly as ``tuneterm plan`` would (stack ``hf``). Errors are
printed per row with the median. Nothing is tuned from the results automatically: they are
evidence for (or against) the global constants in tuneterm/plan/memory.py.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GIB = 1024**3


@dataclass(frozen=True)
class Case:
    method: str  # full | lora | qlora
    seq_len: int
    gradient_checkpointing: bool
    batch_size: int = 1
    lora_r: int = 16


def matrix(methods: list[str], seq_lens: list[int], batch: int) -> list[Case]:
    return [Case(m, s, g, batch) for m in methods for s in seq_lens for g in (True, False)]


def nvml_process_bytes() -> int | None:
    """GPU memory NVML attributes to this process (what nvidia-smi shows), if visible."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            total = 0
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                    if p.pid == os.getpid() and isinstance(p.usedGpuMemory, int):
                        total += p.usedGpuMemory
            return total or None
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - containers often hide per-process usage
        return None


def run_case(model_path: str, case: Case, steps: int, device: str) -> dict[str, Any]:
    """Train ``steps`` optimizer steps of ``case`` and return the measured peaks (bytes)."""
    import torch
    from transformers import AutoModelForCausalLM

    cuda = device == "cuda"
    kw: dict[str, Any] = {"dtype": torch.bfloat16 if cuda else torch.float32, "attn_implementation": "sdpa"}
    if case.method == "qlora":
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                       bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=False)
        kw["device_map"] = {"": 0}
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = AutoModelForCausalLM.from_pretrained(model_path, **kw)
    if case.method != "qlora":
        model.to(device)
    if case.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if case.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        if case.gradient_checkpointing:
            model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=case.lora_r, lora_alpha=2 * case.lora_r, lora_dropout=0.05,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
        if case.method == "qlora":  # what TRL 1.16 does: adapters in bf16 on a k-bit base
            for p in model.parameters():
                if p.requires_grad:
                    p.data = p.data.to(torch.bfloat16)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=cuda)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (case.batch_size, case.seq_len), device=device)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    res: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 3), "loss": float(out.loss.detach().float().cpu())}
    if cuda:
        res["allocated"] = torch.cuda.max_memory_allocated()
        res["reserved"] = torch.cuda.max_memory_reserved()
        res["device"] = nvml_process_bytes()
    del model, opt, out, params, ids
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return res


def estimate_case(model_path: str, case: Case) -> dict[str, float]:
    from tuneterm.plan.facts import resolve_model
    from tuneterm.plan.memory import TrainSetup, estimate

    facts = resolve_model(model_path)
    est = estimate(facts, TrainSetup(method=case.method, lora_r=case.lora_r, lora_targets="all-linear", lora_dropout=0.05,
                                     batch_size=case.batch_size, seq_len=case.seq_len,
                                     gradient_checkpointing=case.gradient_checkpointing, optimizer="adamw_torch_fused",
                                     attn="sdpa", stack="hf"))
    return {"allocated": est.allocated, "reserved": est.reserved, "device": est.device, "peak_phase": est.peak_phase}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct", help="local dir or hub id (must be loadable offline on the GPU box)")
    ap.add_argument("--methods", default="full,lora,qlora")
    ap.add_argument("--seq-lens", default="512,2048")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per case (>= 2: states exist from step 2)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tuneterm's tiny built-in model, 2 steps: proves the code path")
    ap.add_argument("--out", default=None, help="JSON output (default benchmarks/data/memory_calibration.json; "
                                                 "memory_calibration.dryrun.json with --dry-run)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import torch

    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    if device == "cpu" and not args.dry_run:
        print("no CUDA device: nothing to calibrate (use --dry-run to exercise the code path on CPU)", file=sys.stderr)
        return 2
    model_path = args.model
    seq_lens = [int(s) for s in args.seq_lens.split(",")]
    methods = args.methods.split(",")
    steps = args.steps
    if args.dry_run:
        from tuneterm.assets.builtin import resolve_model as builtin

        model_path = builtin("tuneterm:tiny-llama")
        seq_lens, steps = [32, 64], 2
        methods = [m for m in methods if m != "qlora"]  # bitsandbytes 4-bit needs CUDA
    out = Path(args.out) if args.out else REPO / "benchmarks" / "data" / (
        "memory_calibration.dryrun.json" if args.dry_run else "memory_calibration.json")
    rows = []
    for case in matrix(methods, seq_lens, args.batch_size):
        est = estimate_case(model_path, case)
        try:
            meas = run_case(model_path, case, steps, device)
        except Exception as exc:  # noqa: BLE001 - an OOM is a data point too
            meas = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        row: dict[str, Any] = {"case": asdict(case), "estimate_gib": {k: (v / GIB if isinstance(v, (int, float)) else v) for k, v in est.items()},
                               "measured_gib": {k: (v / GIB if isinstance(v, int) else v) for k, v in meas.items()
                                                if k in ("allocated", "reserved", "device")},
                               "seconds": meas.get("seconds"), "error": meas.get("error")}
        for k in ("allocated", "reserved", "device"):
            m = row["measured_gib"].get(k)
            if isinstance(m, float) and m > 0:
                row[f"rel_error_{k}"] = round(row["estimate_gib"][k] / m - 1.0, 4)
        rows.append(row)
        print(f"{case.method:5s} s={case.seq_len:5d} gc={'on ' if case.gradient_checkpointing else 'off'} "
              f"est alloc {row['estimate_gib']['allocated']:.2f} GiB  measured {row['measured_gib'].get('allocated', float('nan')) if row['measured_gib'] else 'n/a'}"
              f"  err {row.get('rel_error_allocated', 'n/a')}  {row['error'] or ''}")
    summary = {}
    for k in ("allocated", "reserved", "device"):
        errs = [abs(r[f"rel_error_{k}"]) for r in rows if f"rel_error_{k}" in r]
        if errs:
            summary[f"median_abs_rel_error_{k}"] = round(statistics.median(errs), 4)
    import transformers

    doc = {
        "what": "tuneterm memory estimate vs measured peak per training step matrix (benchmarks/memory_calibrate.py)",
        "dry_run": args.dry_run, "model": str(model_path) if not args.dry_run else "tuneterm:tiny-llama",
        "device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__, "steps": steps,
        "results": rows, "summary": summary,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}; summary {summary or '(nothing measured: dry run)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
