"""`tuneterm plan` through the real CLI entry point: text, JSON, -o FILE, bad input, no torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.plan.conftest import H100
from tuneterm.cli import main
from tuneterm.plan.sizes import parse_size_gib


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_json_has_peak_at_top_and_breakdown(capsys, fake_nvml) -> None:
    fake_nvml([])
    code, out, _ = run_cli(["plan", "--model", "Qwen/Qwen2.5-0.5B-Instruct", "--method", "full", "--gpu-memory", "24GiB",
                            "--seq-len", "512", "--json"], capsys)
    assert code == 0
    d = json.loads(out)
    assert isinstance(d["peak_gib"], float) and d["fits"] is True
    assert {c["name"] for c in d["breakdown"]} >= {"weights", "optimizer states", "gradients", "logits + cross-entropy"}
    lr = next(r for r in d["recommendations"] if r["key"] == "learning_rate")
    assert 5e-5 <= lr["value"] <= 1e-4 and lr["row"].endswith("#sft-full-tiny")


def test_text_explains_no_fit(capsys, fake_nvml) -> None:
    fake_nvml([])
    code, out, _ = run_cli(["plan", "--model", "meta-llama/Llama-3.1-8B", "--method", "full", "--gpu-memory", "24",
                            "--batch-size", "2"], capsys)
    assert code == 0
    assert "DOES NOT FIT" in out and "optimizer states" in out and "predicted peak" in out


def test_gpus_found_are_used(capsys, fake_nvml) -> None:
    fake_nvml([H100, H100])
    code, out, _ = run_cli(["plan", "--model", "Qwen/Qwen2.5-7B", "--method", "qlora", "--json"], capsys)
    d = json.loads(out)
    assert code == 0 and d["gpu"]["gpus"] == 2 and abs(d["gpu"]["capacity_gib"] - 80.0) < 1e-6


def test_busy_gpu_is_a_note_beside_the_verdict(capsys, fake_nvml) -> None:
    """The verdict is against the GPU's total memory; what other processes hold right now is a note
    beside it (the Plan screen's verdict, from the same flow), and a typed size gets no such note."""
    fake_nvml([dict(H100, used=70 * 2**30)])  # 10 GiB free of 80
    code, out, _ = run_cli(["plan", "--model", "Qwen/Qwen2.5-1.5B", "--method", "full"], capsys)
    out = " ".join(out.split())  # the terminal's width decides where lines wrap
    assert code == 0 and "FITS on 1 x NVIDIA H100 80GB HBM3 (80.0 GiB)" in out
    assert "note: fits the total memory but not the memory free right now: other processes hold 70.0 GiB of GPU 0" in out
    code, out, _ = run_cli(["plan", "--model", "Qwen/Qwen2.5-1.5B", "--method", "full", "--gpu-memory", "80GiB"], capsys)
    assert code == 0 and "FITS on --gpu-memory 80GiB" in out and "other processes hold" not in out


def test_output_file_is_trl_keys_only(tmp_path: Path, capsys, fake_nvml) -> None:
    fake_nvml([])
    out_file = tmp_path / "plan.yaml"
    code, out, _ = run_cli(["plan", "--model", "Qwen/Qwen2.5-1.5B", "--method", "qlora", "--trainer", "sft",
                            "--task", "instruction", "--dataset-size", "45000", "--gpu-memory", "16GiB", "-o", str(out_file)], capsys)
    assert code == 0 and out_file.is_file()
    text = out_file.read_text()
    data = yaml.safe_load(text)
    assert data["use_peft"] is True and data["load_in_4bit"] is True and data["lora_alpha"] == 2 * data["lora_r"]
    assert "# tuneterm-trainer: sft" in text and "trl sft --config" in text
    assert "trainer" not in data and "tuneterm" not in " ".join(data)


@pytest.mark.parametrize("args,needle", [
    (["--method", "prefix"], "method must be one of"),
    (["--gpu-memory", "lots"], "is not a size"),
    (["--trainer", "ppo"], "trainer must be one of"),
    (["--lora-targets", ","], "--lora-targets"),
])
def test_bad_arguments_exit_2_with_one_line(args, needle, capsys, fake_nvml) -> None:
    fake_nvml([])
    code, out, err = run_cli(["plan", "--model", "Qwen/Qwen2.5-0.5B", *args], capsys)
    assert code == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_model_exit_2(capsys, fake_nvml) -> None:
    fake_nvml([])
    code, _, err = run_cli(["plan", "--model", "nobody/mystery"], capsys)
    assert code == 2 and "no config.json found" in err


def test_sizes() -> None:
    assert parse_size_gib("24") == 24.0 and parse_size_gib("24GiB") == 24.0
    assert abs(parse_size_gib("80GB") - 74.505) < 0.01 and parse_size_gib("16384MiB") == 16.0


def test_gpu_and_plan_do_not_import_torch() -> None:
    code = ("import sys, os; os.environ['TUNETERM_OFFLINE']='1'; from tuneterm.cli import main\n"
            "try:\n    main(['plan','--model','Qwen/Qwen2.5-0.5B','--method','lora','--gpu-memory','8','--json'])\n"
            "except SystemExit: pass\n"
            "try:\n    main(['gpu','--json'])\nexcept SystemExit: pass\n"
            "bad=[m for m in ('torch','transformers','trl','peft','datasets') if m in sys.modules]\n"
            "print('HEAVY', bad, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in r.stderr, r.stderr[-500:]


def test_json_to_fit_and_facts_source(capsys, fake_nvml) -> None:
    fake_nvml([])
    code, out, _ = run_cli(["plan", "--model", "Qwen/Qwen2.5-7B", "--method", "qlora", "--seq-len", "2048",
                            "--batch-size", "4", "--gpu-memory", "24GiB", "--json"], capsys)
    d = json.loads(out)
    assert code == 0 and d["fits"] is False and d["facts_source"] == "table"
    assert d["to_fit"] and set(d["to_fit"][0]) >= {"set", "peak_gib", "cost"}
    assert d["to_fit"][0]["set"] == {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 16}
    assert d["to_fit"][0]["peak_gib"] < 24.0


def test_no_gpu_gives_a_fit_table(capsys, fake_nvml) -> None:
    fake_nvml([])
    code, out, _ = run_cli(["plan", "--model", "meta-llama/Llama-3.1-8B", "--method", "lora", "--json"], capsys)
    d = json.loads(out)
    assert code == 0 and d["fits"] is None
    assert [r["card"].split()[0] for r in d["fit_table"]] == ["24", "40", "48", "80", "141"]
    assert all(r["batch_size"] >= 1 for r in d["fit_table"] if r["fits"])
    code, text, _ = run_cli(["plan", "--model", "meta-llama/Llama-3.1-8B", "--method", "lora"], capsys)
    assert "no GPU found: fit on common cards" in text and "141 GB (H200)" in text


def test_guess_is_loud(capsys, fake_nvml) -> None:
    fake_nvml([])
    code, out, _ = run_cli(["plan", "--model", "someorg/Mystery-13B", "--gpu-memory", "80GiB"], capsys)
    assert code == 0 and "WARNING: architecture GUESSED" in out
    code, out, _ = run_cli(["plan", "--model", "someorg/Mystery-13B", "--gpu-memory", "80GiB", "--json"], capsys)
    assert json.loads(out)["facts_source"] == "guess"


@pytest.mark.parametrize("width", [80, 100, 120])
def test_keys_never_cut_and_sizes_rounded(width: int, capsys, fake_nvml, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    fake_nvml([])
    code, out, _ = run_cli(["plan", "--model", "Qwen/Qwen2.5-7B", "--method", "qlora", "--seq-len", "2048",
                            "--batch-size", "4", "--gpu-memory", "24GiB"], capsys)
    assert code == 0
    from tuneterm.preflight.plan_request import fit_options

    gc_key = fit_options("sft").checkpointing_key  # the installed transformers' name of the switch
    for key in ("gradient_accumulation_steps", "per_device_train_batch_size", "lora_target_modules", gc_key):
        assert key + ":" in out
    assert "…" not in "".join(line.split(":")[0] for line in out.splitlines())
    assert not re.search(r"\d+\.\d{3,} GiB", out)  # 74.5 GiB, never 74.5058
    assert not re.search(r"seeds?/|issue \d|memory\.md", out)
