"""Config keys transformers renamed: one setting, two spellings, and which spelling to write.

transformers 5 renamed ``gradient_checkpointing`` / ``gradient_checkpointing_kwargs`` of
``TrainingArguments`` to ``activation_checkpointing`` / ``activation_checkpointing_kwargs``. The
old names stay as deprecated aliases (a ``FutureWarning``: "will be removed in v6") that
``TrainingArguments.__post_init__`` uses **only when the new name is not set**; older versions
(all of 4.x, and 5.x before the rename) have only the old names. So for every config and every
run fact tuneterm reads, both names mean one setting, and the value in effect is the new name's
when it is set, else the old one's (:func:`effective`). A key tuneterm writes is the spelling the
config already uses for that setting (:func:`written_name`), else the installed transformers'
preferred one (:func:`preferred`: the new name where ``TrainingArguments`` has it), never both.

Internally (run facts, the memory estimator's setup, rule records) the setting keeps the old
name, which every transformers version up to 6 reads; it is turned into the right spelling
where a key is written for a user. Whether the installed transformers has the new name comes
from the caller (the TRL schema cache's fields, :mod:`tuneterm.preflight.schema`): this module
imports nothing of the training stack.

>>> effective({"gradient_checkpointing": True, "activation_checkpointing": False}, "gradient_checkpointing")
False
>>> written_name("gradient_checkpointing", {}, {"activation_checkpointing"}.__contains__)
'activation_checkpointing'
>>> written_name("gradient_checkpointing", {"gradient_checkpointing": False}, {"activation_checkpointing"}.__contains__)
'gradient_checkpointing'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class KeyAlias:
    """One renamed config key.

    Attributes:
        old: the deprecated name (the only one older versions know; tuneterm's internal name).
        new: the current name, used when set.
        owner: the class whose field it is (where the installed version is looked up).
    """

    old: str
    new: str
    owner: str = "TrainingArguments"


ALIASES: tuple[KeyAlias, ...] = (
    KeyAlias("gradient_checkpointing", "activation_checkpointing"),
    KeyAlias("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"),
)
"""Every renamed key tuneterm reads or writes."""

_BY_NAME: dict[str, KeyAlias] = {name: a for a in ALIASES for name in (a.old, a.new)}

Accepts = Callable[[str], bool]
"""Whether the installed config classes have a field (e.g. ``schema.accepts`` for one trainer)."""


def alias_of(key: str) -> KeyAlias | None:
    """The rename ``key`` belongs to (under either name), or None for an ordinary key."""
    return _BY_NAME.get(key)


def spellings(key: str) -> tuple[str, ...]:
    """Every name of ``key``'s setting: ``(old, new)`` for a renamed key, else ``(key,)``."""
    a = _BY_NAME.get(key)
    return (key,) if a is None else (a.old, a.new)


def same_setting(a: str, b: str) -> bool:
    """Whether two keys name one setting.

    >>> same_setting("activation_checkpointing", "gradient_checkpointing"), same_setting("bf16", "fp16")
    (True, False)
    """
    return a == b or b in spellings(a)


def internal(key: str) -> str:
    """The name tuneterm uses inside (run facts, rules, the estimator): the old one."""
    a = _BY_NAME.get(key)
    return key if a is None else a.old


def spelled_as(mapping: Mapping[str, Any], key: str) -> str | None:
    """The name ``mapping`` sets ``key``'s setting under (the one in effect when it sets both),
    or None when it sets neither."""
    a = _BY_NAME.get(key)
    if a is None:
        return key if key in mapping else None
    if mapping.get(a.new) is not None:
        return a.new
    if mapping.get(a.old) is not None:
        return a.old
    return a.new if a.new in mapping else (a.old if a.old in mapping else None)


def effective(mapping: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The value of ``key``'s setting in ``mapping`` as transformers resolves it: the new name's
    when not None, else the old name's, else ``default``."""
    name = spelled_as(mapping, key)
    value = mapping.get(name) if name is not None else None
    return default if value is None else value


def in_effect(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """``mapping`` without the spelling transformers ignores, where it sets both names of a
    setting (its order kept otherwise)."""
    drop = set()
    for a in ALIASES:
        used = spelled_as(mapping, a.old)
        if used is not None:
            drop.add(a.old if used == a.new else a.new)
    return {k: v for k, v in mapping.items() if k not in drop}


def preferred(key: str, accepts: Accepts | None, *, major: int | None = None) -> str:
    """The name the installed transformers prefers for ``key``'s setting.

    Args:
        key: either name of a setting (an ordinary key is returned as it is).
        accepts: whether the installed config classes have a field; None when unknown.
        major: the installed transformers major version, consulted only when ``accepts`` is None:
            6 and later have only the new names; otherwise the old name, which every version
            before 6 honours as long as the new one is not set.
    """
    a = _BY_NAME.get(key)
    if a is None:
        return key
    if accepts is None:
        return a.new if major is not None and major >= 6 else a.old
    return a.new if accepts(a.new) else a.old


def written_name(key: str, config: Mapping[str, Any], accepts: Accepts | None, *, major: int | None = None) -> str:
    """The name to write ``key``'s setting under for a run whose config is ``config``: the one the
    config uses already (a change under the other name would be ignored, or duplicate it), else
    :func:`preferred`."""
    a = _BY_NAME.get(key)
    if a is None:
        return key
    return spelled_as(config, key) or preferred(key, accepts, major=major)


def respell(config: Mapping[str, Any], accepts: Accepts | None, *, major: int | None = None) -> dict[str, Any]:
    """``config`` with every renamed setting written once, under the preferred name, holding the
    value in effect (what ``tuneterm train`` launches: no deprecation warning, no ignored alias).

    >>> respell({"gradient_checkpointing": True, "bf16": True}, {"activation_checkpointing"}.__contains__)
    {'activation_checkpointing': True, 'bf16': True}
    """
    out: dict[str, Any] = {}
    for k, v in config.items():
        a = _BY_NAME.get(k)
        if a is None:
            out[k] = v
            continue
        name = preferred(k, accepts, major=major)
        if name not in out:
            out[name] = effective(config, k)
    return out


def patched(config: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with ``patch`` applied, a patched renamed setting held under the patch's name
    only: the other spelling left beside it would be ignored, or override the patch (``--set
    gradient_checkpointing=false`` on a file that says ``activation_checkpointing: true``).

    >>> patched({"activation_checkpointing": True, "lr": 1}, {"gradient_checkpointing": False})
    {'lr': 1, 'gradient_checkpointing': False}
    """
    out = {k: v for k, v in config.items() if not any(same_setting(k, p) and k != p for p in patch)}
    out.update(patch)
    return out
