"""The terminal app (Textual): the only package that imports textual.

``tuneterm`` with no arguments (or ``tuneterm ui``) opens :class:`~tuneterm.tui.app.TunetermApp`:
GPUs, Plan, Runs (with a live run view) and Doctor screens over the library packages (``plan``,
``train``, ``watch``, ``logs``, ``engine``, ``report``). The TUI adds screens, not logic:

``app``        the App: modes, global bindings, command palette, theme
``screens/``   one module per screen (gpus, plan, runs, run_view, doctor) and the modals
``render``     pure functions that turn library results into Rich renderables and snapshots
``messages``   what the thread workers post (workers never touch widgets)

Import :mod:`tuneterm.tui.app` only when the app is about to run: it loads Textual.
"""

from __future__ import annotations
