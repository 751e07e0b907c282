"""Reward functions for GRPO, and how the names in ``reward_funcs`` are resolved.

A name in ``reward_funcs`` is, in this order:

1. a tuneterm built-in (:data:`BUILTINS`): ``length_reward``, ``format_reward``,
   ``constant_reward`` (always 1.0; it exists to demonstrate ``grpo-zero-reward-variance``);
2. a name from TRL's registry (the ones ``trl grpo`` knows: ``accuracy_reward``,
   ``reasoning_accuracy_reward``, ``think_format_reward``, ``get_soft_overlong_punishment``);
3. ``module:function`` or ``package.module.function`` from the user's own code, imported with the
   run's working directory first on ``sys.path`` (as ``trl grpo`` does). Import is deferred to the
   training process: the launcher only checks the spelling.

Every reward function follows TRL's contract: ``f(completions, **kwargs) -> list[float]``, where a
completion is a string (standard datasets) or a list of ``{"role", "content"}`` messages
(conversational datasets).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tuneterm.errors import ConfigError

RewardFunc = Callable[..., list[float]]

_TRL_REGISTRY = ("accuracy_reward", "reasoning_accuracy_reward", "think_format_reward", "get_soft_overlong_punishment")
_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*([.:][A-Za-z_]\w*)$")


def _text(completion: Any) -> str:
    """The text of one completion, standard (str) or conversational (list of messages)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        last = completion[-1]
        if isinstance(last, dict):
            return str(last.get("content", ""))
    return str(completion)


def length_reward(completions: Sequence[Any], target_chars: int = 40, **_: Any) -> list[float]:
    """1.0 for a completion of ``target_chars`` characters, falling linearly to 0 at 0 or 2x.

    >>> length_reward(["x" * 40, "", "x" * 80])
    [1.0, 0.0, 0.0]
    """
    out = []
    for c in completions:
        n = len(_text(c))
        out.append(max(0.0, 1.0 - abs(n - target_chars) / target_chars))
    return out


def format_reward(completions: Sequence[Any], **_: Any) -> list[float]:
    """0.5 for a non-empty completion, +0.5 when it is one sentence ending with ``.``, ``!`` or ``?``.

    >>> format_reward(["A cat sits.", "", "no end"])
    [1.0, 0.0, 0.5]
    """
    out = []
    for c in completions:
        t = _text(c).strip()
        score = 0.0
        if t:
            score += 0.5
            if t[-1] in ".!?" and t.count(".") + t.count("!") + t.count("?") == 1:
                score += 0.5
        out.append(score)
    return out


def constant_reward(completions: Sequence[Any], **_: Any) -> list[float]:
    """Always 1.0: every completion in a group ties, so the advantage (and the gradient) is zero.

    A deliberately broken reward, for demonstrating the ``grpo-zero-reward-variance`` rule.

    >>> constant_reward(["a", "b"])
    [1.0, 1.0]
    """
    return [1.0 for _ in completions]


BUILTINS: dict[str, RewardFunc] = {
    "length_reward": length_reward,
    "format_reward": format_reward,
    "constant_reward": constant_reward,
}


def check_reward_names(names: Sequence[Any], source: str = "config") -> None:
    """Check the spelling of every ``reward_funcs`` entry without importing user code.

    Raises:
        ConfigError: a name that is neither a built-in, a TRL registry name, nor a dotted /
            ``module:function`` path.
    """
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{source}: reward_funcs entries must be names, got {name!r}")
        if name in BUILTINS or name in _TRL_REGISTRY or _DOTTED.match(name) and ("." in name or ":" in name):
            continue
        known = ", ".join([*BUILTINS, *_TRL_REGISTRY])
        raise ConfigError(
            f"{source}: unknown reward function {name!r} (built-ins: {known}; or module:function from your code)"
        )


def resolve_reward_funcs(names: Sequence[str], cwd: str | None = None) -> list[RewardFunc]:
    """Turn ``reward_funcs`` names into callables (see the module docstring for the order).

    Raises:
        ConfigError: a module or attribute that cannot be imported, or a non-callable.
    """
    funcs: list[RewardFunc] = []
    for name in names:
        if name in BUILTINS:
            funcs.append(BUILTINS[name])
            continue
        if name in _TRL_REGISTRY:
            from trl import rewards as trl_rewards

            fn = getattr(trl_rewards, name)
            if name == "get_soft_overlong_punishment":  # TRL's script uses these fixed values
                fn = fn(max_completion_len=1280, soft_punish_cache=256)
            funcs.append(fn)
            continue
        module_name, _, attr = name.rpartition(":") if ":" in name else name.rpartition(".")
        where = cwd or os.getcwd()
        if where not in sys.path:
            sys.path.insert(0, where)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"reward function {name!r}: cannot import module {module_name!r} ({exc})") from None
        fn = getattr(module, attr, None)
        if not callable(fn):
            raise ConfigError(f"reward function {name!r}: {module_name!r} has no callable {attr!r}")
        funcs.append(fn)
    return funcs
