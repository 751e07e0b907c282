"""Notifications through apprise: a run finished, failed, died, stalled, or an error fired.

Where the URLs come from (all of them are used, duplicates once):

1. ``--notify URL`` on ``tuneterm train`` / ``tuneterm watch`` (repeatable), or
   ``TunetermCallback(notify=[...])``;
2. ``$TUNETERM_NOTIFY``: one or more apprise URLs separated by spaces or commas;
3. the user's config file, ``$XDG_CONFIG_HOME/tuneterm/config.yaml`` (default
   ``~/.config/tuneterm/config.yaml``)::

       notify:
         - ntfy://ntfy.sh/my-training-topic
         - json://127.0.0.1:8080/hook

Any apprise URL works (Slack, Discord, ntfy, Telegram, e-mail, a JSON webhook ...; see
https://github.com/caronc/apprise/wiki). One message per event: the run, the host, what happened,
the finding and the first change the advisor prescribes for it (the caller hands the advisor in,
:data:`Advisor`: this emitter sits below it; the finding's own first fix when there is none).

Sending never blocks or breaks what is being watched: messages go to a daemon thread that calls
apprise (imported there, not at start-up), each delivery is bounded by apprise's connect/read
timeouts (``cto``/``rto``, 4 s and 8 s unless the URL sets them), a failure is logged (logger
``tuneterm.notify`` and ``notify.log`` in the run directory) and dropped, and :meth:`Notifier.close`
waits at most 30 seconds for the queue at the end.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from tuneterm.engine.model import Finding
from tuneterm.logs.model import Run
from tuneterm.report.prescription import Prescription
from tuneterm.textsafe import inert_line

if TYPE_CHECKING:
    from tuneterm.runs.layout import RunDir

log = logging.getLogger("tuneterm.notify")

_SPLIT = re.compile(r"[\s,]+")
_CLOSE_WAIT_S = 30.0  # importing apprise alone can take seconds on a busy machine

Advisor = Callable[[Run, Sequence[Finding]], Prescription]
"""The advisor's answer for a run and its findings (:func:`tuneterm.advise.advise`), handed in by
the watchers and the launcher, which sit above it."""


@dataclass(frozen=True, slots=True)
class Message:
    """One notification: ``title`` and ``body`` as sent, ``key`` for de-duplication, ``log_dir``
    where a delivery failure is recorded (the run directory, when there is one)."""

    key: str
    title: str
    body: str
    log_dir: Path | None = None


def config_path() -> Path:
    """The user's tuneterm config file (``$XDG_CONFIG_HOME/tuneterm/config.yaml``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tuneterm" / "config.yaml"


def configured_urls(extra: Iterable[str] = ()) -> list[str]:
    """The notification URLs: ``extra`` (``--notify``), ``$TUNETERM_NOTIFY``, the config file.

    An unreadable or malformed config file is logged and ignored: a notification setting must
    never stop a run from being watched.
    """
    urls = [u for u in extra if u]
    env = os.environ.get("TUNETERM_NOTIFY", "")
    urls += [u for u in _SPLIT.split(env) if u]
    path = config_path()
    if path.is_file():
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            log.warning("ignoring %s: %s", path, inert_line(str(exc), 200))
            doc = None
        value = doc.get("notify") if isinstance(doc, dict) else None
        if isinstance(value, str):
            value = _SPLIT.split(value)
        if isinstance(value, list):
            urls += [u for u in value if isinstance(u, str) and u]
    return list(dict.fromkeys(urls))


def _claim(run_dir: Path, key: str) -> bool:
    """True when this process is the first to claim ``key`` for ``run_dir`` (or cannot tell)."""
    marker = run_dir / ".notified" / re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:200]
    try:
        marker.parent.mkdir(exist_ok=True)
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    except OSError:
        return True  # a read-only run directory: better a duplicate than silence
    return True


