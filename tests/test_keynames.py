"""The renamed-key table: both names read as one setting the way transformers resolves them, and
the name written is the config's own, else the installed one, never both."""

from __future__ import annotations

import pytest

from tuneterm.keynames import (
    alias_of,
    effective,
    in_effect,
    internal,
    preferred,
    respell,
    same_setting,
    spelled_as,
    written_name,
)

NEW = {"activation_checkpointing", "activation_checkpointing_kwargs"}.__contains__
OLD_ONLY = {"gradient_checkpointing", "gradient_checkpointing_kwargs"}.__contains__


@pytest.mark.parametrize(("cfg", "value"), [
    ({"activation_checkpointing": True}, True),
    ({"gradient_checkpointing": False}, False),
    ({"activation_checkpointing": False, "gradient_checkpointing": True}, False),  # the alias is ignored
    ({"activation_checkpointing": None, "gradient_checkpointing": True}, True),  # unset new name: the alias
    ({}, "default"),
])
def test_value_in_effect_as_transformers_resolves_it(cfg: dict[str, object], value: object) -> None:
    for key in ("gradient_checkpointing", "activation_checkpointing"):
        assert effective(cfg, key, "default") == value


def test_ordinary_keys_pass_through() -> None:
    assert alias_of("bf16") is None and internal("bf16") == "bf16"
    assert effective({"bf16": True}, "bf16") is True and preferred("bf16", NEW) == "bf16"
    assert written_name("bf16", {}, NEW) == "bf16" and not same_setting("bf16", "fp16")
    assert internal("activation_checkpointing_kwargs") == "gradient_checkpointing_kwargs"


def test_in_effect_drops_the_ignored_spelling() -> None:
    cfg = {"gradient_checkpointing": True, "activation_checkpointing": False, "lr": 1}
    assert in_effect(cfg) == {"activation_checkpointing": False, "lr": 1}
    assert in_effect({"gradient_checkpointing": True, "activation_checkpointing": None}) == {"gradient_checkpointing": True}
    assert spelled_as({"lr": 1}, "gradient_checkpointing") is None


def test_written_name_prefers_the_configs_own_then_the_installed() -> None:
    assert written_name("gradient_checkpointing", {"activation_checkpointing": False}, OLD_ONLY) == "activation_checkpointing"
    assert written_name("activation_checkpointing", {"gradient_checkpointing": False}, NEW) == "gradient_checkpointing"
    assert written_name("gradient_checkpointing", {}, NEW) == "activation_checkpointing"
    assert written_name("activation_checkpointing", {}, OLD_ONLY) == "gradient_checkpointing"
    # installed version unknown: the old name (honoured before v6 unless the new one is set); v6: the new
    assert written_name("gradient_checkpointing", {}, None) == "gradient_checkpointing"
    assert written_name("gradient_checkpointing", {}, None, major=6) == "activation_checkpointing"


def test_respell_writes_each_setting_once_under_the_installed_name() -> None:
    cfg = {"lr": 1, "gradient_checkpointing": True, "activation_checkpointing": False,
           "gradient_checkpointing_kwargs": {"use_reentrant": False}}
    assert respell(cfg, NEW) == {"lr": 1, "activation_checkpointing": False,
                                 "activation_checkpointing_kwargs": {"use_reentrant": False}}
    assert respell({"activation_checkpointing": True}, OLD_ONLY) == {"gradient_checkpointing": True}
    assert respell({"lr": 1}, NEW) == {"lr": 1}
