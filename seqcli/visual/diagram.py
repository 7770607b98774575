"""The architecture diagram of `keras.utils.plot_model(show_shapes=True,
show_layer_names=True)`, laid out without Graphviz.

A box per layer as Keras draws it: the layer's name (bold) and type in white on black, then
its input and output shapes, optionally its activation and whether it is trainable (green) or
not (red); nested models framed by a dashed line under their name; arrows between the boxes,
top to bottom (`TB`) or left to right (`LR`). The result is a `Drawing` of rectangles, texts
and arrows, which `svg` writes as SVG and `raster` paints with Pillow. Text widths come from a
`Measure` function: an estimate for SVG (`estimated_width`), the font's own for PNG.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from seqcli.build import BuiltModel, LayerInfo
from seqcli.shapes import format_shape

Measure = Callable[[str, float, bool], float]
"""The width of a text at a font size, bold or not."""

TITLE_SIZE = 16.0
"""Font size of a box's first line (name and type), as Keras's `point-size`."""
BODY_SIZE = 14.0
"""Font size of the other lines and of a frame's label."""
LINE_HEIGHT = 1.25
"""Height of a line of text, in font sizes."""
CELL_PADDING = 10.0
"""Space around the text of a cell (Keras's `cellpadding`)."""
CELL_SPACING = 3.0
"""The black between two cells of a box and around them."""
RANK_GAP = 36.0
"""Space between two boxes, where the arrow runs (Graphviz's `ranksep`, half an inch)."""
FRAME_PADDING = 12.0
"""Space between a nested model's frame and what it holds."""
MARGIN = 8.0
"""Space around the whole diagram."""
ARROW_LENGTH, ARROW_WIDTH = 10.0, 8.0
"""An arrowhead's size."""
LINE_WIDTH = 2.0
"""Width of arrows and frames (Keras's `penwidth`)."""

WHITE, BLACK = "#ffffff", "#000000"
TRAINABLE, FROZEN = "#228b22", "#b22222"
"""Graphviz's forestgreen and firebrick, Keras's colours for the trainable marks."""

Direction = Literal["TB", "LR"]


@dataclass(frozen=True)
class DiagramOptions:
    """What `plot_model` is asked to show."""

    rankdir: Direction = "TB"
    """`TB`: top to bottom; `LR`: left to right."""
    expand_nested: bool = False
    """Draw the layers of nested models inside a frame, instead of one box per nested model."""
    show_trainable: bool = False
    """Mark each layer with weights Trainable (green) or Non-trainable (red)."""
    show_activations: bool = False
    """Add a line with the activation of each layer that has one."""


@dataclass(frozen=True)
class Span:
    """A piece of a line of text, bold or not."""

    text: str
    bold: bool = False


@dataclass(frozen=True)
class Rect:
    """A rectangle: filled (`fill`), outlined (`stroke`, dashed or not), or both."""

    x: float
    y: float
    width: float
    height: float
    fill: str | None
    stroke: str | None = None
    dashed: bool = False


@dataclass(frozen=True)
class Text:
    """One line of text: its spans side by side, centred on `x` (or starting at `x` when not
    `centred`), on the baseline `y`."""

    x: float
    y: float
    spans: tuple[Span, ...]
    size: float
    color: str
    centred: bool = True


@dataclass(frozen=True)
class Arrow:
    """A line from `start` to the base of the head, and the head: a filled triangle whose tip
    is at the end."""

    start: tuple[float, float]
    base: tuple[float, float]
    head: tuple[tuple[float, float], ...]


@dataclass
class Group:
    """What draws one layer (`kind` "layer") or one nested model's frame ("frame"), with the
    layer's path."""

    kind: str
    path: str
    items: list = field(default_factory=list)


@dataclass
class Drawing:
    """A laid-out diagram: its size and what to draw, in order (groups, then arrows)."""

    title: str
    width: float
    height: float
    items: list = field(default_factory=list)


def estimated_width(text: str, size: float, bold: bool) -> float:
    """A text's width without its font: 0.6 of the size per character (0.66 bold), a wide
    (East Asian) character a whole size. Wider than most sans-serif fonts draw it, so that the
    text fits its box whatever font the viewer has."""
    wide = sum(unicodedata.east_asian_width(char) in "WF" for char in text)
    return size * ((len(text) - wide) * (0.66 if bold else 0.6) + wide)


def line_height(size: float) -> float:
    """The height of a line of text at `size`."""
    return size * LINE_HEIGHT


