"""Keras's `model.summary()` table and the CONTRACT's JSON document for a built model."""

from __future__ import annotations

from seqcli.build import BuiltModel, LayerInfo
from seqcli.shapes import format_shape, num_elements

BYTES_PER_VALUE = 4  # float32


def readable_size(size: float) -> str:
    """Keras's memory size: `140.00 B`, `190.12 KB` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def _rows(model: BuiltModel, expand_nested: bool):
    """(info, depth) for each printed row; nested layers only when expanded."""
    def visit(info: LayerInfo, depth: int):
        yield info, depth
        if expand_nested:
            for child in info.children:
                yield from visit(child, depth + 1)

    for info in model.layers:
        yield from visit(info, 0)


def activation_bytes(model: BuiltModel, batch_size: int) -> int | None:
    """float32 bytes of every layer's output for a batch (None if a dimension is unknown)."""
    sizes = [num_elements(info.output_shape) for info in model.leaves()]
    if any(size is None for size in sizes):
        return None
    return sum(sizes) * BYTES_PER_VALUE * batch_size


def total_macs(model: BuiltModel) -> int | None:
    """Multiply-accumulates per sample (None if a dimension is unknown)."""
    macs = [info.macs for info in model.leaves()]
    return None if any(m is None for m in macs) else sum(macs)


def _trainable_flag(info: LayerInfo) -> str:
    if not info.weights:
        return "-"
    return "Y" if info.layer.trainable else "N"


def summary_json(model: BuiltModel, *, expand_nested: bool = False, batch_size: int = 1):
    """The CONTRACT's `summary --json` document (with extra keys: macs, trainable, ...)."""
    layers = []
    for info, depth in _rows(model, expand_nested):
        row = {
            "name": info.path if depth else info.name,
            "type": info.layer.type,
            "output_shape": [None, *info.output_shape],
            "params": info.params,
            "trainable_params": info.trainable_params,
            "trainable": info.layer.trainable,
            "macs": info.macs,
        }
        if depth:
            row["depth"] = depth
        layers.append(row)
    total = model.total_params
    trainable = model.trainable_params
    return {
        "name": model.name,
        "input_shape": [None, *model.input_shape],
        "output_shape": [None, *model.output_shape],
        "layers": layers,
        "total_params": total,
        "trainable_params": trainable,
        "non_trainable_params": total - trainable,
        "total_macs": total_macs(model),
        "batch_size": batch_size,
        "activation_bytes": activation_bytes(model, batch_size),
    }


def summary_text(model: BuiltModel, *, expand_nested: bool = False,
                 show_trainable: bool = False, batch_size: int = 1,
                 boxes: bool = False) -> str:
    """The Keras-style table; box drawing when `boxes` (a terminal), plain text otherwise."""
    header = ["Layer (type)", "Output Shape", "Param #", "MACs"]
    align = ["<", "<", ">", ">"]
    if show_trainable:
        header.append("Trainable")
        align.append("^")
    rows = []
    for info, depth in _rows(model, expand_nested):
        prefix = "   " * depth + "└ " if depth else ""
        row = [f"{prefix}{info.name} ({info.layer.type})", format_shape(info.output_shape),
               f"{info.params:,}", "?" if info.macs is None else f"{info.macs:,}"]
        if show_trainable:
            row.append(_trainable_flag(info))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    widths[0] = max(widths[0], 31)
    widths[1] = max(widths[1], 22)
    widths[2] = max(widths[2], 13)

    def line(cells, left="", sep="  ", right=""):
        body = sep.join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths))
        return f"{left}{body}{right}".rstrip() if not boxes else f"{left}{body}{right}"

    out = [f'Model: "{model.name}"']
    if boxes:
        def rule(left, mid, right, fill):
            return left + mid.join(fill * (w + 2) for w in widths) + right

        out.append(rule("┏", "┳", "┓", "━"))
        out.append(line(header, "┃ ", " ┃ ", " ┃"))
        out.append(rule("┡", "╇", "┩", "━"))
        for i, row in enumerate(rows):
            if i:
                out.append(rule("├", "┼", "┤", "─"))
            out.append(line(row, "│ ", " │ ", " │"))
        out.append(rule("└", "┴", "┘", "─"))
    else:
        width = sum(widths) + 2 * (len(widths) - 1)
        out.append(line(header))
        out.append("=" * width)
        out.extend(line(row) for row in rows)
        out.append("=" * width)
    total = model.total_params
    trainable = model.trainable_params
    out.append(f" Total params: {total:,} ({readable_size(total * BYTES_PER_VALUE)})")
    out.append(f" Trainable params: {trainable:,} "
               f"({readable_size(trainable * BYTES_PER_VALUE)})")
    out.append(f" Non-trainable params: {total - trainable:,} "
               f"({readable_size((total - trainable) * BYTES_PER_VALUE)})")
    macs = total_macs(model)
    out.append(f" MACs per sample: {'?' if macs is None else f'{macs:,}'} "
               "(multiply-accumulates of Dense, convolution and recurrent layers)")
    memory = activation_bytes(model, batch_size)
    out.append(f" Activation memory: {'?' if memory is None else readable_size(memory)} "
               f"at batch size {batch_size} (float32 outputs of all layers)")
    return "\n".join(out) + "\n"
