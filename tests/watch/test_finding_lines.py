"""One line per finding, the same everywhere a live run is shown: the watch's plain view, the live
screen's scroll-back, ``tuneterm train``'s follower and the stop reason a run's status keeps."""

from __future__ import annotations

import io

from rich.console import Console

from tuneterm.engine.model import Finding, Fix, Severity
from tuneterm.report.text import finding_summary
from tuneterm.watch.view import LiveView, PlainView

NAN = Finding(
    "N101", "nan-or-inf", Severity.ERROR, "numerics", "grad_norm is nan at 2 of 13 logged steps\x1b[31m",
    12, 13, {}, (), (Fix(key="bf16", value=True, why="bf16 has the range of fp32"),), (),
)


def test_the_plain_view_prints_the_summary_line_and_its_fixes() -> None:
    out = io.StringIO()
    PlainView(out=out, err=io.StringIO()).finding(NAN)
    assert out.getvalue().splitlines() == [
        "error N101 nan-or-inf (step 12-13): grad_norm is nan at 2 of 13 logged steps",
        "  fix: bf16: true # bf16 has the range of fp32",
    ]
    assert finding_summary(NAN, limit=400) == out.getvalue().splitlines()[0]


def test_the_stop_reason_is_the_brief_form_and_every_form_is_inert() -> None:
    assert finding_summary(NAN, brief=True) == "N101 nan-or-inf: grad_norm is nan at 2 of 13 logged steps"
    one_step = Finding("S101", "lr-zero", Severity.ERROR, "schedule", "lr is 0", 5, 5, {}, (), (), ())
    assert finding_summary(one_step) == "error S101 lr-zero (step 5): lr is 0"
    assert len(finding_summary(Finding("X1", "x", Severity.INFO, "c", "m" * 900, None, None, {}, (), (), ()), limit=300)) <= 300


def test_the_live_screen_prints_severity_code_name_then_the_message() -> None:
    view = LiveView("run")
    view.console = Console(file=io.StringIO(), width=200, color_system=None)
    view.finding(NAN)
    text = view.console.file.getvalue()
    assert text.splitlines()[0] == "error N101 nan-or-inf  grad_norm is nan at 2 of 13 logged steps"
    assert "bf16" in text and "\x1b" not in text
