"""The one plan flow (``preflight.plan_request.plan_for``) behind ``tuneterm plan`` and the Plan
screen: where the GPU memory comes from, how many GPUs are planned for, what is fixed, and what
the installed stack allows among the changes to fit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.plan.conftest import H100, T4, make_fake_nvml, set_installed
from tuneterm.errors import ConfigError, TunetermError
from tuneterm.plan.gpu import probe
from tuneterm.preflight.plan_request import PlanRequest, fit_options, plan_for

GIB = 2**30


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNETERM_OFFLINE", "1")


def gpus(monkeypatch: pytest.MonkeyPatch, *boards: dict, error: str | None = None):
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_nvml(list(boards), init_error=error))
    return probe()


def test_the_smallest_gpu_found_and_its_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    profile = gpus(monkeypatch, H100, dict(T4, used=12 * GIB))
    out = plan_for(PlanRequest(model="Qwen/Qwen2.5-0.5B"), profile)
    assert out.plan.capacity_gib == 16.0 and out.plan.setup.gpus == 2
    assert out.target is not None and out.source == "2 x Tesla T4 (16.0 GiB)"
    assert [g.index for g in out.verdict.gpus] == [0, 1]  # each GPU's free memory beside the verdict
    assert out.verdict.fits is out.plan.fits


def test_a_typed_size_is_not_the_gpus_present(monkeypatch: pytest.MonkeyPatch) -> None:
    profile = gpus(monkeypatch, H100, H100)
    out = plan_for(PlanRequest(model="Qwen/Qwen2.5-0.5B", gpu_memory="24GiB"), profile)
    assert out.plan.capacity_gib == 24.0 and out.source == "--gpu-memory 24GiB" and out.target is None
    assert out.plan.setup.gpus == 1 and out.verdict.gpus == ()  # their free memory says nothing about 24 GiB
    assert plan_for(PlanRequest(model="Qwen/Qwen2.5-0.5B", gpu_memory="24GiB", gpus=2)).plan.setup.gpus == 2


def test_no_gpu_plans_against_common_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus(monkeypatch, error="Driver Not Loaded")
    out = plan_for(PlanRequest(model="Qwen/Qwen2.5-0.5B"))  # probed here: nothing was passed in
    assert out.plan.capacity_gib is None and out.verdict.fits is None and out.plan.fit_table
    assert "Driver Not Loaded" in out.source and out.plan.setup.gpus == 1


def test_fields_given_are_kept(tmp_path: Path) -> None:
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 688,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 4096,
        "max_position_embeddings": 2048, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}))
    req = PlanRequest(model=str(model), batch_size=3, lora_r=4, lora_targets=("q_proj", "v_proj"),
                      gradient_checkpointing=False, seq_len=512, gpu_memory="8")
    plan = plan_for(req).plan
    s = plan.setup
    assert (s.batch_size, s.lora_r, s.lora_targets, s.gradient_checkpointing, s.seq_len) == (3, 4, ("q_proj", "v_proj"), False, 512)
    assert (plan.model.source, plan.model.layers, plan.model.hidden) == ("local", 4, 256)  # read from its config.json


@pytest.mark.parametrize("req,needle", [
    (PlanRequest(model="Qwen/Qwen2.5-0.5B", method="prefix", gpu_memory="8"), "method must be one of"),
    (PlanRequest(model="Qwen/Qwen2.5-0.5B", sharding="ring", gpu_memory="8"), "sharding must be one of"),
    (PlanRequest(model="Qwen/Qwen2.5-0.5B", gpu_memory="lots"), "is not a size"),
])
def test_bad_inputs_are_one_line(req: PlanRequest, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        plan_for(req)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_model_is_one_line() -> None:
    with pytest.raises(TunetermError) as exc:
        plan_for(PlanRequest(model="nobody/mystery", gpu_memory="8"))
    assert "no config.json found" in str(exc.value)


def test_changes_to_fit_follow_the_installed_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    req = PlanRequest(model="Qwen/Qwen2.5-1.5B", method="full", gpu_memory="16GiB")
    set_installed(monkeypatch, "liger_kernel", False)
    set_installed(monkeypatch, "bitsandbytes", True)
    assert fit_options("sft").bitsandbytes is True
    with_bnb = [c.set for c in plan_for(req).plan.to_fit]
    set_installed(monkeypatch, "bitsandbytes", False)
    assert fit_options("sft").bitsandbytes is False and fit_options("sft").liger is False
    without = [c.set for c in plan_for(req).plan.to_fit]
    needs_bnb = [s for s in with_bnb if "load_in_4bit" in s or "8bit" in str(s.get("optim"))]
    assert {"optim": "adamw_8bit"} in needs_bnb  # proposed where bitsandbytes is installed ...
    assert without == [s for s in with_bnb if s not in needs_bnb]  # ... and only there
