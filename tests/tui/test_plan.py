"""Plan screen: the same verdict as ``tuneterm plan`` (the GPUs' total memory) with a note when other
processes hold the memory the plan needs, the breakdown, recommendations, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.plan.conftest import set_installed
from tests.tui.conftest import H100, T4, fill, make_app, notes, screen_text, wait_for
from tuneterm.cli import main
from tuneterm.tui.screens.plan import PlanScreen

GIB = 2**30


def cli_plan(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    """``tuneterm plan ... --json`` through the real entry point, against the same fake NVML."""
    with pytest.raises(SystemExit) as exc:
        main(["plan", *args, "--json"])
    out, _err = capsys.readouterr()
    assert int(exc.value.code or 0) == 0
    return json.loads(out)


async def type_model(pilot, model: str) -> None:
    await fill(pilot, "#model", model)


async def test_plan_fits_total_notes_held_memory_and_writes_config(fake_nvml, tmp_path: Path, capsys) -> None:
    fake_nvml([dict(H100, used=65 * GIB)])  # 15 GiB free of 80: other processes hold 65
    app = make_app(initial="plan")
    async with app.run_test(size=(220, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        await type_model(pilot, "Qwen/Qwen2.5-0.5B")
        await wait_for(pilot, lambda: screen.plan is not None)
        text = screen_text(app)
        assert "Qwen/Qwen2.5-0.5B" in text and "FITS" in text and "DOES NOT FIT" not in text
        # fitted to the total memory, as `tuneterm plan` does, not to what is free right now
        assert "against the total memory of 1 x NVIDIA H100 80GB HBM3 (80.0 GiB)" in text
        assert screen.plan.capacity_gib == 80.0 and screen.plan.fits is True
        peak = screen.plan.estimate.peak_gib
        assert 15 < peak * 1.1 < 80  # it would not fit in the 15 GiB free now: the note says so
        assert "note: fits the total memory but not the memory free right now: other processes hold 65.0 GiB of GPU 0" in text
        assert "15.0 GiB free of 80.0 GiB" in text
        assert screen.verdict.note is not None and [g.index for g in screen.verdict.busy] == [0]
        assert "GPU 0" in text and "80.0 GiB total, 15.0 free, 65.0 held" in text and "needed" in text
        keys = {r.key for r in screen.plan.recommendations}
        assert {"learning_rate", "lora_r", "per_device_train_batch_size"} <= keys
        # write the config: ctrl+s, accept the path
        target = tmp_path / "out" / "qwen-sft.yaml"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "Write the plan" in screen_text(app))
        await fill(pilot, "#prompt", str(target))
        await wait_for(pilot, lambda: target.is_file())
        data = yaml.safe_load(target.read_text())
        assert data["model_name_or_path"] == "Qwen/Qwen2.5-0.5B"
        assert data["learning_rate"] == screen.plan.get("learning_rate").value
        await wait_for(pilot, lambda: "wrote" in notes(app))
        assert app.last_config == str(target)
    # the CLI says the same for the same inputs (run outside the app: Textual captures stdout)
    d = cli_plan(capsys, "--model", "Qwen/Qwen2.5-0.5B")
    assert d["fits"] is True and d["gpu"]["capacity_gib"] == 80.0
    assert d["peak_gib"] == round(peak, 3)
    assert next(r["value"] for r in d["recommendations"] if r["key"] == "per_device_train_batch_size") == \
        screen.plan.setup.batch_size


async def test_no_note_when_the_free_memory_is_enough(fake_nvml) -> None:
    fake_nvml([dict(H100, used=2 * GIB)])
    app = make_app(initial="plan")
    async with app.run_test(size=(160, 40)) as pilot:
        screen = app.screen
        await type_model(pilot, "Qwen/Qwen2.5-0.5B")
        await wait_for(pilot, lambda: screen.plan is not None)
        assert screen.plan.fits is True and screen.verdict.note is None
        text = screen_text(app)
        assert "FITS" in text and "other processes hold" not in text
        assert "80.0 GiB total, 78.0 free, 2.0 held" in text


async def test_smallest_gpu_decides_like_the_cli(fake_nvml, capsys) -> None:
    """An H100 and a busy T4: the verdict is against the T4's 15 GiB total (every rank needs its
    share), the note names the T4 and what is held on it, and `tuneterm plan` agrees."""
    fake_nvml([dict(H100), dict(T4, used=10 * GIB)])  # T4: 15 GiB total, 5 free
    app = make_app(initial="plan")
    async with app.run_test(size=(220, 40)) as pilot:
        screen = app.screen
        await type_model(pilot, "Qwen/Qwen2.5-0.5B")
        await wait_for(pilot, lambda: screen.plan is not None)
        assert screen.plan.capacity_gib == 15.0 and screen.plan.setup.gpus == 2
        assert screen.plan.fits is True
        text = screen_text(app)
        assert "FITS" in text and "against the total memory of 2 x Tesla T4 (15.0 GiB)" in text
        assert [g.index for g in screen.verdict.busy] == [1]  # the H100 has room; the T4 does not now
        assert "other processes hold 10.0 GiB of GPU 1 (Tesla T4)" in text
    d = cli_plan(capsys, "--model", "Qwen/Qwen2.5-0.5B")
    assert (d["fits"], d["gpu"]["capacity_gib"], d["gpu"]["gpus"]) == (screen.plan.fits, 15.0, 2)
    assert d["peak_gib"] == round(screen.plan.estimate.peak_gib, 3)


async def test_plan_does_not_fit_and_user_batch(fake_nvml, capsys) -> None:
    fake_nvml([dict(H100, total=16 * GIB, used=14 * GIB)])  # 2 GiB free
    app = make_app(initial="plan")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await pilot.click("#batch")
        await pilot.press("4")
        await type_model(pilot, "meta-llama/Llama-3.1-8B")
        await wait_for(pilot, lambda: screen.plan is not None)
        assert screen.plan.setup.batch_size == 4  # the user's batch is kept
        assert screen.plan.fits is False and screen.plan.capacity_gib == 16.0
        assert screen.verdict.note is None  # it does not fit the total: what is held is beside the point
        text = screen_text(app)
        assert "DOES NOT FIT" in text and "other processes hold" not in text
    d = cli_plan(capsys, "--model", "meta-llama/Llama-3.1-8B", "--batch-size", "4")
    assert d["fits"] is False and d["peak_gib"] == round(screen.plan.estimate.peak_gib, 3)


async def test_no_gpu_typed_memory_and_errors(fake_nvml) -> None:
    fake_nvml([], init_error="Driver Not Loaded")
    app = make_app(initial="plan")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await pilot.press("enter")  # no model yet
        await wait_for(pilot, lambda: "error: type a model" in screen_text(app))
        await type_model(pilot, "Qwen/Qwen2.5-0.5B")
        await wait_for(pilot, lambda: screen.plan is not None)
        assert "no GPU" in screen_text(app) and screen.plan.fits is None
        await fill(pilot, "#gpu_memory", "24GiB")
        await wait_for(pilot, lambda: screen.plan is not None and screen.plan.capacity_gib == 24.0)
        assert "FITS" in screen_text(app)
        await fill(pilot, "#gpu_memory", "lots")
        await wait_for(pilot, lambda: "is not a size" in screen_text(app))


@pytest.mark.parametrize("form,args", [
    # does not fit 16 GiB: the changes to fit are where the installed stack matters
    (dict(model="Qwen/Qwen2.5-1.5B", method="full", gpu_memory="16GiB"),
     ["--model", "Qwen/Qwen2.5-1.5B", "--method", "full", "--gpu-memory", "16GiB"]),
    # fitted to the GPU found, with the user's trainer, batch and sequence length
    (dict(model="Qwen/Qwen2.5-0.5B", method="lora", trainer="dpo", seq_len="2048", batch="2"),
     ["--model", "Qwen/Qwen2.5-0.5B", "--method", "lora", "--trainer", "dpo", "--seq-len", "2048",
      "--batch-size", "2"]),
])
@pytest.mark.parametrize("bitsandbytes", [True, False])
def test_the_screen_plans_as_the_cli_does(form, args, bitsandbytes: bool, fake_nvml, capsys, monkeypatch) -> None:
    """The screen's plan for a form is ``tuneterm plan --json``'s for the same inputs, field for
    field, also on a machine without bitsandbytes (no 8-bit optimizer, no QLoRA among the changes
    to fit: the screen honours what the installed stack allows, as the command does)."""
    from tuneterm.plan.gpu import probe
    from tuneterm.tui.render import PlanForm, make_plan

    fake_nvml([dict(T4, used=10 * GIB)])
    set_installed(monkeypatch, "bitsandbytes", bitsandbytes)
    view = make_plan(PlanForm(**form), probe())
    d = cli_plan(capsys, *args)
    shown = json.loads(json.dumps(view.plan.to_dict(), default=str))
    assert shown == {k: d[k] for k in shown}
    assert d["fits"] is view.verdict.fits is view.plan.fits
    assert d["peak_gib"] == round(view.plan.estimate.peak_gib, 3)
    needs_bnb = [c["set"] for c in d["to_fit"] if "load_in_4bit" in c["set"] or "8bit" in str(c["set"].get("optim"))]
    if form.get("gpu_memory"):
        assert view.plan.fits is False and view.where == "16.0 GiB (typed)"
        assert bool(needs_bnb) is bitsandbytes  # 8-bit optimizers and QLoRA only where they can run
    else:
        assert view.plan.setup.batch_size == 2 and view.plan.setup.trainer == "dpo"
        assert view.where == "the total memory of 1 x Tesla T4 (15.0 GiB)"
        assert d["gpu"]["capacity_gib"] == view.plan.capacity_gib == 15.0 and d["gpu"]["gpus"] == 1


def test_plan_renderables_warn_on_guesses_and_rank_changes_to_fit() -> None:
    from rich.console import Console

    from tuneterm.plan.facts import resolve_model, table_facts
    from tuneterm.plan.memory import TrainSetup
    from tuneterm.plan.recommend import recommend
    from tuneterm.plan.verdict import fit_verdict
    from tuneterm.tui.render import PlanView, plan_renderables

    def text(plan) -> str:
        console = Console(record=True, width=120)
        for r in plan_renderables(PlanView(plan, "--gpu-memory 24GiB", fit_verdict(plan))):
            console.print(r)
        return console.export_text()

    tight = recommend(table_facts("Qwen/Qwen2.5-7B"), method="qlora", gpu_memory_gib=24.0, seq_len=2048,
                      base=TrainSetup(method="qlora", seq_len=2048, batch_size=4),
                      fixed=frozenset({"method", "batch_size", "seq_len"}))
    shown = text(tight)
    assert "DOES NOT FIT" in shown and "to fit 1: per_device_train_batch_size: 2" in shown
    guessed = recommend(resolve_model("someorg/Mystery-13B", online=False), method="lora", gpu_memory_gib=80.0)
    assert "WARNING: architecture GUESSED" in text(guessed)