def baseline(top: float, height: float, size: float) -> float:
    """The baseline that centres a line of text of `size` in a row from `top`, `height` tall."""
    return top + height / 2 + 0.35 * size


# ------------------------------------------------------------------ what each box says


@dataclass(frozen=True)
class _Cell:
    """A cell of a box: its text, background and text colour, font size."""

    spans: tuple[Span, ...]
    fill: str
    color: str
    size: float


def activation_name(info: LayerInfo) -> str | None:
    """The activation a layer's box shows: its `activation` by name, or the type of an
    activation layer given as one; None for a layer without an activation."""
    activation = getattr(info.layer, "activation", None)
    if activation is None or info.children:
        return None
    return activation if isinstance(activation, str) else activation.type


def _rows(info: LayerInfo, options: DiagramOptions) -> list[list[_Cell]]:
    """The rows of cells of a layer's box, as Keras's `make_layer_label`."""
    rows = [[_Cell((Span(info.name, True), Span(f" ({info.layer.type})")), BLACK, WHITE,
                   TITLE_SIZE)]]
    activation = activation_name(info) if options.show_activations else None
    if activation is not None:
        rows.append([_Cell((Span("Activation: "), Span(activation, True)), WHITE, BLACK,
                           BODY_SIZE)])
    cells = [_Cell((Span("Input shape: "), Span(format_shape(info.input_shape), True)),
                   WHITE, BLACK, BODY_SIZE),
             _Cell((Span("Output shape: "), Span(format_shape(info.output_shape), True)),
                   WHITE, BLACK, BODY_SIZE)]
    if options.show_trainable and info.weights:
        trainable = info.layer.trainable
        cells.append(_Cell((Span("Trainable" if trainable else "Non-trainable", True),),
                           TRAINABLE if trainable else FROZEN, WHITE, BODY_SIZE))
    rows.append(cells)
    return rows


# ------------------------------------------------------------------ layout


@dataclass
class _Box:
    """A layer's box: its rows of cells with their natural widths, and its size."""

    info: LayerInfo
    rows: list[list[_Cell]]
    widths: list[list[float]]
    width: float
    height: float


@dataclass
class _Frame:
    """A nested model drawn as a frame around its layers (boxes and frames), and its size."""

    info: LayerInfo
    children: list
    label_width: float
    width: float
    height: float


def _box(info: LayerInfo, options: DiagramOptions, measure: Measure) -> _Box:
    rows = _rows(info, options)
    widths = [[_spans_width(cell.spans, cell.size, measure) + 2 * CELL_PADDING for cell in row]
              for row in rows]
    width = max(sum(row) + CELL_SPACING * (len(row) - 1) for row in widths) + 2 * CELL_SPACING
    height = sum(_row_height(row) for row in rows) + CELL_SPACING * (len(rows) + 1)
    return _Box(info, rows, widths, width, height)


def _row_height(row: list[_Cell]) -> float:
    return max(line_height(cell.size) for cell in row) + 2 * CELL_PADDING


def _spans_width(spans: tuple[Span, ...], size: float, measure: Measure) -> float:
    return sum(measure(span.text, size, span.bold) for span in spans)


def _items(infos: list[LayerInfo], options: DiagramOptions, measure: Measure) -> list:
    """A box per layer, or with `expand_nested` a frame per nested model."""
    items = []
    for info in infos:
        if info.children and options.expand_nested:
            children = _items(info.children, options, measure)
            items.append(_frame(info, children, options.rankdir, measure))
        else:
            items.append(_box(info, options, measure))
    return items


def _frame(info: LayerInfo, children: list, rankdir: Direction, measure: Measure) -> _Frame:
    """A frame's size: its label on top, its layers in a line below. Top to bottom, the label
    stays left of the arrows running down the middle; left to right, the same space is kept
    below the layers as above, so that they stay centred on the arrows' line."""
    label_width = measure(info.name, BODY_SIZE, False)
    label = line_height(BODY_SIZE)
    along, across = _line_size(children, rankdir)
    if rankdir == "TB":
        width = max(across, 2 * (label_width + CELL_PADDING)) + 2 * FRAME_PADDING
        height = along + label + 2 * FRAME_PADDING
    else:
        width = max(along, label_width) + 2 * FRAME_PADDING
        height = across + 2 * label + 2 * FRAME_PADDING
    return _Frame(info, children, label_width, width, height)


