"""The typer `app`, the options commands share, and the one boundary where errors become exit
codes. Command modules import from here; nothing here imports a command module.

Only typer and the standard library load at import time: a command imports what it needs
inside its function, so `seqcli summary` never loads numpy or numba.
"""

from __future__ import annotations

import copy
import gc
import math
import os
import signal
import sys
from typing import Annotated

import typer

from seqcli.errors import EXIT_FAILURE, EXIT_USAGE, SeqcliError, UsageError


def _version(value: bool) -> None:
    if value:
        from seqcli import __version__

        print(f"seqcli {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="seqcli",
    help="Define Keras-style Sequential models in YAML; inspect and run them from the shell.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ModelArg = Annotated[str, typer.Argument(metavar="MODEL", show_default=False,
                                         help="Model file (YAML), or - for stdin.")]
InputArg = Annotated[str, typer.Argument(
    metavar="INPUT", help="Input .npy (batch first); - or omitted: stdin.")]
InputShapeOpt = Annotated[str | None, typer.Option(
    "--input-shape", help="Per-sample input shape for a model without one, e.g. 28,28,1.")]
WeightsOpt = Annotated[str | None, typer.Option(
    "--weights", help="Weights file (.safetensors or .npz) instead of the model's own.")]
AllowOutsideOpt = Annotated[bool, typer.Option(
    "--allow-outside", help="Allow paths in model files that leave the model's folder.")]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", min=1, max=65536, help="Threads for kernels and BLAS (default: all cores).")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Rows per batch.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes on stderr.")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Refuse an input holding NaN or Inf (exit 65) instead of warning.")]


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Define Keras-style Sequential models in YAML; inspect and run them from the shell."""


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """`28,28,1`, `28x28x1` or `[28, 28, 1]` → (28, 28, 1)."""
    if text is None:
        return None
    parts = text.strip().strip("[]()").replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise UsageError(f"--input-shape expects positive integers such as 28,28,1. "
                         f"Received: {text!r}")
    from seqcli.build import MAX_TENSOR_ELEMENTS

    if math.prod(shape) > MAX_TENSOR_ELEMENTS:
        raise UsageError(f"--input-shape {text} holds more than the {MAX_TENSOR_ELEMENTS:,} "
                         "values per sample seqcli allows")
    return shape


def load(model: str, allow_outside: bool):
    """The model file `model` (`-`: stdin) loaded and validated: a `LoadedModel`."""
    from seqcli.config.load import load_model

    return load_model(model, allow_outside=allow_outside)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    command = _click_command(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("SEQCLI_DEBUG") == "1"
    try:
        result = command.main(args=argv, prog_name="seqcli", standalone_mode=False)
        sys.stdout.flush()
        if isinstance(result, int) and result:  # typer.Exit(code), or Ctrl-C as 130
            if result == 130:
                _print_error("interrupted")
            return result
        return 0
    except SeqcliError as exc:
        if debug:
            raise
        _print_error(str(exc))
        return exc.exit_code
    except typer.TyperException as exc:  # click's usage errors (bad option, missing argument)
        if debug:
            raise
        message = exc.format_message()
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `seqcli`: the help, as is
            print(message, file=sys.stderr)
            return EXIT_USAGE
        command_name = getattr(getattr(exc, "ctx", None), "command_path", "seqcli")
        _print_error(f"{message} (see '{command_name} --help')")
        return getattr(exc, "exit_code", EXIT_USAGE)
    except (typer.Exit, typer.Abort) as exc:
        if isinstance(exc, typer.Abort):
            _print_error("interrupted")
            return 130
        return exc.exit_code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_FAILURE
    except SystemExit as exc:  # click's quiet exit after a closed pipe (EPIPE)
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    except Terminated as exc:
        _print_error(f"terminated by {signal.Signals(exc.signum).name}")
        return 128 + exc.signum
    except MemoryError:
        if debug:
            raise
        _print_error("out of memory: the model or the batch is too large for this machine "
                     "(try a smaller --batch-size)")
        return EXIT_FAILURE
    except Exception as exc:  # a bug or an unexpected environment problem: one line, code 1
        if debug:
            raise
        _print_error(f"internal error: {type(exc).__name__}: {exc} "
                     "(set SEQCLI_DEBUG=1 for the traceback)")
        return EXIT_FAILURE


def _click_command(argv: list[str]):
    """typer's click group for this command line. For `seqcli NAME ...` it holds NAME alone:
    typer builds every command's parameters first (some 10 ms for all of them). Anything else
    (`seqcli --help`, a misspelt name) gets them all."""
    chosen = app
    if argv:
        named = [command for command in app.registered_commands
                 if typer.main.get_command_name(command.name or command.callback.__name__)
                 == argv[0]]
        if named:
            chosen = copy.copy(app)
            chosen.registered_commands = named
    return typer.main.get_command(chosen)


def _print_error(message: str) -> None:
    for line in message.splitlines() or [""]:
        prefixed = line if _has_position(line) else f"seqcli: error: {line}"
        print(prefixed, file=sys.stderr)


def _has_position(line: str) -> bool:
    """True for `FILE:LINE:COL: message` lines."""
    parts = line.split(":", 3)
    return len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit()


def _silence_stdout() -> None:
    """After a closed pipe, stop Python from complaining when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived; raised like Ctrl-C's KeyboardInterrupt, so that the command
    unwinds and removes its temp files."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame) -> None:
    raise Terminated(signum)


def run(*, gc_paused: bool = False) -> None:
    """Console-script entry point (`seqcli.__main__`); `gc_paused`: it turned the garbage
    collector off for start-up, and `start_up_done` turns it back on."""
    _GC_PAUSED[0] = gc_paused
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _terminate)
    _exit(main())


_GC_PAUSED = [False]


def start_up_done() -> None:
    """The command's work begins (its kernels have run once): what is alive now lives until
    exit, so the garbage collector, paused for start-up, resumes without walking it again
    (gc.freeze). Nothing when the collector was not paused by `run`."""
    if _GC_PAUSED[0]:
        _GC_PAUSED[0] = False
        gc.freeze()
        gc.enable()


def _exit(code: int) -> None:
    """Exit with `code` once stdout and stderr are flushed, skipping the interpreter's teardown
    (with numba and LLVM loaded it takes some 20-60 ms). Every file a command writes is closed
    by then; nothing registers exit handlers."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):  # a closed pipe: what was left unwritten is lost
        code = code or EXIT_FAILURE
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)
