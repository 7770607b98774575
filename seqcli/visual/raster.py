"""A `Drawing` painted as a PNG image with Pillow (the optional extra `seqcli[images]`),
imported only when a PNG is asked for."""

from __future__ import annotations

import io

from seqcli.build import BuiltModel
from seqcli.errors import SeqcliError
from seqcli.io import pillow
from seqcli.visual.diagram import (
    LINE_WIDTH,
    Arrow,
    DiagramOptions,
    Drawing,
    Group,
    Rect,
    Text,
    diagram,
)

SCALE = 2.0
"""Pixels per unit of the drawing (Keras's plot_model draws at 200 dpi, about twice a
screen's)."""
MAX_PIXELS = 64_000_000
"""The largest image painted (some 190 MB of RGB): a model of thousands of layers is drawn
at a smaller scale, down to one pixel per unit, or refused."""
_FONTS = {False: ("LiberationSans-Regular.ttf", "Arial.ttf", "Helvetica.ttc", "DejaVuSans.ttf"),
          True: ("LiberationSans-Bold.ttf", "Arial Bold.ttf", "Helvetica.ttc",
                 "DejaVuSans-Bold.ttf")}
"""TrueType fonts tried in turn, regular and bold (Helvetica's shape first); Pillow's own
font when none is installed."""


def require_pillow():
    """`PIL.Image`, or a SeqcliError (exit 1) saying that a .png diagram needs Pillow."""
    return pillow.require_pillow("a .png diagram", instead="or write .svg, which needs nothing")


class Fonts:
    """The fonts a drawing is painted with, `scale` pixels per unit; `measure` is the
    `Measure` its layout takes, so that every text fits its box."""

    def __init__(self, scale: float = SCALE):
        self.scale = scale
        self._loaded: dict[tuple[float, bool], object] = {}

    def font(self, size: float, bold: bool):
        """The font for text of `size` units, in pixels."""
        key = (size, bold)
        if key not in self._loaded:
            self._loaded[key] = _truetype(size * self.scale, bold)
        return self._loaded[key]

    def measure(self, text: str, size: float, bold: bool) -> float:
        """The width of `text`, in units."""
        return self.font(size, bold).getlength(text) / self.scale


def _truetype(pixels: float, bold: bool):
    """The first of `_FONTS` that Pillow finds, at `pixels`; else Pillow's own font."""
    from PIL import ImageFont

    for name in _FONTS[bold]:
        try:
            return ImageFont.truetype(name, round(pixels))
        except OSError:
            continue
    return ImageFont.load_default(round(pixels))


def diagram_png(model: BuiltModel, options: DiagramOptions) -> bytes:
    """The diagram of `model` as PNG bytes, its text measured with the fonts it is painted
    with (Pillow must be importable: `require_pillow`)."""
    fonts = Fonts()
    drawing = diagram(model, options, fonts.measure)
    scale = fitting_scale(drawing)
    if scale != fonts.scale:
        fonts = Fonts(scale)
        drawing = diagram(model, options, fonts.measure)
    return png_bytes(drawing, fonts)


def png_bytes(drawing: Drawing, fonts: Fonts) -> bytes:
    """`drawing` painted on white, as PNG bytes."""
    from PIL import Image, ImageDraw

    scale = fonts.scale
    size = (max(1, round(drawing.width * scale)), max(1, round(drawing.height * scale)))
    image = Image.new("RGB", size, "#ffffff")
    draw = ImageDraw.Draw(image)
    for item in drawing.items:
        _paint(draw, item, fonts)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True, dpi=(96 * scale, 96 * scale))
    return out.getvalue()


def fitting_scale(drawing: Drawing) -> float:
    """`SCALE`, or less for a drawing too large to paint at it: one pixel per unit at least.
    A SeqcliError (exit 1) when even that is too large."""
    area = drawing.width * drawing.height
    if area * SCALE * SCALE <= MAX_PIXELS:
        return SCALE
    if area <= MAX_PIXELS:
        return (MAX_PIXELS / area) ** 0.5
    raise SeqcliError(f"the diagram is {drawing.width:,.0f} x {drawing.height:,.0f} pixels, "
                      f"more than the {MAX_PIXELS:,} a PNG is painted with; write it as .svg")


def _paint(draw, item, fonts: Fonts) -> None:
    """Paint one item of a drawing."""
    s = fonts.scale
    if isinstance(item, Group):
        for inner in item.items:
            _paint(draw, inner, fonts)
    elif isinstance(item, Rect):
        box = (item.x * s, item.y * s, (item.x + item.width) * s, (item.y + item.height) * s)
        if item.fill:
            draw.rectangle(box, fill=item.fill)
        if item.stroke and item.dashed:
            _dashed_rectangle(draw, box, item.stroke, round(LINE_WIDTH * s))
        elif item.stroke:
            draw.rectangle(box, outline=item.stroke, width=round(LINE_WIDTH * s))
    elif isinstance(item, Text):
        _text(draw, item, fonts)
    elif isinstance(item, Arrow):
        draw.line([(x * s, y * s) for x, y in (item.start, item.base)], fill="#000000",
                  width=round(LINE_WIDTH * s))
        draw.polygon([(x * s, y * s) for x, y in item.head], fill="#000000")
    else:
        raise TypeError(f"cannot paint {type(item).__name__}")


def _text(draw, text: Text, fonts: Fonts) -> None:
    """A line of spans, centred or from its start, on its baseline."""
    s = fonts.scale
    widths = [fonts.measure(span.text, text.size, span.bold) for span in text.spans]
    x = text.x - sum(widths) / 2 if text.centred else text.x
    for span, width in zip(text.spans, widths):
        draw.text((x * s, text.y * s), span.text, fill=text.color,
                  font=fonts.font(text.size, span.bold), anchor="ls")
        x += width


def _dashed_rectangle(draw, box: tuple, color: str, width: int, dash: float = 12,
                      gap: float = 8) -> None:
    """A rectangle's outline in dashes (Pillow draws only solid lines)."""
    left, top, right, bottom = box
    for (x1, y1), (x2, y2) in (((left, top), (right, top)), ((right, top), (right, bottom)),
                               ((right, bottom), (left, bottom)), ((left, bottom), (left, top))):
        length = abs(x2 - x1) + abs(y2 - y1)
        position = 0.0
        while position < length:
            end = min(position + dash, length)
            a, b = position / length, end / length
            draw.line([(x1 + (x2 - x1) * a, y1 + (y2 - y1) * a),
                       (x1 + (x2 - x1) * b, y1 + (y2 - y1) * b)], fill=color, width=width)
            position = end + gap

