"""Every docstring example in the package runs and shows what it says.

Docstring examples are documentation a reader trusts; run through the standard library's doctest
runner here, they are checked on every test run (and in CI) like any other test. A module that
needs the `train` extra skips cleanly where that extra is not installed.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import tuneterm
from tests.conftest import HAS_TRAIN_EXTRA, TRAIN_EXTRA

# Packages whose examples may call into the training stack at run time (eval's ROUGE, say).
_TRAIN_PACKAGES = ("tuneterm.train", "tuneterm.evaluation")


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(tuneterm.__path__, "tuneterm.") if ".samples." not in m.name)


def _import(name: str) -> object:
    if not HAS_TRAIN_EXTRA and name.startswith(_TRAIN_PACKAGES):
        pytest.skip(f"{name} needs the train extra")
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in TRAIN_EXTRA and importlib.util.find_spec(missing) is None:
            pytest.skip(f"{name} needs the train extra ({missing})")
        raise


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    module = _import(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed (output above)"


def test_the_package_has_docstring_examples() -> None:
    # Guards the walk itself: an empty module list would pass every parametrized case vacuously.
    assert len(_modules()) > 50
