"""The `seqcli` command line: thin commands that delegate; errors turned into exit codes here."""

from __future__ import annotations

import copy
import gc
import json
import math
import os
import signal
import sys
from pathlib import Path
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
InputShapeOpt = Annotated[str | None, typer.Option(
    "--input-shape", help="Per-sample input shape for a model without one, e.g. 28,28,1.")]
WeightsOpt = Annotated[str | None, typer.Option(
    "--weights", help="Weights file (.safetensors or .npz) instead of the model's own.")]
AllowOutsideOpt = Annotated[bool, typer.Option(
    "--allow-outside", help="Allow paths in model files that leave the model's folder.")]


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


def _load(model: str, allow_outside: bool):
    from seqcli.config.load import load_model

    return load_model(model, allow_outside=allow_outside)


@app.command()
def summary(
    model: ModelArg,
    json_output: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
    show_trainable: Annotated[bool, typer.Option(
        "--show-trainable", help="Add a column saying whether each layer is trainable.")] = False,
    expand_nested: Annotated[bool, typer.Option(
        "--expand-nested", help="Show the layers inside nested models.")] = False,
    input_shape: InputShapeOpt = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, help="Batch size for the activation memory figure.")] = 1,
    weights: WeightsOpt = None,
    allow_outside: AllowOutsideOpt = False,
) -> None:
    """Print the Keras-style summary: output shapes, parameters, MACs."""
    from seqcli.build import build
    from seqcli.summary import summary_json, summary_text

    loaded = _load(model, allow_outside)
    built = build(loaded, parse_shape(input_shape))
    if weights is not None or loaded.weights_path is not None:
        _check_weights(loaded, built, weights)
    if json_output:
        document = summary_json(built, expand_nested=expand_nested, batch_size=batch_size)
        sys.stdout.write(json.dumps(document) + "\n")
    else:
        sys.stdout.write(summary_text(built, expand_nested=expand_nested,
                                      show_trainable=show_trainable, batch_size=batch_size,
                                      boxes=sys.stdout.isatty()))


@app.command()
def validate(
    model: ModelArg,
    weights: WeightsOpt = None,
    input_shape: InputShapeOpt = None,
    allow_outside: AllowOutsideOpt = False,
) -> None:
    """Check a model file (and its weights); print OK or every error."""
    from seqcli.build import build

    loaded = _load(model, allow_outside)
    shape = parse_shape(input_shape)
    if loaded.input_shape is None and shape is None:
        if weights is not None:
            raise UsageError("checking weights needs an input shape: pass --input-shape")
        sys.stdout.write(f"OK: {loaded.source}: {len(loaded.layers)} layers; no input shape "
                         "(built from the first input)\n")
        return
    built = build(loaded, shape)
    if weights is not None or loaded.weights_path is not None:
        _check_weights(loaded, built, weights)
    sys.stdout.write(f"OK: {loaded.source}: {len(loaded.layers)} layers, "
                     f"{built.total_params:,} params, input {list(built.input_shape)}, "
                     f"output {list(built.output_shape)}\n")


def _check_weights(loaded, built, weights: str | None) -> None:
    from seqcli.runtime.weights import load_model_weights

    load_model_weights(loaded, built, weights)


ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", min=1, max=65536, help="Threads for kernels and BLAS (default: all cores).")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Rows per batch.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes on stderr.")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Refuse an input holding NaN or Inf (exit 65) instead of warning.")]


