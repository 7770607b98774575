"""Keras's `model.summary()` table and the CONTRACT's JSON document for a built model."""

from __future__ import annotations

from seqcli.build import BuiltModel, LayerInfo
from seqcli.io.memory import readable_size
from seqcli.shapes import format_shape, num_elements

BYTES_PER_VALUE = 4  # float32


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


NARROWEST_TEXT_COLUMN = 8
"""A layer-name or shape column is narrowed, its text wrapped, down to this width at most."""


def summary_text(model: BuiltModel, *, expand_nested: bool = False,
                 show_trainable: bool = False, batch_size: int = 1,
                 boxes: bool = False, unicode: bool = True, width: int | None = None) -> str:
    """The Keras-style table; box drawing when `boxes` (a terminal), plain text otherwise.
    `unicode` False: ASCII only (an ASCII terminal or locale). `width`: the terminal's
    columns, which the table and notes are narrowed and wrapped to fit, as rich does for
    Keras; None (pipes and files): as wide as the text."""
    header = ["Layer (type)", "Output Shape", "Param #", "MACs"]
    align = ["<", "<", ">", ">"]
    if show_trainable:
        header.append("Trainable")
        align.append("^")
    nested = "└ " if unicode else "`- "
    rows, hanging = [], [0]  # hanging: the nested-row prefix of each line's first cell
    for info, depth in _rows(model, expand_nested):
        prefix = "   " * depth + nested if depth else ""
        hanging.append(len(prefix))
        row = [f"{prefix}{info.name} ({info.layer.type})", format_shape(info.output_shape),
               f"{info.params:,}", "?" if info.macs is None else f"{info.macs:,}"]
        if show_trainable:
            row.append(_trainable_flag(info))
        rows.append(row)
    content = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    widths = [max(content[0], 31), max(content[1], 22), max(content[2], 13), *content[3:]]
    boxes = boxes and unicode
    if width is not None:
        overhead = 3 * len(widths) + 1 if boxes else 2 * (len(widths) - 1)
        unbroken = [max(_longest_word(r[0], hang) for r, hang in zip([header] + rows, hanging)),
                    max(_longest_word(r[1], 0) for r in [header] + rows)]
        widths = _fitted(widths, content, unbroken, width - overhead)

    def line(cells, left="", sep="  ", right=""):
        body = sep.join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths))
        return f"{left}{body}{right}".rstrip() if not boxes else f"{left}{body}{right}"

    def lines(cells, hang, left="", sep="  ", right=""):
        wrapped = [_wrapped(cell, w, hang if not i else 0)
                   for i, (cell, w) in enumerate(zip(cells, widths))]
        return [line([cell[k] if k < len(cell) else "" for cell in wrapped], left, sep, right)
                for k in range(max(map(len, wrapped)))]

    out = [f'Model: "{model.name}"']
    if boxes:
        def rule(left, mid, right, fill):
            return left + mid.join(fill * (w + 2) for w in widths) + right

        out.append(rule("┏", "┳", "┓", "━"))
        out.extend(lines(header, 0, "┃ ", " ┃ ", " ┃"))
        out.append(rule("┡", "╇", "┩", "━"))
        for i, (row, hang) in enumerate(zip(rows, hanging[1:])):
            if i:
                out.append(rule("├", "┼", "┤", "─"))
            out.extend(lines(row, hang, "│ ", " │ ", " │"))
        out.append(rule("└", "┴", "┘", "─"))
    else:
        rule_width = sum(widths) + 2 * (len(widths) - 1)
        out.extend(lines(header, 0))
        out.append("=" * rule_width)
        for row, hang in zip(rows, hanging[1:]):
            out.extend(lines(row, hang))
        out.append("=" * rule_width)
    out.extend(_notes(model, batch_size, width))
    return "\n".join(out) + "\n"


def _notes(model: BuiltModel, batch_size: int, width: int | None) -> list[str]:
    """The lines under the table: parameters, MACs, activation memory; wrapped to `width`."""
    total = model.total_params
    trainable = model.trainable_params
    macs = total_macs(model)
    memory = activation_bytes(model, batch_size)
    notes = [
        f" Total params: {total:,} ({readable_size(total * BYTES_PER_VALUE)})",
        f" Trainable params: {trainable:,} ({readable_size(trainable * BYTES_PER_VALUE)})",
        f" Non-trainable params: {total - trainable:,} "
        f"({readable_size((total - trainable) * BYTES_PER_VALUE)})",
        f" MACs per sample: {'?' if macs is None else f'{macs:,}'} "
        "(multiply-accumulates of Dense, convolution and recurrent layers)",
        f" Activation memory: {'?' if memory is None else readable_size(memory)} "
        f"at batch size {batch_size} (float32 outputs of all layers)",
    ]
    if width is None:
        return notes
    import textwrap

    return [wrapped for note in notes
            for wrapped in textwrap.wrap(note.lstrip(), max(width, 20), initial_indent=" ",
                                         subsequent_indent="   ", break_on_hyphens=False)]


def _fitted(widths: list[int], content: list[int], unbroken: list[int],
            room: int) -> list[int]:
    """Column widths whose sum fits `room` where they can: first without Keras's minimum
    widths; then with the two text columns (layer, shape) narrowed, the wider first, as far
    as their words stay whole (`unbroken`: their longest words); then further, down to
    `NARROWEST_TEXT_COLUMN`."""
    widths = list(widths)
    for i in range(len(widths)):
        excess = sum(widths) - room
        if excess > 0:
            widths[i] -= min(excess, widths[i] - content[i])
    for floors in (unbroken, [NARROWEST_TEXT_COLUMN] * 2):
        while sum(widths) > room:
            narrowable = [i for i in (0, 1) if widths[i] > floors[i]]
            if not narrowable:
                break
            widths[max(narrowable, key=lambda i: widths[i])] -= 1
    return widths


def _longest_word(cell: str, hanging: int) -> int:
    """The width `cell` needs to wrap between words only, its first `hanging` characters (a
    nested row's prefix) starting every line."""
    return hanging + max(map(len, cell[hanging:].split()), default=0)


def _wrapped(cell: str, width: int, hanging: int = 0) -> list[str]:
    """`cell` in lines of at most `width` characters, broken at spaces (or inside a word
    longer than a line); lines after the first are indented by `hanging` (a nested row's
    prefix)."""
    if len(cell) <= width:
        return [cell]
    import textwrap

    return textwrap.wrap(cell[hanging:], width, initial_indent=cell[:hanging],
                         subsequent_indent=" " * hanging, break_on_hyphens=False) or [cell]
