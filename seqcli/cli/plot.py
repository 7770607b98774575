"""`seqcli plot`: the architecture diagram `keras.utils.plot_model` draws, as SVG or PNG."""

from __future__ import annotations

from typing import Annotated

import typer

from seqcli.cli.app import (
    AllowOutsideOpt,
    BaseDirOpt,
    InputShapeOpt,
    ModelArg,
    app,
    load,
    parse_shape,
)


def _rankdir(value: str) -> str:
    """Graphviz's `rankdir`, as `plot_model` takes it: TB or LR, in either case."""
    if value.upper() not in ("TB", "LR"):
        raise typer.BadParameter(f"expected TB or LR. Received: {value!r}")
    return value.upper()


RankdirOpt = Annotated[str, typer.Option(
    "--rankdir", metavar="[TB|LR]", callback=_rankdir,
    help="TB: top to bottom; LR: left to right.")]
ShowTrainableOpt = Annotated[bool, typer.Option(
    "--show-trainable", help="Mark each layer with weights Trainable or Non-trainable.")]
ExpandNestedOpt = Annotated[bool, typer.Option(
    "--expand-nested", help="Draw the layers of nested models inside a frame.")]
ShowActivationsOpt = Annotated[bool, typer.Option(
    "--show-activations", help="Add each layer's activation to its box.")]


@app.command()
def plot(
    model: ModelArg,
    output: Annotated[str, typer.Option(
        "-o", "--output", metavar="FILE",
        help="Picture to write, by its extension: .svg (no dependency) or .png (needs "
        "Pillow); - for SVG on stdout.")] = "-",
    rankdir: RankdirOpt = "TB",
    show_trainable: ShowTrainableOpt = False,
    expand_nested: ExpandNestedOpt = False,
    show_activations: ShowActivationsOpt = False,
    input_shape: InputShapeOpt = None,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
) -> None:
    """Draw a model's architecture as SVG or PNG.

    The diagram keras.utils.plot_model(model, show_shapes=True, show_layer_names=True)
    draws, without Graphviz: a box per layer with its name, type, input and output shapes,
    arrows between them. SVG needs nothing; PNG needs Pillow (pip install 'seqcli[images]').
    Weights are not read.

    Examples:
      seqcli plot configs/transfer_learning.yaml -o model.svg --expand-nested --show-trainable
      seqcli plot configs/guide_convnet.yaml -o model.png --rankdir LR --show-activations
    """
    from seqcli.build import build
    from seqcli.io.atomic import atomic_output, check_output
    from seqcli.io.formats import check_extension, extension
    from seqcli.visual.diagram import DiagramOptions

    check_extension(output, (".svg", ".png"), "the diagram")
    png = extension(output) == ".png"
    if png:
        from seqcli.visual.raster import require_pillow

        require_pillow()
    check_output(output, binary=png, what="a PNG image")
    built = build(load(model, allow_outside, base_dir), parse_shape(input_shape))
    options = DiagramOptions(rankdir=rankdir, expand_nested=expand_nested,
                             show_trainable=show_trainable, show_activations=show_activations)
    if png:
        from seqcli.visual.raster import diagram_png

        data = diagram_png(built, options)
    else:
        from seqcli.visual.diagram import diagram
        from seqcli.visual.svg import svg_document

        data = svg_document(diagram(built, options))
    with atomic_output(output, binary=png) as out:
        out.write(data)
