"""The supervisor: ``python -m tuneterm.train.child RUN_DIR``, the detached root of a run.

The launcher starts it with ``start_new_session=True`` (a new session and process group, no
controlling terminal), stdin from /dev/null and stdout/stderr appended to the run's log files, so
neither a closed SSH connection (SIGHUP), nor Ctrl-C in the viewer, nor the launcher's exit reaches
it. It starts the training process (:mod:`tuneterm.train.worker`, directly or through ``accelerate
launch`` for ``--gpus N`` / ``--accelerate-config``) in the same process group, waits for it, and
records how it ended in status.json, including what the training process cannot record itself:
a death by signal (the kernel's OOM killer, ``kill -9``) or an exit without a final state.

Stopping a run (see :func:`tuneterm.runs.control.stop_run`): SIGTERM to this process (its pid is
``status.json: pid``) is forwarded to the training process, which stops gracefully at the next
step end and saves nothing further. The forced stop is SIGKILL to the process group (``pgid``) and
to every process carrying this run's ``TUNETERM_RUN_DIR`` (the ranks of a ``--gpus N`` run live in
sessions of their own).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tuneterm.runs.files import tail
from tuneterm.runs.layout import TERMINAL_STATES, RunDir
from tuneterm.runs.processes import proc_start
from tuneterm.runs.workers import SUPERVISOR_ENV
from tuneterm.runs.writer import now_iso


def worker_command(launch: dict[str, Any], run_dir: Path) -> list[str]:
    """The argv of the training process(es) for ``launch`` (launch.json).

    One process: ``python -m tuneterm.train.worker RUN_DIR``. With ``gpus`` > 1 or an accelerate
    config: ``python -m accelerate.commands.launch --num_processes N [--multi_gpu] [--config_file F]
    -m tuneterm.train.worker RUN_DIR``. ``--multi_gpu`` selects torch.distributed's launcher (N
    processes). On a machine without CUDA the same launcher runs N CPU processes and the worker sets
    ``use_cpu: true``, so accelerate forms a gloo process group (``accelerate launch --cpu`` would
    start a single process unless MPI is installed); that is how the CPU test runs two ranks.
    """
    command = launch.get("command")
    if launch.get("kind") == "command" and isinstance(command, list) and command:
        return [str(a) for a in command]  # `tuneterm watch -- COMMAND`: the user's own argv
    gpus = int(launch.get("gpus") or 1)
    cfg = launch.get("accelerate_config")
    worker = ["-m", "tuneterm.train.worker", str(run_dir)]
    if gpus <= 1 and not cfg:
        return [sys.executable, *worker]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(gpus)]
    if cfg:
        cmd += ["--config_file", str(cfg)]
    else:
        cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        if gpus > 1:
            cmd.append("--multi_gpu")
    return [*cmd, *worker]


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _last_error_line(stderr_log: Path) -> str | None:
    """The last ``SomeError: message`` line of stderr.log (reads at most the last 64 KiB)."""
    for raw in reversed(tail(stderr_log, 65536)):
        line = raw.decode("utf-8", "replace")
        s = line.strip()
        head = s.split(":", 1)[0]
        if ":" in s and (head.endswith(("Error", "Exception")) or head.endswith("Interrupt")) and " " not in head:
            return s[:400]
    return None


def supervise(run_dir: Path) -> int:
    """Start the training process for ``run_dir``, wait for it, record the outcome; returns 0 when
    the run finished (or was stopped on request), else 1."""
    rd = RunDir(run_dir)
    # No terminal can send these, but a stray signal to the group must not end the supervisor
    # before it has recorded the outcome. SIG_IGN for SIGHUP is inherited by the training process.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    launch = rd.read_launch()
    cmd = worker_command(launch, rd.path)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["TUNETERM_RUN_DIR"] = str(rd.path)
    env[SUPERVISOR_ENV] = str(os.getpid())
    rd.update_status(pid=os.getpid(), pid_start=proc_start(os.getpid()), pgid=os.getpgid(0), command=cmd)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, close_fds=True, env=env)  # argv, no shell
    stop_requested = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True
        try:
            rd.update_status(stop_requested=True)
        except OSError:
            pass
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    rc = proc.wait()
    status = rd.read_status()
    stop_requested = stop_requested or bool(status.get("stop_requested"))
    fields: dict[str, Any] = {"exit_code": rc}
    if not status.get("ended"):
        fields["ended"] = now_iso()
    state = status.get("state")
    if rc < 0:
        name = _signal_name(-rc)
        fields["signal"] = name
        fields["state"] = "stopped" if stop_requested else "failed"
        fields["error"] = "stopped on request" if stop_requested else f"training process killed by {name}"
    elif rc != 0:
        if state not in ("failed", "stopped"):
            fields["state"] = "stopped" if stop_requested else "failed"
            fields["error"] = status.get("error") or _last_error_line(rd.stderr) or f"training process exited with code {rc}"
    elif state not in TERMINAL_STATES:
        fields["state"] = "stopped" if stop_requested else "finished"
    try:
        rd.update_status(**fields)
    except OSError as exc:  # disk full: the training process's own records must tell
        print(f"tuneterm: cannot record how the run ended in status.json: {exc}", file=sys.stderr, flush=True)
        return 0 if fields.get("state", state) in ("finished", "stopped") else 1
    final = rd.read_status().get("state")
    notify_end(rd)
    return 0 if final in ("finished", "stopped") else 1


def notify_end(rd: RunDir) -> None:
    """Notify the recorded end of the run (finished, failed, stopped) with its most severe finding,
    when notification URLs are configured (:mod:`tuneterm.report.notify`); never raises."""
    try:
        from tuneterm.report.notify import Notifier
        from tuneterm.train.follow import advise_notice

        notifier = Notifier.configured(advise=advise_notice)
        if notifier is None:
            return
        from tuneterm.train.follow import evaluate_dir

        status = rd.read_status()
        ev = evaluate_dir(rd)
        found = list(ev.findings) if ev is not None else []
        error = status.get("error") if isinstance(status.get("error"), str) else None
        notifier.run_ended(rd, str(status.get("state") or "failed"), error, found, ev.run if ev is not None else None)
        notifier.close()
    except Exception as exc:  # noqa: BLE001 - a notification must never change how the run ends
        import logging

        logging.getLogger("tuneterm.notify").warning("end of run %s not notified: %s", rd.name, exc)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tuneterm.train.child RUN_DIR", file=sys.stderr)
        return 2
    from tuneterm.plan.oom import install

    install()  # the run's findings size an out-of-memory fix with the planner's estimator
    return supervise(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