@app.command()
def predict(
    model: ModelArg,
    input: Annotated[str, typer.Argument(
        metavar="INPUT", help="Input .npy (batch first); - or omitted: stdin.")] = "-",
    output: Annotated[str, typer.Option(
        "-o", "--output", help="Output .npy, or - for stdout.")] = "-",
    weights: WeightsOpt = None,
    batch_size: BatchSizeOpt = 32,
    threads: ThreadsOpt = None,
    argmax: Annotated[bool, typer.Option(
        "--argmax", help="Print the index of the largest output of each sample.")] = False,
    top_k: Annotated[int | None, typer.Option(
        "--top-k", min=1, help="Print the K largest outputs of each sample as index:value.",
    )] = None,
    quiet: QuietOpt = False,
    strict: StrictOpt = False,
    allow_outside: AllowOutsideOpt = False,
) -> None:
    """Run the model on a .npy array; write the outputs as .npy (or text with --argmax/--top-k)."""
    from seqcli.io.arrays import NonFiniteCounter, open_input

    if argmax and top_k is not None:
        raise UsageError("--argmax and --top-k are alternatives; pass one")
    runner = _prepare_run(model, weights, threads, quiet, allow_outside)
    with open_input(input) as data, _numeric_warnings_off():
        runner.build(data.shape)
        runner.announce()
        rows, sample = data.shape[0], runner.output_shape
        progress = Progress("predict", rows, enabled=not quiet)
        inputs = NonFiniteCounter(data.source, strict=strict)
        results = NonFiniteCounter("<outputs>")
        outputs = results.check(_progressing(runner.run(inputs.check(data.batches(batch_size))),
                                             progress))
        if argmax or top_k is not None:
            _write_ranking(outputs, output, sample, 1 if argmax else top_k, with_values=not argmax)
        else:
            from seqcli.io.arrays import NpyWriter

            with NpyWriter(output, sample, rows) as writer:
                for batch in outputs:
                    writer.write(batch)
        progress.done()
    _warn_non_finite(inputs, results)


@app.command()
def init(
    model: ModelArg,
    output: Annotated[str | None, typer.Option(
        "-o", "--output", help="Weights file to write (.safetensors or .npz); default: the "
        "model's 'weights:' path.")] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", min=0,
        help="Seed for the initialisers (default: the model's seed, else 0).")] = None,
    input_shape: InputShapeOpt = None,
    weights_from: Annotated[str | None, typer.Option(
        "--weights-from", help="Take every tensor this weights file has under the same key "
        "and shape (Keras's load_weights by name); initialise the rest.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite the model's existing weights file.")] = False,
    allow_outside: AllowOutsideOpt = False,
) -> None:
    """Write the model's initial weights (Keras initialisers; nested `from:` models keep theirs;
    --weights-from reuses trained tensors)."""
    from seqcli.build import build
    from seqcli.io.arrays import save_npz
    from seqcli.io.weights import write_safetensors
    from seqcli.runtime.weights import load_model_weights

    loaded = _load(model, allow_outside)
    target = output if output is not None else loaded.weights_path
    if target is None:
        raise UsageError("the model declares no weights file: pass -o FILE.safetensors")
    if output is None and Path(target).exists() and not force:
        raise UsageError(f"{target} exists (the model's weights); pass --force to replace it "
                         "or -o to write elsewhere")
    built = build(loaded, parse_shape(input_shape))
    loaded.weights_path = None  # initialise: the model's own file is not read
    arrays = load_model_weights(loaded, built, seed=seed).arrays
    if weights_from is not None:
        from seqcli.runtime.weights import take_matching

        taken, unused = take_matching(arrays, weights_from)
        print(f"seqcli: took {len(taken)} tensors from {weights_from}; initialised "
              f"{len(arrays) - len(taken)}" + (f"; not used: {', '.join(unused)}" if unused
                                                else ""), file=sys.stderr)
    if str(target).endswith(".npz"):
        save_npz(target, arrays)
    elif str(target) == "-" or str(target).endswith(".safetensors"):
        write_safetensors(target, arrays)
    else:
        raise UsageError(f"{target}: weights files end in .safetensors or .npz")
    if str(target) != "-":
        print(f"seqcli: wrote {len(arrays)} tensors ({built.total_params:,} params) to {target}",
              file=sys.stderr)


