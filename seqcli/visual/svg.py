"""A `Drawing` as an SVG document: plain text, no dependency, every name escaped."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from seqcli.visual.diagram import LINE_WIDTH, Arrow, Drawing, Group, Rect, Text

FONT_FAMILY = "Helvetica, Arial, 'Liberation Sans', 'DejaVu Sans', sans-serif"
"""Keras's font (Helvetica), then fonts of the same shape that more systems have."""


def number(value: float) -> str:
    """A coordinate, to a hundredth: `12`, `12.5`, `12.25`."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def svg_document(drawing: Drawing, *, standalone: bool = True) -> str:
    """The SVG of `drawing`: a file of its own (`standalone`: with the XML declaration), or an
    element to put inside an HTML page."""
    width, height = number(drawing.width), number(drawing.height)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>'] if standalone else []
    lines.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                 f'viewBox="0 0 {width} {height}" font-family="{FONT_FAMILY}" '
                 f'class="seqcli-diagram" role="img">')
    lines.append(f"<title>{escape(drawing.title)}</title>")
    lines.append(f'<rect width="{width}" height="{height}" fill="#ffffff"/>')
    for item in drawing.items:
        lines.extend(_element(item))
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def _element(item) -> list[str]:
    """The SVG lines of one item of a drawing."""
    if isinstance(item, Group):
        lines = [f'<g class="{item.kind}" data-path={quoteattr(item.path)}>',
                 f"<title>{escape(item.path)}</title>"]
        for inner in item.items:
            lines.extend(_element(inner))
        return lines + ["</g>"]
    if isinstance(item, Rect):
        return [_rect(item)]
    if isinstance(item, Text):
        return [_text(item)]
    if isinstance(item, Arrow):
        return [_arrow(item)]
    raise TypeError(f"cannot draw {type(item).__name__}")


def _rect(rect: Rect) -> str:
    attributes = (f'x="{number(rect.x)}" y="{number(rect.y)}" width="{number(rect.width)}" '
                  f'height="{number(rect.height)}" fill="{rect.fill or "none"}"')
    if rect.stroke:
        attributes += f' stroke="{rect.stroke}" stroke-width="{number(LINE_WIDTH)}"'
    if rect.dashed:
        attributes += ' stroke-dasharray="6 4"'
    return f"<rect {attributes}/>"


def _text(text: Text) -> str:
    spans = "".join(f'<tspan font-weight="bold">{escape(span.text)}</tspan>' if span.bold
                    else escape(span.text) for span in text.spans)
    anchor = ' text-anchor="middle"' if text.centred else ""
    return (f'<text x="{number(text.x)}" y="{number(text.y)}" font-size="{number(text.size)}" '
            f'fill="{text.color}"{anchor} xml:space="preserve">{spans}</text>')


def _arrow(arrow: Arrow) -> str:
    (x1, y1), (x2, y2) = arrow.start, arrow.base
    points = " ".join(f"{number(x)},{number(y)}" for x, y in arrow.head)
    return (f'<g class="edge"><line x1="{number(x1)}" y1="{number(y1)}" x2="{number(x2)}" '
            f'y2="{number(y2)}" stroke="#000000" stroke-width="{number(LINE_WIDTH)}"/>'
            f'<polygon points="{points}" fill="#000000"/></g>')
