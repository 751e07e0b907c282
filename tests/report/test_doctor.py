"""The doctor report: layout at 80 columns, NO_COLOR, inert log text, charts with finding marks."""

from __future__ import annotations

import io
import re

import pytest
from rich.cells import cell_len

from tuneterm.logs.model import Run
from tuneterm.report.charts import chart_lines, decimate, nice_ticks, render_charts
from tuneterm.report.doctor import make_console, render_doctor

from .builders import HOSTILE_SOURCE, clean_result, make_findings, make_result, make_run


def doctor_text(results, *, width: int = 80, verbose: bool = False, charts: bool = True, **console_kw) -> str:
    buf = io.StringIO()
    console = make_console(width, file=buf)
    if console_kw:
        console = type(console)(file=buf, width=width, markup=False, emoji=False, highlight=False, **console_kw)
    render_doctor(results, console, verbose=verbose, charts=charts)
    return buf.getvalue()


GOLDEN = """\
✗ 1 error, 1 warning in runs/a/trainer_state.json (SFT, 500 steps)
  SFT · llama (vocab 32,000) · step 500/500 · epoch 0.089 of 1 · batch 1×8 = 8 ·
  LoRA r16/α32 · format trainer_state
  note: salvaged 50 entries [bold red]x[/]

gradients
  ✗ G101 zero-grad-norm  grad_norm is 0.0 at 49 of 50 logged steps (steps
  10–500)
      evidence  count 49 · total 50 · worst nan · peak inf · zero_steps 10: 0,
      20: 0
      likely causes
        1. LoRA adapters frozen
        2. gradient checkpointing without enable_input_require_grads
      fixes
        gradient_checkpointing_kwargs: {"use_reentrant": false}  # re-enables
        input grads so LoRA gets a gradient
        $ python -c 'model.print_trainable_parameters()'  # shows which
        parameters require grad

runtime
  ! X101 run-crashed  the run ended in KeyboardInterrupt: [bold red]x[/] (step
  490)
      evidence  exception KeyboardInterrupt [bold red]x[/]

1 error, 1 warning, 1 info hidden (-v to show) · 4 rule checks · tuneterm 0.1.0
"""


def _rstrip_lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def test_golden_report_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = doctor_text([make_result("runs/a/trainer_state.json")], charts=False)
    assert _rstrip_lines(out) == GOLDEN


def test_clean_run_verdict_and_verbose_infos() -> None:
    out = doctor_text([clean_result()], charts=False)
    assert out.splitlines()[0] == "✓ No problems found in runs/healthy/trainer_state.json (SFT, 500 steps)"
    verbose = doctor_text([make_result("runs/a/trainer_state.json")], charts=False, verbose=True)
    assert verbose.splitlines()[0].startswith("✗ 1 error, 1 warning, 1 info in ")
    assert "• S103 low-data-coverage" in verbose and "max_steps: 5625  # one full epoch" in verbose
    assert "see  huggingface/peft#137" in verbose


@pytest.mark.parametrize("width", [60, 80, 120])
def test_no_line_overflows_the_width_charts_included(width: int) -> None:
    out = doctor_text([make_result(), clean_result()], width=width)
    assert "┤" in out  # charts were drawn
    for line in out.splitlines():
        assert cell_len(line) <= width, line


def test_hostile_text_is_inert_even_on_a_colour_terminal() -> None:
    out = doctor_text([make_result(HOSTILE_SOURCE)], verbose=True, force_terminal=True, color_system="truecolor")
    # Styling escapes are ours (SGR: ESC [ ... m); nothing else may appear: no OSC title write,
    # no clear screen, no BEL.
    assert "\x07" not in out and "\x1b]" not in out and "\x1b[2J" not in out
    assert not re.findall(r"\x1b\[[0-9;]*[A-Za-ln-z]", out)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert "[bold red]x[/]" in plain  # Rich markup from the log is shown, not interpreted
    assert "pwned" not in plain


def test_no_color_and_pipes_get_no_colour_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    piped = doctor_text([make_result()])
    assert "\x1b" not in piped
    monkeypatch.setenv("NO_COLOR", "1")
    forced = doctor_text([make_result()], force_terminal=True)
    assert not re.search(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;|48;)", forced)  # no foreground/background colour


def test_charts_mark_the_steps_where_findings_begin() -> None:
    run = make_run("x")
    charts = render_charts(run, make_findings("x"), 80)
    assert [c.title for c in charts] == ["loss", "grad_norm", "learning rate"]
    loss = charts[0]
    assert [label for label, _ in loss.legend] == ["train", "eval"]
    assert [(step, code) for step, code, _ in loss.marks] == [(10, "G101"), (490, "X101")]
    text = re.sub(r"\x1b\[[0-9;]*m", "", loss.ansi)
    rows = text.splitlines()
    assert len(rows) == 12 and all(cell_len(r) <= 80 for r in rows)
    assert any("┊" in r for r in rows) and sum("│" in r for r in rows) >= 8  # warning dotted, error solid
    # Infos are marked only in verbose mode.
    assert all(code != "S103" for _, code, _ in loss.marks)
    assert any(code == "S103" for _, code, _ in render_charts(run, make_findings("x"), 80, with_infos=True)[0].marks)


def test_constant_learning_rate_is_drawn_at_its_value_not_on_a_zero_axis() -> None:
    # A constant rate of 2e-4 drawn on plotext's default -1..1 axis sat on the "0.0" tick: it
    # looked like a learning rate of zero.
    run = Run(source="c", format="jsonl")
    for s in range(1, 51):
        run.add_train("loss", s, 2.0 - s * 0.01)
        run.add_train("learning_rate", s, 2e-4)
    lr = next(c for c in render_charts(run, [], 80) if c.title == "learning rate")
    text = re.sub(r"\x1b\[[0-9;]*m", "", lr.ansi)
    labels = [row.split("┤")[0].strip() for row in text.splitlines() if "┤" in row]
    assert "0.0002" in labels and not any(lab in ("0.0", "-1.0", "1.0") for lab in labels)


def test_chart_selection_by_trainer_kind() -> None:
    grpo = Run(source="g", format="jsonl")
    for s in range(1, 30):
        grpo.add_train("loss", s, 0.0)
        grpo.add_train("reward", s, 0.5)
        grpo.add_train("reward_std", s, 0.0)
    grpo.facts.trainer_kind = "grpo"
    assert [t for t, _ in chart_lines(grpo)] == ["loss", "reward"]
    dpo = Run(source="d", format="jsonl")
    for s in range(1, 30):
        dpo.add_train("rewards/chosen", s, -0.01 * s)
        dpo.add_train("rewards/rejected", s, -0.02 * s)
        dpo.add_train("rewards/margins", s, 0.01 * s)
    dpo.facts.trainer_kind = "dpo"
    assert [(t, [ln.label for ln in lines]) for t, lines in chart_lines(dpo)] == [("rewards", ["chosen", "rejected", "margins"])]
    single = Run(source="s", format="jsonl")
    single.add_train("loss", 1, float("nan"))
    single.add_train("loss", 2, 1.0)
    assert chart_lines(single) == []  # one finite point is not a chart


def test_decimation_keeps_spikes_and_bounds_points() -> None:
    steps = list(range(300_000))
    values = [1.0] * 300_000
    values[123_457] = 40.0
    values[200_001] = float("nan")
    xs, ys = decimate(steps, values, 400)
    assert len(xs) <= 400 and 40.0 in ys and xs == sorted(xs)
    assert nice_ticks(0, 215_337)[:3] == [0, 50_000, 100_000]
