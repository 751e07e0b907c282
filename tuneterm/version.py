"""The package version, in one place: the bottom layer, so every module may import it.

``pyproject.toml`` reads it from here (hatch's version source), and :mod:`tuneterm` re-exports it as
``tuneterm.__version__``. Modules of the layers import it from this module rather than from the
package root, whose lazy ``TunetermCallback`` belongs to the training layer.
"""

from __future__ import annotations

__version__ = "0.1.0"
