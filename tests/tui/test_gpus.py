"""GPUs screen: live panels from (fake) NVML, processes, refresh, and the no-GPU panel."""

from __future__ import annotations

import os

from tests.tui.conftest import H100, T4, make_app, screen_text, wait_for
from tuneterm.tui.messages import GpuSampled
from tuneterm.tui.screens.gpus import GpusScreen


async def test_two_gpus_with_a_process(fake_nvml) -> None:
    fake_nvml([dict(H100, procs=[(os.getpid(), 3 * 2**30)]), dict(T4, no_power=True)])
    messages: list[object] = []
    app = make_app(initial="gpus")
    async with app.run_test(size=(100, 30), message_hook=messages.append) as pilot:
        await wait_for(pilot, lambda: "GPU 1" in screen_text(app))
        text = screen_text(app)
        assert isinstance(app.screen, GpusScreen)
        assert "GPU 0 · NVIDIA H100 80GB HBM3" in text and "GPU 1 · Tesla T4" in text
        assert "12.0 / 80.0 GiB" in text and "68.0 free" in text  # used / total, free
        assert "87%" in text and "61 C" in text and "power 350 W / 700 W" in text
        assert f"pid {os.getpid()}" in text and "3.00 GiB" in text  # the process holding memory
        assert "driver 550.54.15" in text and "CUDA 12.4" in text
        # refreshed in a worker: several samples arrive, each posted as a message
        await wait_for(pilot, lambda: len(app.screen.history[0]) >= 3)
        assert sum(isinstance(m, GpuSampled) for m in messages) >= 3


async def test_live_values_change(fake_nvml) -> None:
    gpu = dict(H100)
    fake_nvml([gpu])
    app = make_app(initial="gpus")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "87%" in screen_text(app))
        gpu["util"] = 12
        gpu["used"] = 70 * 2**30
        await wait_for(pilot, lambda: "12%" in screen_text(app) and "70.0 / 80.0 GiB" in screen_text(app))


async def test_no_gpu_panel_says_what_still_works(fake_nvml) -> None:
    fake_nvml([], init_error="Driver Not Loaded")
    app = make_app(initial="gpus")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "No GPU" in screen_text(app))
        text = screen_text(app)
        assert "Driver Not Loaded" in text
        assert "What tuneterm can still do" in text
        assert "Doctor" in text and "Plan" in text and "Runs" in text
