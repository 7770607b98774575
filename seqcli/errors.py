"""The one error hierarchy: every failure a user can cause, with its exit code (CONTRACT §3)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DATA = 65
EXIT_NO_INPUT = 66
EXIT_CANT_CREATE = 73


class SeqcliError(Exception):
    """Base of all seqcli errors; `exit_code` is what the command line exits with."""

    exit_code = EXIT_FAILURE


class UsageError(SeqcliError):
    """A bad option or argument, or refused terminal I/O."""

    exit_code = EXIT_USAGE


class ConfigError(SeqcliError):
    """An invalid model file: one or more `FILE:LINE:COL: message` lines."""

    exit_code = EXIT_DATA

    def __init__(self, messages: str | list[str]):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


class WeightsError(SeqcliError):
    """An invalid weights file: missing, extra, misshapen or mistyped tensors."""

    exit_code = EXIT_DATA


class InputDataError(SeqcliError):
    """An input array that cannot be fed to the model."""

    exit_code = EXIT_DATA


class MissingFileError(SeqcliError):
    """An input file that does not exist or cannot be read."""

    exit_code = EXIT_NO_INPUT


class OutputError(SeqcliError):
    """An output file that cannot be created."""

    exit_code = EXIT_CANT_CREATE


class DivergedError(SeqcliError):
    """Training stopped because its loss or weights became NaN or infinite (exit 1)."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, epochs_done: int):
        super().__init__(message)
        self.epochs_done = epochs_done
        """Epochs completed before the one that diverged."""


MAX_QUOTED_CHARS = 80
"""Characters of a value a message quotes: a longer value shows its start and its length."""


def quoted(value) -> str:
    """`repr(value)` for a message; for a long value, its first `MAX_QUOTED_CHARS` characters
    and its length, so that no message echoes a huge value from a file."""
    text = repr(value)
    if len(text) <= MAX_QUOTED_CHARS:
        return text
    return f"{text[:MAX_QUOTED_CHARS]}... ({len(text):,} characters)"


MAX_MESSAGE_CHARS = 2000
"""Characters of one message line; the rest of a longer line (a huge value quoted in full
somewhere) is left out."""


def clipped(line: str) -> str:
    """`line`, or its first `MAX_MESSAGE_CHARS` characters and how many more there were."""
    if len(line) <= MAX_MESSAGE_CHARS:
        return line
    return f"{line[:MAX_MESSAGE_CHARS]}... ({len(line) - MAX_MESSAGE_CHARS:,} more characters)"


class SeqcliWarning(UserWarning):
    """A problem that does not stop the run (such as a kernel cache that cannot be read or
    written): the command line shows it as one `seqcli: warning: ...` line."""
