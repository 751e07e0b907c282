"""``tuneterm gpu`` (what do I have?) and ``tuneterm plan`` (will it fit, with what settings?).

Neither imports torch or transformers: GPUs come from NVML, model facts from config.json or the
family table, the memory estimate is arithmetic. Exit codes: 0 (a missing GPU is a fact, not a
failure; a plan that does not fit is still a plan), 2 for bad arguments or unreadable inputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tuneterm.cli import app
from tuneterm.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.padding import Padding
    from rich.text import Text

    from tuneterm.plan.gpu import SystemProfile
    from tuneterm.plan.recommend import Plan
    from tuneterm.plan.verdict import FitVerdict


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _t(text: object) -> Text:
    """Untrusted text (model names, process command lines) as an inert rich Text."""
    from rich.text import Text

    from tuneterm.textsafe import inert_line

    return Text(inert_line(str(text), 300))


def _indented(indent: int, text: object, limit: int = 1000) -> Padding:
    """Untrusted text made inert, wrapped by rich with a hanging indent of ``indent`` spaces."""
    from rich.padding import Padding
    from rich.text import Text

    from tuneterm.textsafe import inert_line

    return Padding(Text(inert_line(str(text), limit)), (0, 0, 0, indent))


def _fmt(v: Any, unit: str = "", nd: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}{unit}"
    return f"{v}{unit}"


def render_profile(prof: SystemProfile, console: Console) -> None:
    """Print a :class:`~tuneterm.plan.gpu.SystemProfile` as tables."""
    from rich.table import Table

    d = prof.to_dict()
    if not prof.gpus:
        console.print(_t(f"No GPU: {prof.gpu_error or 'none found'}."))
    else:
        console.print(_t(f"Driver {d['driver_version'] or 'n/a'}, CUDA {d['cuda_version'] or 'n/a'}, {len(prof.gpus)} GPU(s)"))
        t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        # The name is what people read first: on a narrow terminal it folds onto more lines but is
        # never cut to nothing; the numbers never wrap.
        longest = max(len(g["name"] or "") for g in d["gpus"])
        for col in ("#", "name", "used/total GiB", "free GiB", "util", "temp", "power W", "cc", "bf16"):
            if col == "name":
                t.add_column(col, min_width=min(longest, 24), overflow="fold")
            else:
                t.add_column(col, no_wrap=True)
        for g in d["gpus"]:
            t.add_row(str(g["index"]), _t(g["name"]), f"{g['memory_used_gib']:.1f} / {g['memory_total_gib']:.1f}",
                      f"{g['memory_free_gib']:.1f}", _fmt(g["utilization_pct"], "%"), _fmt(g["temperature_c"], "C"),
                      "n/a" if g["power_w"] is None else f"{g['power_w']:.0f}/{_fmt(g['power_limit_w'], '', 0)}",
                      _fmt(g["compute_capability"]), {True: "yes", False: "no", None: "n/a"}[g["bf16"]])
        console.print(t)
        procs = [(g["index"], p) for g in d["gpus"] for p in g["processes"]]
        if procs:
            pt = Table(show_header=True, header_style="bold", box=None, pad_edge=False, title="processes holding GPU memory")
            for col in ("gpu", "pid", "GiB", "command"):
                pt.add_column(col)
            for idx, p in procs:
                pt.add_row(str(idx), str(p["pid"]), _fmt(p["used_gib"], "", 2), _t(p["command"] or "(not visible)"))
            console.print(pt)
    ram = d["ram"]
    console.print(_t(f"CPU: {d['cpu']['model'] or 'unknown'} x {d['cpu']['count'] or '?'}; "
                     f"RAM: {_fmt(ram['available_gib'])} GiB free of {_fmt(ram['total_gib'])} GiB"))


@app.command("gpu")
def gpu_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    watch: bool = typer.Option(False, "--watch", help="Refresh until Ctrl-C."),
    interval: float = typer.Option(2.0, "--interval", min=0.2, max=3600.0, help="Seconds between refreshes with --watch."),
) -> None:
    """Show each GPU (memory, utilisation, temperature, power, compute capability, bf16, processes),
    the driver and CUDA version, and the CPU and RAM. No GPU is not an error (exit 0)."""
    from tuneterm.plan.gpu import probe

    if not watch:
        prof = probe()
        if as_json:
            sys.stdout.write(json.dumps(prof.to_dict(), indent=2) + "\n")
        else:
            render_profile(prof, _console())
        return
    import time

    console = _console()
    if as_json:  # one JSON object per line: easy to tail or pipe into jq
        while True:
            sys.stdout.write(json.dumps(probe().to_dict()) + "\n")
            sys.stdout.flush()
            time.sleep(interval)
    from rich.live import Live

    with Live(console=console, auto_refresh=False) as live:
        while True:
            from rich.console import Console

            buf = Console(record=True, width=console.width, highlight=False)
            with buf.capture():
                render_profile(probe(), buf)
            from rich.text import Text

            live.update(Text.from_ansi(buf.export_text(styles=True)), refresh=True)
            time.sleep(interval)


def _targets(value: str | None) -> tuple[str, ...] | str | None:
    if value is None:
        return None
    v = value.strip()
    if v in ("all-linear", "all"):
        return "all-linear"
    names = tuple(t.strip() for t in v.split(",") if t.strip())
    if not names:
        raise ConfigError("--lora-targets: give module names (q_proj,v_proj) or all-linear")
    return names


@app.command("plan")
def plan_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Local model directory, config.json, or hub id."),
    method: str = typer.Option("lora", "--method", help="full, lora, qlora or dora."),
    lora_r: int | None = typer.Option(None, "--lora-r", min=1, max=4096, help="LoRA rank (default: by --task)."),
    lora_targets: str | None = typer.Option(None, "--lora-targets", help="Comma-separated module names or all-linear."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Per-device micro-batch (default: largest that fits)."),
    seq_len: int = typer.Option(1024, "--seq-len", min=1, help="Tokens of the longest padded sample (max_length)."),
    gc: bool | None = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Default: on when activations dominate."),
    optimizer: str = typer.Option("adamw_torch_fused", "--optimizer", help="TRL optim name (adamw_torch, adamw_8bit, paged_adamw_8bit, adafactor, sgd ...)."),
    trainer: str = typer.Option("sft", "--trainer", help="sft, dpo or grpo."),
    gpus: int | None = typer.Option(None, "--gpus", min=1, help="GPUs (default: the GPUs found, else 1)."),
    gpu_memory: str | None = typer.Option(None, "--gpu-memory", help="Memory of one GPU (24GiB, 80GB); default: the GPUs found."),
    sharding: str = typer.Option("ddp", "--sharding", help="ddp, zero2, zero3 or fsdp (several GPUs)."),
    attn: str = typer.Option("sdpa", "--attn", help="sdpa, flash_attention_2 or eager."),
    double_quant: bool = typer.Option(False, "--double-quant", help="NF4 nested quantization (QLoRA)."),
    cpu_offload: bool = typer.Option(False, "--cpu-offload", help="Optimizer states (and sharded params) on the CPU."),
    stack: str = typer.Option("hf", "--stack", help="hf, hf-fused-ce, peft-kbit, hf-legacy or litgpt."),
    task: str = typer.Option("instruction", "--task", help="instruction, chat, classification, reasoning, code, domain ..."),
    dataset_size: int | None = typer.Option(None, "--dataset-size", min=1, help="Training samples (for epochs and steps)."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset for -o FILE: a hub id, a local directory, or a local .jsonl/.json/.csv/.parquet file (written as a TRL datasets: entry)."),
    output: str | None = typer.Option(None, "--output", "-o", help="Write a TRL config (trl sft --config / tuneterm train)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (peak_gib at the top level, the breakdown beside it)."),
) -> None:
    """Estimate per-GPU peak memory with a breakdown, say whether it fits, and recommend settings."""
    from tuneterm.preflight.plan_request import PlanRequest, plan_for

    request = PlanRequest(model=model, method=method, trainer=trainer, task=task, seq_len=seq_len,
                          batch_size=batch_size, lora_r=lora_r, lora_targets=_targets(lora_targets),
                          gradient_checkpointing=gc, optimizer=optimizer, gpus=gpus, gpu_memory=gpu_memory,
                          sharding=sharding, attn=attn, double_quant=double_quant, cpu_offload=cpu_offload,
                          stack=stack, dataset_size=dataset_size)
    outcome = plan_for(request)
    plan, verdict, cap = outcome.plan, outcome.verdict, outcome.plan.capacity_gib
    written = None
    if output:
        from tuneterm.plan.trl_config import write_config

        written = write_config(output, plan, dataset_name=dataset, dataset_size=dataset_size)
    if as_json:
        out = plan.estimate.to_dict()
        out.update({"model": plan.model.to_dict(), "facts_source": plan.model.source,
                     "gpu": {"capacity_gib": None if cap is None else round(cap, 3), "gpus": plan.setup.gpus,
                             "source": outcome.source},
                     "fits": verdict.fits, **plan.to_dict()})
        if written:
            out["config_written"] = str(written)
        sys.stdout.write(json.dumps(out, indent=2, default=str) + "\n")
        return
    _render_plan(plan, verdict, outcome.source, written)


def _gib(v: float) -> str:
    """A size for people: one decimal (74.5), two below 1 GiB (0.25)."""
    return f"{v:.2f}" if abs(v) < 1 else f"{v:.1f}"


def _render_plan(plan: Plan, verdict: FitVerdict, gpu_note: str | None, written: Path | None) -> None:
    from rich.table import Table

    c = _console()
    est, m, s = plan.estimate, plan.model, plan.setup
    c.print(_t(f"{m.name}: {m.size_b:.2f}B parameters"
               + (f" ({m.active_params / 1e9:.1f}B active per token, {m.experts} experts, all resident)" if m.experts > 1 else "")
               + f" ({m.layers} layers, hidden {m.hidden}, vocab {m.vocab}), facts from {m.source}: {m.source_detail}"))
    if m.is_guess:
        c.print(_t(f"WARNING: architecture GUESSED from the name '{m.name}': no config.json and no table entry. "
                   "Every number below is rough; pass a local model directory or a config.json for a real estimate."),
                style="bold red")
    c.print(_t(f"{s.trainer.upper()} {s.method}, batch {s.batch_size} x {s.seq_len} tokens, gradient checkpointing "
               f"{'on' if s.gradient_checkpointing else 'off'}, {s.optimizer}, {s.gpus} GPU(s) {s.sharding if s.gpus > 1 else ''}"))
    t = Table(show_header=True, header_style="bold", box=None, pad_edge=False, title="memory per GPU")
    t.add_column("part", no_wrap=True)
    t.add_column("GiB", justify="right", no_wrap=True)
    t.add_column("phase", no_wrap=True)
    t.add_column("how", overflow="fold")
    for comp in est.components:
        t.add_row(comp.name, _gib(comp.gib), comp.phase, _t(comp.detail))
    c.print(t)
    phases = ", ".join(f"{k} {_gib(v / 2**30)}" for k, v in est.phases.items())
    c.print(_t(f"transient phases (GiB): {phases}; the peak is at {est.peak_phase}"))
    c.print(_t(f"predicted peak: {_gib(est.peak_gib)} GiB per GPU (allocated {_gib(est.allocated_gib)}, reserved {_gib(est.reserved_gib)})"))
    if verdict.label is not None:
        c.print(_t(f"{verdict.label} on {gpu_note} with {verdict.headroom:.0%} headroom"))
        if verdict.note:
            c.print(_t(f"note: {verdict.note}"))
    elif gpu_note:
        c.print(_t(gpu_note))
    for n in est.notes + plan.warnings:
        c.print(_t(f"note: {n}"))
    # Keys are printed at the start of their own line and never inside a table cell, so they are
    # never cut at any terminal width (a person copies them into a config).
    if plan.to_fit:
        c.print(_t("to fit, cheapest first (each with its own predicted peak):"), style="bold")
        for i, ch in enumerate(plan.to_fit, 1):
            keys = ", ".join(f"{k}: {json.dumps(v)}" for k, v in ch.set.items())
            c.print(_indented(2, f"{i}. {keys}  -> {_gib(ch.peak_gib)} GiB"))
            c.print(_indented(5, f"cost: {ch.cost}" + (f"; run: {ch.command}" if ch.command else "")))
    if plan.fit_table:
        tt = Table(show_header=True, header_style="bold", box=None, pad_edge=False,
                   title=f"no GPU found: fit on common cards ({plan.headroom:.0%} headroom)")
        for col in ("card", "fits", "micro-batch", "checkpointing", "peak GiB"):
            tt.add_column(col, no_wrap=col != "card", overflow="fold")
        for row in plan.fit_table:
            tt.add_row(row.card, "yes" if row.fits else "no", str(row.batch_size) if row.fits else "-",
                       "on" if row.gradient_checkpointing else "off", _gib(row.peak_gib))
        c.print(tt)
    c.print(_t("recommendations:"), style="bold")
    for rec in plan.recommendations:
        value = rec.value if isinstance(rec.value, str) else json.dumps(rec.value)
        c.print(_indented(2, f"{rec.key}: {value}"))
        c.print(_indented(6, f"{rec.why} (source: {rec.source})"), style="dim")
    if written:
        c.print(_t(f"wrote {written} (trl {s.trainer} --config {written} | tuneterm train {written})"))
