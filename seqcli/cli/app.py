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
import warnings
from pathlib import Path
from typing import Annotated

import typer

from seqcli.cli.help import SeqcliCommand, SeqcliGroup
from seqcli.errors import (
    EXIT_FAILURE,
    EXIT_USAGE,
    SeqcliError,
    SeqcliWarning,
    UsageError,
    clipped,
)
from seqcli.io.formats import OutputFormat
from seqcli.io.limits import MAX_BATCH_SIZE
from seqcli.io.terminal import clear_status


def _version(value: bool) -> None:
    if value:
        from seqcli import __version__
        from seqcli.io.atomic import write_stdout

        write_stdout(f"seqcli {__version__}\n")
        raise typer.Exit()


class _Typer(typer.Typer):
    """typer's app, whose commands are `SeqcliCommand`s (help pages with examples)."""

    def command(self, *args, cls=None, **kwargs):
        """Register a command, as typer's `command`, of class `SeqcliCommand` by default."""
        return super().command(*args, cls=cls or SeqcliCommand, **kwargs)


app = _Typer(
    name="seqcli",
    cls=SeqcliGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def stdin_once(ctx: typer.Context, param: typer.CallbackParam, value):
    """The callback of every input that may be `-` (stdin): a second such input on the same
    command line (MODEL and INPUT, X and Y, --weights, ...) is a usage error (exit 2), in
    whichever order they come; an omitted INPUT counts, since it reads stdin."""
    if ctx.resilient_parsing:  # shell completion
        return value
    values = value if isinstance(value, (list, tuple)) else [value]
    if param.param_type_name == "argument" and param.nargs == -1 and not value:
        values = ["-"]  # an omitted INPUT... reads stdin
    name = param.opts[0] if param.param_type_name == "option" else param.metavar or param.name
    position = [known.name for known in ctx.command.params].index(param.name)
    reading = ctx.meta.setdefault("seqcli.stdin", [])
    reading.extend((position, index, name if len(values) == 1 else f"{name} value {index}")
                   for index, item in enumerate(values, start=1) if item == "-")
    _refuse_second_stdin([name for *_, name in sorted(reading)])  # in the order of the help
    return value


def one_stdin(inputs: dict[str, str | None]) -> None:
    """Refuse (exit 2) two inputs read from stdin: `inputs` maps each input, as the help
    names it (MODEL, X, --weights), to its path, `-` for stdin. (Options whose callback is
    `stdin_once` are checked as they are parsed.)"""
    _refuse_second_stdin([name for name, path in inputs.items() if path == "-"])


def _refuse_second_stdin(reading: list[str]) -> None:
    """A UsageError when more than one input (`reading`: their names) is stdin."""
    if len(reading) > 1:
        names = ", ".join(reading[:-1]) + f" and {reading[-1]}"
        omitted = " (INPUT is stdin when it is - or omitted)" if "INPUT" in reading else " (-)"
        fix = "name a file for the other" if len(reading) == 2 else "name files for the others"
        raise UsageError(f"{names} would {'both' if len(reading) == 2 else 'all'} be read from "
                         f"stdin{omitted}, which holds one stream: pipe one of them and {fix}")


ModelArg = Annotated[str, typer.Argument(metavar="MODEL", show_default=False,
                                         callback=stdin_once,
                                         help="Model file (YAML), or - for stdin.")]
InputArg = Annotated[list[str] | None, typer.Argument(
    metavar="INPUT", callback=stdin_once, show_default=False,
    help="Input .npy (batch first), .zarr or a glob of .npy shards; or image files, folders "
    "or globs of them; - or omitted: stdin.")]
InputShapeOpt = Annotated[str | None, typer.Option(
    "--input-shape", metavar="SHAPE",
    help="Per-sample input shape for a model without one, e.g. 28,28,1.")]
WeightsOpt = Annotated[str | None, typer.Option(
    "--weights", metavar="FILE", callback=stdin_once,
    help="Weights file (.safetensors or .npz) instead of the model's own.")]
AllowOutsideOpt = Annotated[bool, typer.Option(
    "--allow-outside", help="Allow paths in model files that leave the model's folder.")]
BaseDirOpt = Annotated[Path | None, typer.Option(
    "--base-dir", metavar="DIR", exists=True, file_okay=False, show_default=False,
    help="With MODEL -: the folder the model's from: and weights: paths resolve against "
    "(default: the working directory).")]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", metavar="T", min=1, max=65536,
    help="Threads for kernels and BLAS (default: all cores).")]
