"""Plan screen: memory breakdown against the (fake) GPUs' free memory, recommendations, config."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.tui.conftest import H100, fill, make_app, notes, screen_text, wait_for
from tuneterm.tui.screens.plan import PlanScreen


async def type_model(pilot, model: str) -> None:
    await fill(pilot, "#model", model)


async def test_plan_against_gpu_free_memory_and_write_config(fake_nvml, tmp_path: Path) -> None:
    fake_nvml([dict(H100, used=60 * 2**30)])  # 20 GiB free of 80
    app = make_app(initial="plan")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        await type_model(pilot, "Qwen/Qwen2.5-0.5B")
        await wait_for(pilot, lambda: screen.plan is not None)
        text = screen_text(app)
        assert "Qwen/Qwen2.5-0.5B" in text and "FITS" in text
        assert "20.0 GiB free on GPU 0" in text  # fitted to free memory, not the 80 GiB total
        assert "GPU 0 free" in text and "needed" in text
        assert screen.plan.estimate.peak_gib < 20
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


async def test_plan_does_not_fit_and_user_batch(fake_nvml) -> None:
    fake_nvml([dict(H100, total=16 * 2**30, used=14 * 2**30)])  # 2 GiB free
    app = make_app(initial="plan")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await pilot.click("#batch")
        await pilot.press("4")
        await type_model(pilot, "meta-llama/Llama-3.1-8B")
        await wait_for(pilot, lambda: screen.plan is not None)
        assert screen.plan.setup.batch_size == 4  # the user's batch is kept
        assert screen.plan.fits is False
        assert "DOES NOT FIT" in screen_text(app)


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
