"""tuneterm: a terminal diagnostic assistant for people who fine-tune large language models.

``from tuneterm import TunetermCallback`` gives the Trainer callback; it is imported on first use
(it needs transformers), so ``import tuneterm`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneterm.version import __version__

__all__ = ["TunetermCallback", "__version__"]

if TYPE_CHECKING:
    from tuneterm.train.callback import TunetermCallback


def __getattr__(name: str) -> Any:
    """Lazy public attributes: ``TunetermCallback`` imports transformers only when asked for."""
    if name == "TunetermCallback":
        from tuneterm.train.callback import TunetermCallback

        return TunetermCallback
    raise AttributeError(f"module 'tuneterm' has no attribute {name!r}")