def _line_size(items: list, rankdir: Direction) -> tuple[float, float]:
    """(length along the arrows, breadth across them) of items in a line."""
    if rankdir == "TB":
        return (sum(item.height for item in items) + RANK_GAP * (len(items) - 1),
                max(item.width for item in items))
    return (sum(item.width for item in items) + RANK_GAP * (len(items) - 1),
            max(item.height for item in items))


def diagram(model: BuiltModel, options: DiagramOptions, measure: Measure = estimated_width
            ) -> Drawing:
    """The laid-out diagram of `model`."""
    items = _items(model.layers, options, measure)
    along, across = _line_size(items, options.rankdir)
    if options.rankdir == "TB":
        width, height = across + 2 * MARGIN, along + 2 * MARGIN
    else:
        width, height = along + 2 * MARGIN, across + 2 * MARGIN
    drawing = Drawing(model.name, width, height)
    boxes: list[tuple[float, float, float, float]] = []  # (x, y, width, height) in order
    _place_line(items, options.rankdir, MARGIN, MARGIN + across / 2, drawing.items, boxes)
    drawing.items.extend(_arrow(a, b, options.rankdir) for a, b in zip(boxes, boxes[1:]))
    return drawing


def _place_line(items: list, rankdir: Direction, start: float, middle: float, out: list,
                boxes: list) -> None:
    """Place `items` in a line from `start` along the arrows, centred on `middle` across
    them; their groups go to `out`, their boxes' rectangles to `boxes`, in order."""
    for item in items:
        if rankdir == "TB":
            x, y, length = middle - item.width / 2, start, item.height
        else:
            x, y, length = start, middle - item.height / 2, item.width
        if isinstance(item, _Frame):
            out.append(_frame_group(item, x, y, rankdir, boxes))
        else:
            out.append(_box_group(item, x, y))
            boxes.append((x, y, item.width, item.height))
        start += length + RANK_GAP


def _frame_group(frame: _Frame, x: float, y: float, rankdir: Direction,
                 boxes: list) -> Group:
    """A frame, its label, and what it holds."""
    group = Group("frame", frame.info.path)
    group.items.append(Rect(x, y, frame.width, frame.height, None, BLACK, dashed=True))
    label = line_height(BODY_SIZE)
    group.items.append(Text(x + FRAME_PADDING, baseline(y + FRAME_PADDING / 2, label, BODY_SIZE),
                            (Span(frame.info.name),), BODY_SIZE, BLACK, centred=False))
    if rankdir == "TB":
        start, middle = y + FRAME_PADDING + label, x + frame.width / 2
    else:
        start, middle = x + FRAME_PADDING, y + frame.height / 2
    _place_line(frame.children, rankdir, start, middle, group.items, boxes)
    return group


def _box_group(box: _Box, x: float, y: float) -> Group:
    """A box: black behind, then each cell and its text; a row narrower than the box shares
    the difference among its cells."""
    group = Group("layer", box.info.path)
    group.items.append(Rect(x, y, box.width, box.height, BLACK))
    top = y + CELL_SPACING
    inner = box.width - 2 * CELL_SPACING
    for row, widths in zip(box.rows, box.widths):
        height = _row_height(row)
        extra = (inner - sum(widths) - CELL_SPACING * (len(row) - 1)) / len(row)
        left = x + CELL_SPACING
        for cell, width in zip(row, widths):
            width += extra
            if cell.fill != BLACK:
                group.items.append(Rect(left, top, width, height, cell.fill))
            group.items.append(Text(left + width / 2, baseline(top, height, cell.size),
                                    cell.spans, cell.size, cell.color))
            left += width + CELL_SPACING
        top += height + CELL_SPACING
    return group


def _arrow(a: tuple, b: tuple, rankdir: Direction) -> Arrow:
    """The arrow from box `a` to box `b` (each x, y, width, height)."""
    if rankdir == "TB":
        start, end = (a[0] + a[2] / 2, a[1] + a[3]), (b[0] + b[2] / 2, b[1])
    else:
        start, end = (a[0] + a[2], a[1] + a[3] / 2), (b[0], b[1] + b[3] / 2)
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = (dx * dx + dy * dy) ** 0.5 or 1.0
    ux, uy = dx / length, dy / length
    base = (end[0] - ux * ARROW_LENGTH, end[1] - uy * ARROW_LENGTH)
    half = ARROW_WIDTH / 2
    head = (end, (base[0] - uy * half, base[1] + ux * half), (base[0] + uy * half,
                                                              base[1] - ux * half))
    return Arrow(start, base, head)
