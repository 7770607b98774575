"""`seqcli export-onnx`: the model as an ONNX graph that onnxruntime runs (needs `onnx`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from seqcli.cli.app import (
    AllowOutsideOpt,
    BaseDirOpt,
    InputShapeOpt,
    ModelArg,
    QuietOpt,
    WeightsOpt,
    app,
    parse_shape,
)


@app.command("export-onnx")
def export_onnx(
    model: ModelArg,
    output: Annotated[str, typer.Option(
        "-o", "--output", metavar="FILE", show_default=False,
        help="ONNX file to write, or - for stdout (never a terminal).")],
    weights: WeightsOpt = None,
    input_shape: InputShapeOpt = None,
    opset: Annotated[int | None, typer.Option(
        "--opset", metavar="N", show_default=False,
        help="ONNX opset of the graph (default 17; 17 up to the installed onnx's newest).")] = None,
    quiet: QuietOpt = False,
    allow_outside: AllowOutsideOpt = False,
    base_dir: BaseDirOpt = None,
) -> None:
    """Write a model as an ONNX graph.

    Its input is (batch, *input_shape), channels last as seqcli's arrays are, and onnxruntime
    runs it with seqcli's outputs. Needs the onnx package (pip install 'seqcli[onnx]').

    Examples:
      seqcli export-onnx configs/transfer_learning.yaml -o model.onnx
      seqcli export-onnx model.yaml --opset 18 -o - > model.onnx
    """
    from seqcli.interop.onnx_export import check_onnx_output, convert_model_file, write_onnx

    check_onnx_output(output)
    exported = convert_model_file(model, weights, parse_shape(input_shape), opset,
                                  allow_outside=allow_outside, base_dir=base_dir)
    write_onnx(exported, output)
    if not quiet and output != "-":
        shape = ", ".join(map(str, exported.input_shape))
        kind = "int64 ids" if exported.ids else "float32"
        print(f"seqcli: wrote {output}: opset {exported.opset}, {exported.node_count} nodes, "
              f"input 'input' (batch, {shape}) {kind}", file=sys.stderr)
    if not quiet and exported.weights_note:
        print(f"seqcli: note: {exported.weights_note}", file=sys.stderr)