@app.command()
def extract(
    model: ModelArg,
    input: Annotated[str, typer.Argument(
        metavar="INPUT", help="Input .npy (batch first); - or omitted: stdin.")] = "-",
    layer: Annotated[list[str] | None, typer.Option(
        "--layer", help="A layer name or nested path (base/conv2d); repeat for several.")] = None,
    all_layers: Annotated[bool, typer.Option(
        "--all", help="Every top-level layer, as the Keras guide's [layer.output ...].")] = False,
    output: Annotated[str, typer.Option(
        "-o", "--output", help="Output: .npy for one layer, .npz for several; - is stdout.")] = "-",
    weights: WeightsOpt = None,
    batch_size: BatchSizeOpt = 32,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
    strict: StrictOpt = False,
    allow_outside: AllowOutsideOpt = False,
) -> None:
    """Write intermediate layers' outputs: one layer as .npy, several as .npz keyed by path."""
    from seqcli.io.arrays import NonFiniteCounter, NpyWriter, NpzWriter, open_input
    from seqcli.runtime.extract import choose_layers, extract_batches

    runner = _prepare_run(model, weights, threads, quiet, allow_outside)
    with open_input(input) as data, _numeric_warnings_off():
        runner.build(data.shape)
        built = runner.model.built_model
        paths = choose_layers(built, layer or [], all_layers)
        runner.announce()
        rows = data.shape[0]
        progress = Progress("extract", rows, enabled=not quiet)
        inputs = NonFiniteCounter(data.source, strict=strict)
        results = extract_batches(built, runner.model._weights.arrays, paths,
                                  _progressing(inputs.check(data.batches(batch_size)), progress))
        shapes = {path: built.find(path).output_shape for path in paths}
        if len(paths) == 1 and not all_layers:
            with NpyWriter(output, shapes[paths[0]], rows) as writer:
                for found in results:
                    writer.write(found[paths[0]])
        else:
            with NpzWriter(output, shapes, rows) as writer:
                for found in results:
                    for path, array in found.items():
                        writer.write(path, array)
        progress.done()
    _warn_non_finite(inputs)


@app.command()
def freeze(
    model: ModelArg,
    layer: Annotated[list[str] | None, typer.Option(
        "--layer", help="Layer name, nested path or glob (conv2d*) to freeze; repeatable.")] = None,
    all_but_last: Annotated[bool, typer.Option(
        "--all-but-last", help="Freeze every top-level layer but the last.")] = False,
    up_to: Annotated[str | None, typer.Option(
        "--up-to", help="Freeze the top-level layers up to and including this one.")] = None,
    unfreeze: Annotated[list[str] | None, typer.Option(
        "--unfreeze", help="Layer name, path or glob to make trainable again; repeatable.")] = None,
    output: Annotated[str, typer.Option(
        "-o", "--output", help="Write the model file here (default: stdout).")] = "-",
    in_place: Annotated[bool, typer.Option(
        "--in-place", help="Rewrite MODEL itself (atomically).")] = False,
    allow_outside: AllowOutsideOpt = False,
) -> None:
    """Write the model file with `trainable` set; comments and formatting are kept."""
    from seqcli.config.freeze import FreezeRequest, frozen_ancestor, plan, rewrite
    from seqcli.config.load import load_model_text, read_model_text
    from seqcli.config.yamlsafe import parse_yaml
    from seqcli.io.atomic import atomic_output

    if in_place and (model == "-" or output != "-"):
        raise UsageError("--in-place rewrites MODEL itself: it needs a file, and no -o")
    if not (layer or all_but_last or up_to or unfreeze):
        raise UsageError("say what to freeze: --layer NAME, --all-but-last, --up-to NAME "
                         "or --unfreeze NAME")
    text, source, base_dir = read_model_text(model)
    loaded = load_model_text(text, source, base_dir, allow_outside=allow_outside)
    request = FreezeRequest(layers=layer or [], all_but_last=all_but_last, up_to=up_to,
                            unfreeze=unfreeze)
    changes = plan(loaded, request)
    for path, trainable in changes.items():
        ancestor = frozen_ancestor(loaded, path)
        if trainable and ancestor and changes.get(ancestor) is not True:
            print(f"seqcli: warning: '{path}' stays frozen while its nested model "
                  f"'{ancestor}' is frozen", file=sys.stderr)
    new_text = rewrite(text, parse_yaml(text), loaded, changes)
    load_model_text(new_text, source, base_dir, allow_outside=allow_outside)  # still valid
    with atomic_output(model if in_place else output, binary=False) as out:
        out.write(new_text)


