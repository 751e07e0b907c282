"""The run directory as a layer of its own, between the report emitters and the rule engine.

Everything that knows what a tuneterm run directory holds lives here; every face (``doctor``,
``check``, ``watch``, ``runs``, the headless follower of ``train``, the terminal app) reads run
directories and diagnoses sources through it. Modules (all light: no torch, no textual):

``layout``     file names (defined once), :class:`~tuneterm.runs.layout.RunDir`, :func:`~tuneterm.runs.layout.is_run_dir`
``writer``     atomic JSON writes (temp file + ``os.replace``)
``files``      the one tail reader and the one tolerant JSON Lines row reader
``processes``  is a pid alive (``/proc``, zombies count as gone; pid + start time pin a process)
``workers``    each training process's own record (``worker-<rank>.json``) and whether it runs
``status``     status.json as a typed :class:`~tuneterm.logs.model.RunStatus`; shown state, ``died``
``progress``   progress marks of a live run (for ``run-stalled``)
``memory``     the planner's estimate beside the measured CUDA peak
``load``       a run directory into a :class:`~tuneterm.logs.model.Run`; :func:`~tuneterm.runs.load.load_source` for any source
``follow``     following a growing run directory
``live``       :class:`~tuneterm.runs.live.LiveEvaluator`: follow + incremental rule evaluation
``control``    is a run alive, stop it (graceful, then forced; every process of the run)
``diagnose``   :func:`~tuneterm.runs.diagnose.diagnose`, the one entry every face calls
``info``       ``tuneterm runs`` rows, ``RUN`` argument resolution
"""

from __future__ import annotations
