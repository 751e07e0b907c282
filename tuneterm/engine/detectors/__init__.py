"""The built-in log detectors. Importing this package registers them all.

Each module groups detectors by what they look at; every detector is a pure function
``(run, params) -> list[Detection]`` registered with :func:`tuneterm.engine.registry.detector`.
"""

from __future__ import annotations

from tuneterm.engine.detectors import (  # noqa: F401 - imported for registration
    evals,
    events,
    gradients,
    levels,
    numerics,
    preference,
    rl,
    rl_dynamics,
    runtime,
    schedule,
    trends,
)