class Runner:
    """A loaded model ready to run on batches."""

    def __init__(self, loaded, weights: str | None, quiet: bool):
        from seqcli.runtime.model import Sequential

        self.model = Sequential.from_loaded(loaded, weights)
        self.loaded = loaded
        self.quiet = quiet

    def build(self, data_shape: tuple) -> None:
        """Build from the model's input shape, or from the data's (deferred build)."""
        declared = self.loaded.input_shape
        fits = declared is not None and len(declared) == len(data_shape) - 1 and all(
            d is None or d == s for d, s in zip(declared, data_shape[1:]))
        self.model.build(data_shape[1:] if declared is None or fits else None)
        self.model.check_input_shape(data_shape)

    def announce(self) -> None:
        """Say on stderr what the user may not expect: initial weights, a compile ahead."""
        from seqcli.runtime.compiled import notify_compiling

        initialised = self.model.initialised_weights
        if initialised and not self.quiet:
            seed = self.model._weights.seed
            if len(initialised) == len(self.model.weights):
                note = "no weights file; using initial weights"
            else:
                shown = ", ".join(initialised[:4]) + (", ..." if len(initialised) > 4 else "")
                note = f"no weights file provides {shown}; using initial values"
            print(f"seqcli: note: {self.loaded.source}: {note} (seed {seed})", file=sys.stderr)
        if not self.quiet:  # said when numba starts compiling (a kernel its cache lacks)
            notify_compiling(lambda: print("seqcli: compiling kernels (first run only; cached "
                                           "afterwards)...", file=sys.stderr, flush=True))

    @property
    def output_shape(self) -> tuple:
        """Per-sample output shape."""
        return self.model.built_model.output_shape

    def run(self, batches, until: str | None = None):
        """Outputs batch by batch."""
        return self.model.predict_batches(batches, until)


def _prepare_run(model: str, weights, threads, quiet, allow_outside) -> Runner:
    from seqcli.runtime.compiled import keep_freed_memory, set_threads

    set_threads(threads)
    keep_freed_memory()
    return Runner(_load(model, allow_outside), weights, quiet)


def _numeric_warnings_off():
    """numpy's floating-point warnings off: NaN and Inf are counted and reported instead."""
    import numpy as np

    return np.errstate(all="ignore")


def _warn_non_finite(inputs, outputs=None) -> None:
    """One warning line for NaN/Inf in the input or, failing that, in the outputs."""
    if inputs.summary():
        print(f"seqcli: warning: {inputs.source}: the input holds {inputs.summary()} (Inf also "
              "stands for values beyond float32's range); the run went on (--strict refuses "
              "such inputs)", file=sys.stderr)
    elif outputs is not None and outputs.summary():
        print(f"seqcli: warning: the outputs hold {outputs.summary()}, from finite inputs",
              file=sys.stderr)


def _progressing(batches, progress):
    for index, batch in enumerate(batches):
        if index == 1:  # asked for the second batch: the first has run
            start_up_done()
        progress.advance(len(batch))
        yield batch


def _write_ranking(outputs, path: str, sample: tuple, k: int, with_values: bool) -> None:
    """One text line per sample: the k largest indices (with values for --top-k)."""
    import numpy as np

    from seqcli.io.atomic import atomic_output

    if len(sample) != 1:
        raise UsageError(f"--argmax and --top-k need one output vector per sample; this model "
                         f"outputs shape {tuple(sample)} per sample")
    k = min(k, sample[0])
    with atomic_output(path, binary=False) as out:
        for batch in outputs:
            order = np.argsort(-batch, axis=1, kind="stable")[:, :k]
            lines = []
            for row, indices in zip(batch, order):
                if with_values:
                    lines.append(" ".join(f"{i}:{row[i]:.6g}" for i in indices))
                else:
                    lines.append(str(indices[0]))
            out.write("\n".join(lines) + "\n")


class Progress:
    """A progress line on stderr, only on a terminal and only for runs longer than ~2 s."""

    def __init__(self, what: str, total: int, enabled: bool = True):
        import time

        self.what, self.total, self.done_rows = what, total, 0
        self.enabled = enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self.shown = False

    def advance(self, rows: int) -> None:
        """Count `rows` more rows done."""
        import time

        self.done_rows += rows
        elapsed = time.monotonic() - self.start
        if self.enabled and elapsed > 2:
            rate = self.done_rows / elapsed
            print(f"\r{self.what}: {self.done_rows}/{self.total} rows "
                  f"({100 * self.done_rows // max(self.total, 1)}%, {rate:.0f} rows/s)",
                  end="", file=sys.stderr, flush=True)
            self.shown = True

    def done(self) -> None:
        """End the progress line."""
        if self.shown:
            print(file=sys.stderr)


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


# Commands defined in their own modules register themselves on `app` when imported.
# (one name per module in the import below)

from seqcli import cli_bench, cli_fit, cli_keras, cli_onnx  # noqa: E402,F401,I001
