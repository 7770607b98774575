"""`seqcli init`: a model's initial weights, written to a weights file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from seqcli.cli.app import (
    AllowOutsideOpt,
    BaseDirOpt,
    InputShapeOpt,
    ModelArg,
    QuietOpt,
    app,
    load,
    parse_shape,
    stdin_once,
)
from seqcli.errors import UsageError
from seqcli.io.limits import MAX_SEED


@app.command()
def init(
    model: ModelArg,
    output: Annotated[str | None, typer.Option(
        "-o", "--output", metavar="FILE", help="Weights file to write (.safetensors or .npz); "
        "default: the model's 'weights:' path.")] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", min=0, max=MAX_SEED,
        help="Seed for the initialisers (default: the model's seed, else 0).")] = None,
    input_shape: InputShapeOpt = None,
    weights_from: Annotated[str | None, typer.Option(
        "--weights-from", metavar="FILE", callback=stdin_once, help="Take every tensor this "
        "weights file has under the same key and shape (Keras's load_weights by name); "
        "initialise the rest.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite the model's existing weights file.")] = False,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write a model's initial weights to a weights file.

    Keras's initialisers, seeded by --seed or the model's seed; nested `from:` models keep
    their weights, and --weights-from reuses the tensors of a trained weights file.

    Examples:
      seqcli init configs/dense_stack.yaml -o dense.safetensors --seed 1
      seqcli init head.yaml --weights-from pretrained.safetensors -o start.safetensors
    """
    from seqcli.build import build
    from seqcli.io.atomic import check_output
    from seqcli.io.weights import weights_format, write_weights
    from seqcli.runtime.weights import load_model_weights

    if output is not None:
        weights_format(output)
        check_output(output, what="binary weights")
    loaded = load(model, allow_outside, base_dir)
    target = output if output is not None else loaded.weights_path
    if target is None:
        raise UsageError("the model declares no weights file: pass -o FILE.safetensors")
    if output is None:
        if Path(target).exists() and not force:
            raise UsageError(f"{target} exists (the model's weights); pass --force to replace "
                             "it or -o to write elsewhere")
        weights_format(target, stdout=False)
        check_output(target)
    built = build(loaded, parse_shape(input_shape))
    loaded.weights_path = None  # initialise: the model's own file is not read
    arrays = load_model_weights(loaded, built, seed=seed).arrays
    if weights_from is not None:
        from seqcli.runtime.weights import take_matching

        taken, unused = take_matching(arrays, weights_from)
        if not quiet:
            print(f"seqcli: took {len(taken)} tensors from {weights_from}; initialised "
                  f"{len(arrays) - len(taken)}" + (f"; not used: {', '.join(unused)}"
                                                    if unused else ""), file=sys.stderr)
    write_weights(target, arrays)
    if str(target) != "-" and not quiet:
        print(f"seqcli: wrote {len(arrays)} tensors ({built.total_params:,} params) to {target}",
              file=sys.stderr)
