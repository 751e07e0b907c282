"""``tuneterm --help`` and ``check`` must not import the training stack or the TUI."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import corpus_file

HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "textual", "accelerate", "bitsandbytes")

_SCRIPT = """
import sys
from tuneterm.main import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
print('HEAVY=' + ','.join(heavy), file=sys.stderr)
print('EXIT=' + str(code), file=sys.stderr)
"""


def _loaded(*args: str) -> tuple[str, str]:
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(heavy=set(HEAVY)), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )
    lines = dict(line.split("=", 1) for line in proc.stderr.splitlines() if line.startswith(("HEAVY=", "EXIT=")))
    return lines["HEAVY"], lines["EXIT"]


def test_help_imports_nothing_heavy() -> None:
    heavy, code = _loaded("--help")
    assert (heavy, code) == ("", "0")


def test_check_imports_nothing_heavy() -> None:
    for fmt in ("text", "json", "sarif", "junit", "github"):
        heavy, code = _loaded("check", str(corpus_file("014_")), "--format", fmt)
        assert heavy == "" and code == "0", (fmt, heavy, code)


def test_doctor_imports_nothing_heavy() -> None:
    heavy, code = _loaded("doctor", str(corpus_file("001_")), "--width", "80")
    assert heavy == "" and code in ("0", "1")
