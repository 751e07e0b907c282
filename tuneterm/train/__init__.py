"""Launching and recording training runs (the only package, with preflight, that touches the
training stack, always lazily).

Modules: :mod:`~tuneterm.train.config` (read, ``--set``, infer trainer, validate with TRL's
dataclasses), :mod:`~tuneterm.runs.layout` (the run directory and its schema),
:mod:`~tuneterm.train.launch` (create the run, start the detached supervisor),
:mod:`~tuneterm.train.child` (the supervisor), :mod:`~tuneterm.train.worker` and
:mod:`~tuneterm.train.runner` (the training process and the TRL runner),
:mod:`~tuneterm.train.callback` (the TrainerCallback writing the run files),
:mod:`~tuneterm.train.follow` (progress lines, evaluation, ``--stop-on``),
:mod:`~tuneterm.assets.builtin` (tiny model and data),
:mod:`~tuneterm.train.rewards` (GRPO rewards), :mod:`~tuneterm.train.faults` (test-only faults).
"""
