"""Make untrusted text (from logs, configs, datasets) inert before it reaches a terminal.

Logs can contain ANSI escape sequences (colour codes, cursor movement, OSC 8 hyperlinks, even
terminal-title or clipboard writes), carriage returns from tqdm, NUL bytes and Rich markup such as
``[bold red]``. None of that may act on the user's terminal. ``inert()`` strips control sequences
and characters; callers that print through Rich must additionally wrap the result in
``rich.text.Text`` (or use :func:`rich.markup.escape`) so brackets are shown, not interpreted.
"""

from __future__ import annotations

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other two-char escapes, and C1 controls.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, terminated or not
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS / SOS / PM / APC strings
    r"|\x1b[@-Z\\-_]?"  # two-character escapes and a lone ESC
    r"|[\x80-\x9f]"  # C1 control characters
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def inert(text: object, max_len: int | None = 500) -> str:
    """Return ``text`` as a printable single-or-multi-line string with no control sequences.

    Tabs and newlines survive; every other C0/C1 control character and every escape sequence is
    removed; lone carriage returns become nothing. Long text is cut to ``max_len`` characters with
    an ellipsis (``None`` keeps everything).

    >>> inert("loss \\x1b[31mnan\\x1b[0m\\r")
    'loss nan'
    """
    s = text if isinstance(text, str) else str(text)
    s = _ESCAPES.sub("", s)
    s = _CONTROLS.sub("", s)
    if max_len is not None and len(s) > max_len:
        s = s[: max_len - 1] + "…"
    return s


def inert_line(text: object, max_len: int | None = 200) -> str:
    """Like :func:`inert` but also folds newlines and tabs into spaces (for one-line fields)."""
    s = " ".join(inert(text, None).split())
    if max_len is not None and len(s) > max_len:
        s = s[: max_len - 1] + "…"
    return s
