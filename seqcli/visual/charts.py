"""Small inline SVG charts for the report: histograms, bars and line charts with axes, their
numbers in `<title>` tooltips (no script)."""

from __future__ import annotations

import math
from html import escape

from seqcli.visual.svg import number

AXIS = "#555555"
GRID = "#e4e4e4"
TRAINING, VALIDATION = "#1f77b4", "#ff7f0e"
"""matplotlib's first two colours, as Keras users see their curves."""
BAR = "#4a7ab5"
TEXT_SIZE = 11


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values (1, 2 or 5 times a power of ten apart, about `count` steps) from at most
    `low` to at least `high`."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high <= low:
        return [low]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = [round(first, 12)]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(round(first + len(ticks) * step, 12))
    return ticks


def short(value: float) -> str:
    """A number in at most about 6 characters: `0.25`, `1.2e-05`, `3.4e+06`."""
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.2g}"


def _svg(width: float, height: float, label: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{number(width)}" '
            f'height="{number(height)}" viewBox="0 0 {number(width)} {number(height)}" '
            f'role="img" aria-label="{escape(label)}" font-size="{TEXT_SIZE}">'
            + "".join(body) + "</svg>")


def histogram_svg(counts: list[int], edges: list[float], label: str, *, width: float = 260,
                  height: float = 96) -> str:
    """Bars of `counts` between `edges` (one more than counts), the range written under
    them; each bar's tooltip gives its interval and count."""
    bottom = height - 16
    most = max(counts) or 1
    step = width / len(counts)
    body = [f'<line x1="0" y1="{number(bottom)}" x2="{number(width)}" y2="{number(bottom)}" '
            f'stroke="{AXIS}"/>']
    for index, count in enumerate(counts):
        bar = (bottom - 4) * count / most
        tip = f"[{short(edges[index])}, {short(edges[index + 1])}): {count:,}"
        body.append(f'<rect x="{number(index * step + 0.5)}" y="{number(bottom - bar)}" '
                    f'width="{number(max(step - 1, 0.5))}" height="{number(bar)}" '
                    f'fill="{BAR}"><title>{escape(tip)}</title></rect>')
    body.append(f'<text x="0" y="{number(height - 3)}" fill="{AXIS}">'
                f"{escape(short(edges[0]))}</text>")
    body.append(f'<text x="{number(width)}" y="{number(height - 3)}" fill="{AXIS}" '
                f'text-anchor="end">{escape(short(edges[-1]))}</text>')
    return _svg(width, height, label, body)


def bars_svg(values: list[float], label: str, *, width: float = 360,
             height: float = 80) -> str:
    """A bar per value, from zero (up for positive, down for negative), each with its index
    and value as tooltip."""
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    low, high = min(0.0, *finite), max(0.0, *finite)
    span = (high - low) or 1.0
    zero = height * high / span
    step = width / len(values)
    body = []
    for index, value in enumerate(values):
        size = height * abs(value) / span if math.isfinite(value) else 0.0
        top = zero - size if value > 0 else zero
        body.append(f'<rect x="{number(index * step + 0.5)}" y="{number(top)}" '
                    f'width="{number(max(step - 1, 0.5))}" height="{number(max(size, 0.5))}" '
                    f'fill="{BAR}"><title>{index}: {escape(short(value))}</title></rect>')
    body.append(f'<line x1="0" y1="{number(zero)}" x2="{number(width)}" y2="{number(zero)}" '
                f'stroke="{AXIS}"/>')
    return _svg(width, height, label, body)


def line_chart_svg(title: str, series: list[tuple[str, list[tuple[int, float]], str]], *,
                   width: float = 460, height: float = 260) -> str:
    """Curves of (epoch, value) points, each `(name, points, colour)`, on axes with round
    ticks, a legend above; points are marked while there are few."""
    left, right, top, bottom = 52.0, 12.0, 28.0, 30.0
    points = [point for _, curve, _ in series for point in curve]
    epochs = [epoch for epoch, _ in points] or [1]
    values = [value for _, value in points] or [0.0]
    x_ticks = [t for t in nice_ticks(1, max(epochs), 6) if t >= 1 and t == int(t)] or [1]
    y_ticks = nice_ticks(min(values), max(values))
    x_low, x_high = 1, max(max(epochs), x_ticks[-1], 2)
    y_low, y_high = min(y_ticks[0], min(values)), max(y_ticks[-1], max(values))
    if y_high == y_low:
        y_low, y_high = y_low - 1, y_high + 1
    plot_w, plot_h = width - left - right, height - top - bottom

    def x_of(epoch: float) -> float:
        return left + plot_w * (epoch - x_low) / (x_high - x_low)

    def y_of(value: float) -> float:
        return top + plot_h * (y_high - value) / (y_high - y_low)

    body = [f'<text x="{number(left)}" y="14" font-weight="bold">{escape(title)}</text>']
    for tick in y_ticks:
        y = y_of(tick)
        body.append(f'<line x1="{number(left)}" y1="{number(y)}" x2="{number(width - right)}" '
                    f'y2="{number(y)}" stroke="{GRID}"/>')
        body.append(f'<text x="{number(left - 4)}" y="{number(y + 4)}" text-anchor="end" '
                    f'fill="{AXIS}">{escape(short(tick))}</text>')
    for tick in x_ticks:
        x = x_of(tick)
        body.append(f'<line x1="{number(x)}" y1="{number(top + plot_h)}" x2="{number(x)}" '
                    f'y2="{number(top + plot_h + 4)}" stroke="{AXIS}"/>')
        body.append(f'<text x="{number(x)}" y="{number(top + plot_h + 16)}" '
                    f'text-anchor="middle" fill="{AXIS}">{int(tick)}</text>')
    body.append(f'<text x="{number(left + plot_w / 2)}" y="{number(height - 2)}" '
                f'text-anchor="middle" fill="{AXIS}">epoch</text>')
    body.append(f'<rect x="{number(left)}" y="{number(top)}" width="{number(plot_w)}" '
                f'height="{number(plot_h)}" fill="none" stroke="{AXIS}"/>')
    legend_x = width - right
    for name, _, color in reversed(series):
        body.append(f'<text x="{number(legend_x)}" y="14" text-anchor="end" fill="{color}">'
                    f"\u25cf {escape(name)}</text>")
        legend_x -= 12 + 7 * len(name)
    for name, curve, color in series:
        path = " ".join(f"{number(x_of(e))},{number(y_of(v))}" for e, v in curve)
        body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2">'
                    f"<title>{escape(name)}</title></polyline>")
        if len(curve) <= 60:
            body.extend(f'<circle cx="{number(x_of(e))}" cy="{number(y_of(v))}" r="2.5" '
                        f'fill="{color}"><title>{escape(name)}, epoch {e}: {escape(short(v))}'
                        "</title></circle>" for e, v in curve)
    return _svg(width, height, title, body)