def _with_timeouts(url: str) -> str:
    """Bound every delivery: apprise's connect (``cto``) and read (``rto``) timeouts."""
    if "cto=" in url or "rto=" in url:
        return url
    return url + ("&" if "?" in url else "?") + "cto=4&rto=8"


def _fix_text(f: Finding) -> str | None:
    fixes = f.fixes
    if not fixes:
        return None
    fix = fixes[0]
    if fix.command is not None:
        return f"$ {fix.command}"
    return f"{fix.key}: {fix.value}  # {fix.why}"


def prescribed_change(parsed: Run | None, findings: Sequence[Finding], advise: Advisor | None = None) -> str | None:
    """The first change ``advise`` prescribes for ``findings`` of the parsed run ``parsed``
    (``key: value (was X)  # why``, or the first step's command), or ``None`` when there is none,
    no advisor was handed in, or it cannot judge (never raises: a notification must go out)."""
    if parsed is None or not findings or advise is None:
        return None
    try:
        rx = advise(parsed, list(findings))
    except Exception as exc:  # noqa: BLE001 - fall back to the finding's own first fix
        log.debug("no prescription for the notification: %s", exc)
        return None
    if rx.changes:
        c = rx.changes[0]
        was = f" (was {c.was})" if c.was is not None else ""
        return f"{c.key}: {c.value}{was}  # {c.why}"
    if rx.steps:
        return f"$ {rx.steps[0].command}"
    return None


def finding_message(run: str, run_dir: Path | None, f: Finding, parsed: Run | None = None,
                    advise: Advisor | None = None) -> Message:
    """The message for a finding that fired: run, host, finding, its first prescribed change (the
    advisor's, given the parsed run; else the finding's first fix)."""
    where = f" at step {f.first_step}" if f.first_step is not None else ""
    lines = [
        f"run: {run}",
        f"host: {socket.gethostname()}",
        f"{f.severity.value} {f.code} {f.name}{where}: {inert_line(f.message, 400)}",
    ]
    fix = prescribed_change(parsed, [f], advise) or _fix_text(f)
    if fix:
        lines.append(f"fix: {inert_line(fix, 300)}")
    return Message(
        key=f"{run}:finding:{f.code}",
        title=f"tuneterm: {run}: {f.severity.value} {f.name}",
        body="\n".join(lines),
        log_dir=run_dir,
    )


def end_message(
    run: str, run_dir: Path | None, state: str, error: str | None, findings: Sequence[Finding],
    parsed: Run | None = None, advise: Advisor | None = None,
) -> Message:
    """The message for a run that ended (finished, failed, stopped, died) or stalled: run, host,
    state, the error line, the most severe finding and the first prescribed change (the advisor's
    for all findings, given the parsed run; else that finding's first fix)."""
    lines = [f"run: {run}", f"host: {socket.gethostname()}", f"state: {state}"]
    if error:
        lines.append(f"error: {inert_line(error, 400)}")
    top = findings[0] if findings else None
    if top is not None:
        where = f" at step {top.first_step}" if top.first_step is not None else ""
        lines.append(f"finding: {top.severity.value} {top.code} {top.name}{where}: {inert_line(top.message, 300)}")
        fix = prescribed_change(parsed, findings, advise) or _fix_text(top)
        if fix:
            lines.append(f"fix: {inert_line(fix, 300)}")
    return Message(key=f"{run}:end:{state}", title=f"tuneterm: {run} {state}", body="\n".join(lines), log_dir=run_dir)


