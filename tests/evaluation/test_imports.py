"""The eval command and the torch-free parts of tuneterm.evaluation import nothing heavy."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "datasets", "trl", "textual", "rouge_score")


def test_light_modules_import_no_training_stack() -> None:
    code = (
        "import sys\n"
        "import tuneterm.cli, tuneterm.cli.evaluate\n"
        "import tuneterm.evaluation, tuneterm.engine.detectors.degenerate, tuneterm.engine.detectors.eval_report\n"
        "import tuneterm.evaluation.metrics, tuneterm.evaluation.data, tuneterm.evaluation.probes\n"
        "import tuneterm.evaluation.results, tuneterm.evaluation.models, tuneterm.evaluation.runner\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout}"


def test_eval_help_lists_the_documented_options() -> None:
    out = subprocess.run([sys.executable, "-m", "tuneterm", "eval", "--help"], capture_output=True, text=True,
                         timeout=60, env={"COLUMNS": "200", "PATH": ""}, check=False)
    assert out.returncode == 0, out.stderr
    for opt in ("--base", "--data", "--split", "--n", "--max-new-tokens", "--probes", "--format",
                "--trust-remote-code", "--fail-on"):
        assert opt in out.stdout
