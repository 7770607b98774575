"""What a terminal can show: Unicode or only ASCII, drawing or a dumb terminal, its width; and
text made printable for a stream whose character set is ASCII.

A stream is ASCII-only when its encoding cannot carry box drawing (`PYTHONIOENCODING=ascii`,
a Latin-1 locale) or when the locale is explicitly C or POSIX (`LANG=C`, `LC_ALL=C`: Python
then writes UTF-8, which such a terminal shows as garbage). On ASCII-only streams seqcli draws
with ASCII and writes look-alikes (`...` for `…`, `x` for `×`) instead of other characters.
"""

from __future__ import annotations

import codecs
import os

ASCII_ERRORS = "seqcli-ascii"
"""The codec error handler that writes an ASCII look-alike (or `?`) for what cannot be encoded."""

LOOKALIKES = {
    "…": "...", "×": "x", "·": "*", "•": "*", "→": "->", "←": "<-", "—": "-", "–": "-",
    "‘": "'", "’": "'", "“": '"', "”": '"', "≤": "<=", "≥": ">=", "±": "+/-", "\u00a0": " ",
    "━": "=", "─": "-", "│": "|", "┃": "|", "└": "`", "┏": "+", "┓": "+", "┡": "+", "┩": "+",
    "┳": "+", "╇": "+", "├": "+", "┼": "+", "┤": "+", "┴": "+", "┘": "+",
}
"""ASCII stand-ins for the non-ASCII characters seqcli writes itself."""

UNICODE_SAMPLE = "━└…×"
"""Characters an encoding must carry for seqcli to draw with Unicode."""


def _lookalike(error: UnicodeEncodeError) -> tuple[str, int]:
    """The codec error handler `ASCII_ERRORS`."""
    bad = error.object[error.start:error.end]
    return "".join(LOOKALIKES.get(char, "?") for char in bad), error.end


codecs.register_error(ASCII_ERRORS, _lookalike)


COERCED_LOCALES = ("C.UTF-8", "C.utf8", "UTF-8")
"""What Python sets LC_CTYPE to when it starts in the C locale (PEP 538), hiding the C."""


def c_locale() -> bool:
    """True when the locale in force (LC_ALL, else LC_CTYPE, else LANG) is C or POSIX; an
    LC_CTYPE that Python's own coercion may have set does not count."""
    for name in ("LC_ALL", "LC_CTYPE", "LANG"):
        value = os.environ.get(name)
        if value and not (name == "LC_CTYPE" and value in COERCED_LOCALES):
            return value in ("C", "POSIX")
    return False


def ascii_only(stream) -> bool:
    """True when `stream` should get ASCII only: its encoding cannot carry box drawing, or the
    locale is C or POSIX."""
    if c_locale():
        return True
    try:
        UNICODE_SAMPLE.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return True
    return False


def is_terminal(stream) -> bool:
    """True when `stream` is open on a terminal."""
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):  # closed
        return False


def dumb_terminal() -> bool:
    """True for `TERM=dumb`: a terminal that shows text but draws nothing (no box drawing, no
    colours or cursor movement)."""
    return os.environ.get("TERM") == "dumb"


def draws(stream) -> bool:
    """True when `stream` is a terminal that shows box drawing and other Unicode glyphs."""
    return is_terminal(stream) and not dumb_terminal() and not ascii_only(stream)


def unicode_glyphs(stream) -> bool:
    """True when text for `stream` may use non-ASCII glyphs (`└`): not ASCII-only, and not a
    dumb terminal."""
    return not ascii_only(stream) and not (is_terminal(stream) and dumb_terminal())


def columns(stream) -> int | None:
    """The width of the terminal `stream` writes to: `COLUMNS` if set (as shutil, rich and
    Keras read it), else the terminal's own (80 if it says 0); None when not a terminal."""
    if not is_terminal(stream):
        return None
    setting = os.environ.get("COLUMNS", "")
    if setting.isdigit() and int(setting) > 0:
        return int(setting)
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return 80


def printable(text: str, stream) -> str:
    """`text` with what `stream` cannot show replaced by ASCII look-alikes (or `?`)."""
    encoding = "ascii" if ascii_only(stream) else getattr(stream, "encoding", None) or "utf-8"
    try:
        return text.encode(encoding, ASCII_ERRORS).decode(encoding)
    except LookupError:
        return text


def ascii_stderr(stream):
    """Make `stream` (stderr, which carries only messages) write look-alikes for what it
    cannot show, in ASCII under a C locale; returns it."""
    if ascii_only(stream) and hasattr(stream, "reconfigure"):
        encoding = "ascii" if c_locale() else stream.encoding
        try:
            stream.reconfigure(encoding=encoding, errors=ASCII_ERRORS)
        except (ValueError, LookupError, OSError):
            pass
    return stream


class StatusLine:
    """One line of a terminal (`stream`, stderr) rewritten in place with `\\r`: a progress
    report. Any other message clears it first (`clear_status`); the next update draws it
    again."""

    def __init__(self, stream):
        self.stream = stream
        self.shown = 0
        """Characters of the line now on the screen."""

    def show(self, text: str) -> None:
        """Replace the line with `text`, cut to the terminal's width (a wrapped line could
        not be rewritten)."""
        text = text[:(columns(self.stream) or 80) - 1]
        self._write("\r" + text + " " * max(self.shown - len(text), 0))
        self.shown = len(text)
        _SHOWN[:] = [self]

    def finish(self, text: str) -> None:
        """Replace the line with `text`, whole, and end it: it stays on the screen."""
        self._write("\r" + text + " " * max(self.shown - len(text), 0) + "\n")
        self.shown = 0

    def clear(self) -> None:
        """Remove the line from the screen."""
        if self.shown:
            self._write("\r" + " " * self.shown + "\r")
            self.shown = 0

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a terminal gone: the run goes on without its report
            pass


_SHOWN: list[StatusLine] = []
"""The status line last drawn, if any."""


def clear_status() -> None:
    """Remove the status line from the terminal, if one is shown, so that a message starts at
    the beginning of a clean line."""
    for line in _SHOWN:
        line.clear()