BatchSizeOpt = Annotated[int, typer.Option(
    "--batch-size", metavar="N", min=1, max=MAX_BATCH_SIZE, help="Rows per batch.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes on stderr.")]
XArg = Annotated[str, typer.Argument(
    metavar="X", callback=stdin_once,
    help="Inputs: a .npy file (batch first), or images: a folder (of class subfolders when Y "
    "is omitted), a glob or one image file.")]
YArg = Annotated[str | None, typer.Argument(
    metavar="Y", callback=stdin_once, show_default=False,
    help="Targets (.npy file); omitted when X is a folder of class subfolders.")]
LossOpt = Annotated[str, typer.Option(
    "--loss", metavar="LOSS", help="mse, mae, binary_crossentropy, categorical_crossentropy or "
    "sparse_categorical_crossentropy.")]
FromLogitsOpt = Annotated[bool, typer.Option(
    "--from-logits", help="The model outputs logits (cross-entropy losses).")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Refuse an input holding NaN or Inf (exit 65) instead of warning.")]


def _interpolation(ctx: typer.Context, value: str | None) -> str | None:
    """`--interpolation`'s value, checked against Keras's names."""
    if ctx.resilient_parsing or value is None:
        return value
    from seqcli.io.images import INTERPOLATIONS

    if value in INTERPOLATIONS:
        return value
    raise UsageError(f"--interpolation {value!r} is not one of {', '.join(INTERPOLATIONS)}")


InterpolationOpt = Annotated[str | None, typer.Option(
    "--interpolation", metavar="NAME", callback=_interpolation, show_default=False,
    help="Images: how they are resized to the model's input (Keras's names): bilinear "
    "(default), nearest, bicubic, area, lanczos3, lanczos5, gaussian, mitchellcubic.")]
CropOpt = Annotated[bool, typer.Option(
    "--crop-to-aspect-ratio",
    help="Images: resize the largest centred window of the model's aspect ratio.")]
PadOpt = Annotated[bool, typer.Option(
    "--pad-to-aspect-ratio",
    help="Images: resize the whole image into the model's aspect ratio, padded with zeros.")]
ClassNamesOpt = Annotated[str | None, typer.Option(
    "--class-names", metavar="FILE", show_default=False,
    help="With X a folder of class subfolders: write the class names, one per line in label "
    "order, to FILE (for predict --labels).")]
FormatOpt = Annotated[OutputFormat | None, typer.Option(
    "--format", show_default=False, help="Output format where -o names none (-, /dev/stdout, "
    "FILE.txt): npy, npz, csv (a header, then one row per sample) or jsonl (one JSON object "
    "per sample). Default: the -o extension, else npy (npz for several layers).")]


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Define Keras-style Sequential models in YAML; inspect and run them from the shell.

    Results go to stdout, progress and messages to stderr; - names stdin or stdout. Exit
    codes: 0 success, 1 the run failed, 2 usage error, 65 bad data, 66 an input that cannot
    be read, 73 an output that cannot be written. `seqcli COMMAND -h` (or `seqcli help
    COMMAND`) shows a command's options and examples.

    Examples:
      seqcli summary configs/guide_convnet.yaml
      seqcli predict configs/dense_stack.yaml x.npy -o y.npy
      seqcli validate configs/*.yaml
    """


def finite(low: float | None = None, high: float | None = None):
    """The callback of every float option: a finite number, within [low, high] where given,
    else a usage error (typer's own min and max let infinities through, and refuse NaN with a
    message about the bound)."""
    if low is not None and high is not None:
        wanted = f"expected a finite number between {low:g} and {high:g}"
    elif low is not None:
        wanted = f"expected a finite number of at least {low:g}"
    elif high is not None:
        wanted = f"expected a finite number of at most {high:g}"
    else:
        wanted = "expected a finite number"

    def check(value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and (low is None or value >= low)
                                      and (high is None or value <= high)):
            raise typer.BadParameter(f"{wanted}. Received: {value}")
        return value

    return check


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


def load(model: str, allow_outside: bool, base_dir: Path | None = None):
    """The model file `model` (`-`: stdin, whose paths resolve against `base_dir`, by
    default the working directory) loaded and validated: a `LoadedModel`."""
    from seqcli.config.load import load_model

    return load_model(model, allow_outside=allow_outside, base_dir=base_dir)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it).
    `seqcli help [COMMAND]` is `seqcli [COMMAND] --help`, as git's."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["help"]:
        argv = [*argv[1:], "--help"]
    command = _click_command(argv)
    if os.environ.get("_SEQCLI_COMPLETE"):  # the shell asks for completions
        from seqcli.cli.completion import register

        register()
    debug = os.environ.get("SEQCLI_DEBUG") == "1"
    warnings.showwarning = _show_warning
    try:
        result = command.main(args=argv, prog_name="seqcli", standalone_mode=False)
        _flush_stdout()
        if isinstance(result, int) and result:  # typer.Exit(code), or Ctrl-C as 130
            if result == 130:
                print_error("interrupted")
            return result
        return 0
    except SeqcliError as exc:
        if debug:
            raise
        print_error(str(exc))
        return exc.exit_code
    except typer.TyperException as exc:  # click's usage errors (bad option, missing argument)
        if debug:
            raise
        message = exc.format_message()
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `seqcli`: the help, as is
            print(message, file=sys.stderr)
            return EXIT_USAGE
        command_name = getattr(getattr(exc, "ctx", None), "command_path", "seqcli")
        print_error(f"{message} (see '{command_name} --help')")
        return getattr(exc, "exit_code", EXIT_USAGE)
    except (typer.Exit, typer.Abort) as exc:
        if isinstance(exc, typer.Abort):
            print_error("interrupted")
            return 130
        return exc.exit_code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_FAILURE
    except SystemExit as exc:  # click's quiet exit after a closed pipe (EPIPE)
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    except Terminated as exc:
        print_error(f"terminated by {signal.Signals(exc.signum).name}")
        return 128 + exc.signum
    except MemoryError:
        if debug:
            raise
        print_error("out of memory: the model or the batch is too large for this machine "
                     "(try a smaller --batch-size)")
        return EXIT_FAILURE
    except Exception as exc:  # a bug or an unexpected environment problem: one line, code 1
        if debug:
            raise
        print_error(f"internal error: {type(exc).__name__}: {exc} "
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


def _flush_stdout() -> None:
    """Write out what the command printed: a stdout that fails is an `OutputError` (exit 73),
    a closed pipe a `BrokenPipeError`."""
    from seqcli.io.atomic import GuardedFile

    if sys.stdout is not None:
        GuardedFile(sys.stdout, "<stdout>").flush()


def print_error(message: str) -> None:
    """`message` on stderr as every failure is shown: each line `FILE:LINE:COL: ...` or
    `seqcli: error: ...`, on a line of its own (a progress line is removed first)."""
    clear_status()
    for line in message.splitlines() or [""]:
        prefixed = line if _has_position(line) else f"seqcli: error: {line}"
        print(clipped(prefixed), file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """seqcli's own warnings as one `seqcli: warning: ...` line on stderr; others as Python
    shows them."""
    clear_status()
    if not issubclass(category, SeqcliWarning):
        _PYTHON_SHOW_WARNING(message, category, filename, lineno, file, line)
    elif sys.stderr is not None:
        print(clipped(f"seqcli: warning: {message}"), file=sys.stderr, flush=True)


_PYTHON_SHOW_WARNING = warnings.showwarning


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
    _guard_standard_streams()
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _terminate)
    _exit(main())


_GC_PAUSED = [False]


def _guard_standard_streams() -> None:
    """Put /dev/null where stdin, stdout or stderr was closed (`>&-`), so that no file the
    command opens takes its number. A closed stdout stays None, which commands refuse to print
    to (exit 73); an open one fails as an `OutputError` (a full disk: exit 73), whoever
    prints. A closed stderr drops messages rather than sending them to stdout. On an ASCII
    terminal (or locale) stderr writes ASCII look-alikes for other characters."""
    from seqcli.io.atomic import GuardedFile
    from seqcli.io.terminal import ascii_stderr

    for number in (0, 1, 2):
        try:
            os.fstat(number)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != number:
                os.dup2(null, number)
                os.close(null)
    if sys.stdout is not None:
        sys.stdout = GuardedFile(sys.stdout, "<stdout>")
    if sys.stderr is None:
        sys.stderr = os.fdopen(2, "w", encoding="utf-8")
    ascii_stderr(sys.stderr)


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
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError, SeqcliError):  # what was left unwritten is lost
        code = code or EXIT_FAILURE
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)
