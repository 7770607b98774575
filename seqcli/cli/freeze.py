"""`seqcli freeze`: the model file rewritten with `trainable` set, comments and order kept."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from seqcli.cli.app import AllowOutsideOpt, BaseDirOpt, ModelArg, QuietOpt, app
from seqcli.errors import UsageError


@app.command()
def freeze(
    model: ModelArg,
    layer: Annotated[list[str] | None, typer.Option(
        "--layer", metavar="NAME",
        help="Layer name, nested path or glob (conv2d*) to freeze; repeatable.")] = None,
    all_but_last: Annotated[bool, typer.Option(
        "--all-but-last", help="Freeze every top-level layer but the last.")] = False,
    up_to: Annotated[str | None, typer.Option(
        "--up-to", metavar="NAME",
        help="Freeze the top-level layers up to and including this one.")] = None,
    unfreeze: Annotated[list[str] | None, typer.Option(
        "--unfreeze", metavar="NAME",
        help="Layer name, path or glob to make trainable again; repeatable.")] = None,
    output: Annotated[str, typer.Option(
        "-o", "--output", metavar="FILE",
        help="Write the model file here (default: stdout).")] = "-",
    in_place: Annotated[bool, typer.Option(
        "--in-place", help="Rewrite MODEL itself (atomically).")] = False,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write a model file with layers frozen (trainable: false).

    Only the lines that must change do: comments, key order and formatting are kept. The
    model goes to stdout, to -o FILE, or back into MODEL with --in-place.

    Examples:
      seqcli freeze configs/guide_convnet.yaml --up-to conv2d_1 -o frozen.yaml
      seqcli freeze model.yaml --all-but-last --in-place
    """
    from seqcli.config.freeze import FreezeRequest, frozen_ancestor, plan, rewrite
    from seqcli.config.load import load_model_text, read_model_text
    from seqcli.config.yamlsafe import parse_yaml
    from seqcli.io.atomic import atomic_output, check_output

    if in_place and (model == "-" or output != "-"):
        raise UsageError("--in-place rewrites MODEL itself: it needs a file, and no -o")
    if not (layer or all_but_last or up_to or unfreeze):
        raise UsageError("say what to freeze: --layer NAME, --all-but-last, --up-to NAME "
                         "or --unfreeze NAME")
    target = model if in_place else output
    check_output(target, binary=False)
    text, source, folder = read_model_text(model, base_dir)
    loaded = load_model_text(text, source, folder, allow_outside=allow_outside)
    request = FreezeRequest(layers=layer or [], all_but_last=all_but_last, up_to=up_to,
                            unfreeze=unfreeze)
    changes = plan(loaded, request)
    for path, trainable in changes.items():
        ancestor = frozen_ancestor(loaded, path)
        if trainable and ancestor and changes.get(ancestor) is not True:
            print(f"seqcli: warning: '{path}' stays frozen while its nested model "
                  f"'{ancestor}' is frozen", file=sys.stderr)
    new = rewrite(text, parse_yaml(text), loaded, changes)
    load_model_text(new.text, source, folder, allow_outside=allow_outside)  # still valid
    if not new.in_place and not quiet:
        print(f"seqcli: note: {source}: its YAML cannot be edited in place; the model is written "
              "out whole, without its comments and formatting", file=sys.stderr)
    with atomic_output(target, binary=False) as out:
        out.write(new.text)
