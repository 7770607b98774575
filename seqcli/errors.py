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
