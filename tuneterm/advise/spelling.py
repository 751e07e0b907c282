"""Which spelling of a renamed config key advice writes (see :mod:`tuneterm.keynames`).

Rule records and detectors name a renamed setting by its old, internal name
(``gradient_checkpointing``). Before a key reaches a user as something to copy (a prescription, a
patched config, a finding's fix for one config) it is written under the name that works for that
run: the one its config already uses, else the one the installed transformers prefers, read from
the installed TRL schema's fields (``TrainingArguments`` fields are fields of every TRL config).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

from tuneterm.advise.context import RunContext
from tuneterm.engine.model import Finding, Fix
from tuneterm.keynames import Accepts, alias_of, written_name


def context_accepts(ctx: RunContext) -> Accepts | None:
    """Whether the installed TRL config of ``ctx``'s trainer has a field, or None without a schema."""
    schema = ctx.schema
    if schema is None:
        return None
    return lambda key: schema.accepts(ctx.trainer, key)


def written_key(key: str, ctx: RunContext) -> str:
    """The name ``key``'s setting is written under for the run of ``ctx`` (an ordinary key as it is)."""
    if alias_of(key) is None:
        return key
    return written_name(key, ctx.config, context_accepts(ctx), major=ctx.transformers_major)


def fields_accept(fields: Collection[str] | None) -> Accepts | None:
    """:data:`~tuneterm.keynames.Accepts` over a set of field names (None: not known)."""
    return None if fields is None else fields.__contains__


def respell_fixes(findings: Sequence[Finding], name: Callable[[str], str]) -> list[Finding]:
    """``findings`` with every fix key of a renamed setting written as ``name(key)`` says.

    Only findings whose fixes change are rebuilt; others are returned as they are.
    """
    out: list[Finding] = []
    for f in findings:
        if not any(x.key is not None and alias_of(x.key) is not None for x in f.fixes):
            out.append(f)
            continue
        fixes = tuple(_respelled(x, name) for x in f.fixes)
        out.append(replace(f, fixes=fixes))
    return out


def _respelled(fix: Fix, name: Callable[[str], str]) -> Fix:
    if fix.key is None or alias_of(fix.key) is None:
        return fix
    return replace(fix, key=name(fix.key))