class Notifier:
    """Send :class:`Message` objects to apprise URLs from a daemon thread, once per key.

    Args:
        urls: apprise URLs (delivery timeouts added where the URL sets none).
        advise: the advisor whose first change a message names (else the finding's first fix).

    Attributes:
        delivered: messages apprise delivered.
        failed: messages that could not be delivered (logged).
    """

    def __init__(self, urls: Sequence[str], advise: Advisor | None = None) -> None:
        self.urls = [_with_timeouts(u) for u in urls]
        self.advise = advise
        self._queue: queue.Queue[Message | None] = queue.Queue()
        self._sent: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="tuneterm-notify", daemon=True)
        self._thread.start()
        self.delivered = 0
        self.failed = 0

    @classmethod
    def configured(cls, extra: Iterable[str] = (), advise: Advisor | None = None) -> Notifier | None:
        """A notifier for :func:`configured_urls`, or ``None`` when none is set."""
        urls = configured_urls(extra)
        return cls(urls, advise) if urls else None

    # -- events -------------------------------------------------------------------------------
    def post(self, message: Message) -> None:
        """Queue ``message`` unless one with the same key was queued before (never blocks).

        In a run directory the key is also claimed across processes (a marker file created with
        ``O_EXCL`` under ``.notified/``), so the supervisor, a watcher and the callback that all
        see the same end send one message, not three.
        """
        if message.key in self._sent:
            return
        self._sent.add(message.key)
        if message.log_dir is not None and not _claim(message.log_dir, message.key):
            return
        self._queue.put(message)

    def finding(self, rd: RunDir | Path, f: Finding, parsed: Run | None = None) -> None:
        """An error finding fired in run directory ``rd`` (a RunDir or a path); ``parsed`` is the
        run as read, for the advisor."""
        path = Path(getattr(rd, "path", rd))
        self.post(finding_message(path.name, path, f, parsed, self.advise))

    def run_ended(self, rd: RunDir | Path, state: str, error: str | None, findings: Sequence[Finding] = (),
                  parsed: Run | None = None) -> None:
        """The run in ``rd`` ended in ``state`` (or stalled)."""
        path = Path(getattr(rd, "path", rd))
        self.post(end_message(path.name, path, state, error, findings, parsed, self.advise))

    # -- delivery -----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            msg = self._queue.get()
            try:
                if msg is None:
                    return
                self._deliver(msg)
            finally:
                self._queue.task_done()

    def _deliver(self, msg: Message) -> None:
        try:
            import apprise

            app = apprise.Apprise()
            for url in self.urls:
                if not app.add(url):
                    self._failed(msg, f"not a valid apprise URL: {inert_line(url, 120)}")
            ok = len(app) > 0 and bool(app.notify(title=msg.title, body=msg.body))
        except ImportError:
            self._failed(msg, "the apprise package is not installed (pip install apprise)")
            return
        except Exception as exc:  # noqa: BLE001 - a notifier must never take the run down
            self._failed(msg, f"{type(exc).__name__}: {inert_line(str(exc), 200)}")
            return
        if ok:
            self.delivered += 1
        else:
            self._failed(msg, "apprise reported a failed delivery")

    def _failed(self, msg: Message, why: str) -> None:
        self.failed += 1
        log.warning("notification %r not delivered: %s", msg.title, why)
        if msg.log_dir is not None:
            try:
                with open(msg.log_dir / "notify.log", "a", encoding="utf-8") as fh:
                    fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} not delivered: {msg.title}: {why}\n")
            except OSError:
                pass

    def close(self, timeout: float = _CLOSE_WAIT_S) -> None:
        """Let queued messages go out, waiting at most ``timeout`` seconds."""
        self._queue.put(None)
        self._thread.join(timeout)


def notify_findings(
    notifier: Notifier | None, run_dir: Path | None, run: str, found: Iterable[Finding], parsed: Run | None = None
) -> None:
    """Notify the error findings among ``found`` and a stall (``run-stalled``, any severity)."""
    if notifier is None:
        return
    for f in found:
        if getattr(f, "name", "") == "run-stalled":
            notifier.post(end_message(run, run_dir, "stalled", None, [f], parsed, notifier.advise))
        elif f.severity.value == "error":
            notifier.post(finding_message(run, run_dir, f, parsed, notifier.advise))
