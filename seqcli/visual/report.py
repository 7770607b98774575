"""The HTML report: one self-contained page about a model (issue 20).

Its diagram (inline SVG), the summary table with per-layer bars for parameters, MACs and
activation memory, a histogram of every weight; with input samples, their predictions and
every layer's feature maps for the first sample as image grids (Ludwig's
`collect_activations` and `visualize` in one page); with a training history, the loss and
metric curves. Nothing is fetched when the page opens: styles and charts are inline, images
are `data:` URIs, and the page's Content-Security-Policy forbids anything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING

import numpy as np

from seqcli import __version__
from seqcli.build import BuiltModel, LayerInfo
from seqcli.errors import InputDataError
from seqcli.shapes import format_shape, num_elements
from seqcli.summary import BYTES_PER_VALUE, activation_bytes, readable_size, total_macs
from seqcli.visual.charts import (
    TRAINING,
    VALIDATION,
    bars_svg,
    histogram_svg,
    line_chart_svg,
    short,
)
from seqcli.visual.diagram import DiagramOptions, diagram
from seqcli.visual.grids import feature_maps
from seqcli.visual.history import curves, finite_points
from seqcli.visual.png import data_uri, png_image, shrunk, to_pixels
from seqcli.visual.svg import svg_document

if TYPE_CHECKING:
    from seqcli.runtime.runner import Runner

HISTOGRAM_BINS = 40
"""Bars of a weight's histogram."""
MAX_CHANNELS = 32
"""Channels of a layer's output drawn as feature maps, the first ones."""
MAP_SIDE = 128
"""The longest side of a feature map image; a larger map is averaged down to it."""
MAP_DISPLAY = 96
"""The side a small feature map is enlarged to on the page (whole multiples, pixelated)."""
MAX_MAP_PIXELS = 6_000_000
"""Feature-map pixels a page holds at most (some 6 MB of PNG at worst); the maps of the
remaining layers are left out with a note."""
MAX_BARS = 100
"""Values of a prediction drawn as bars; a longer output shows its largest values only."""
TOP_VALUES = 5
"""The largest values of a prediction listed with their indices."""
MAX_CURVE_POINTS = 1000
"""Points of a training curve drawn; a longer history is thinned evenly."""

CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""Nothing but the page's own styles and `data:` images: no script, font or fetch."""


@dataclass
class ReportInputs:
    """What a report shows."""

    built: BuiltModel
    weights: dict[str, np.ndarray]
    source: str
    """The model file, as the user named it."""
    notes: list[str] = field(default_factory=list)
    """Things to know about the weights (initial values, not a file's)."""
    samples: np.ndarray | None = None
    """The first input samples, as the model takes them; None without an input."""
    input_source: str | None = None
    history: dict[str, list[float]] | None = None
    """Per-epoch values by metric name (`fit --history`)."""
    history_source: str | None = None


def first_samples(runner: Runner, path: str, count: int) -> np.ndarray:
    """The first `count` samples of the input `path` (`.npy`, `-` for stdin, a Zarr array, a
    glob of shards, or images resized as Keras's image_dataset_from_directory does), the
    runner built from its shape; an InputDataError for an input without samples."""
    from seqcli.io.inputs import open_model_input

    with open_model_input([path], runner) as data:
        runner.build(data.shape)
        batch = next(data.batches(count, as_float32=not runner.takes_ids), None)
    if batch is None:
        shown = "<stdin>" if path == "-" else path
        raise InputDataError(f"{shown} holds no samples; a report shows the first samples' "
                             "predictions and feature maps")
    return batch


def layer_outputs(built: BuiltModel, weights: dict[str, np.ndarray], samples: np.ndarray,
                  every_layer: bool) -> dict[str, np.ndarray]:
    """The model's outputs for `samples` by layer path: the last layer's, or with
    `every_layer` every layer's (a nested model's is its last layer's), as Keras's
    `Model(inputs, [layer.output ...])` gives them."""
    from seqcli.kernels.small import small_run
    from seqcli.runtime.model import forward, model_input
    from seqcli.runtime.runner import numeric_warnings_off

    outputs: dict[str, np.ndarray] = {}

    def keep(path: str, output: np.ndarray) -> None:
        outputs[path] = output

    with small_run(built, len(samples)), numeric_warnings_off():
        last = forward(built.layers, weights, model_input(built, samples),
                       collect=keep if every_layer else None)
    outputs[built.layers[-1].path] = last
    return outputs


def report_page(inputs: ReportInputs) -> str:
    """The whole HTML page."""
    built = inputs.built
    sections = [_header(inputs), _diagram_section(built), _table_section(built),
                _weights_section(built, inputs.weights)]
    if inputs.samples is not None:
        predictions = layer_outputs(built, inputs.weights, inputs.samples, False)
        sections.append(_predictions_section(built, predictions[built.layers[-1].path]))
        maps = layer_outputs(built, inputs.weights, inputs.samples[:1], True)
        sections.append(_maps_section(built, inputs, maps))
    if inputs.history is not None:
        sections.append(_history_section(inputs))
    title = escape(f"{built.name} - seqcli report")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + f"\n<footer>Written by seqcli {escape(__version__)}.</footer>\n</body>\n</html>\n")


_STYLE = """
body { font: 14px/1.45 Helvetica, Arial, sans-serif; color: #1a1a1a; margin: 0 auto;
  padding: 16px 24px; max-width: 1200px; background: #ffffff; }
h1 { font-size: 24px; margin: 8px 0; }
h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 1px solid #dddddd;
  padding-bottom: 4px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
.facts { margin: 0; } .facts dt { float: left; clear: left; width: 170px; color: #555555; }
.facts dd { margin: 0 0 2px 180px; }
.note { background: #fff6d5; border-left: 4px solid #e0b000; padding: 6px 10px; }
.diagram { overflow: auto; border: 1px solid #eeeeee; padding: 8px; max-height: 900px; }
table.layers { border-collapse: collapse; width: 100%; font-size: 13px; }
.layers th, .layers td { padding: 3px 8px; border-bottom: 1px solid #eeeeee; text-align: left;
  vertical-align: middle; white-space: nowrap; }
.layers td.number { text-align: right; font-variant-numeric: tabular-nums; }
.layers tr.nested td { color: #666666; font-style: italic; }
.layers tfoot td { font-weight: bold; border-top: 2px solid #999999; }
.bar { display: inline-block; height: 10px; background: #4a7ab5; vertical-align: middle;
  margin-left: 6px; } .bar.macs { background: #d0743c; } .bar.memory { background: #5a9e5a; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #e2e2e2; border-radius: 4px; padding: 8px 10px; background: #fcfcfc; }
.card h4 { margin: 0 0 4px; font-size: 13px; } .card p { margin: 2px 0; font-size: 12px;
  color: #444444; }
.maps { display: flex; flex-wrap: wrap; gap: 4px; align-items: flex-end; }
.maps figure { margin: 0; text-align: center; font-size: 10px; color: #666666; }
.maps img, img.picture { image-rendering: pixelated; border: 1px solid #cccccc;
  display: block; }
img.picture { width: 112px; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
footer { margin-top: 32px; color: #888888; font-size: 12px; }
"""


# ------------------------------------------------------------------ header, diagram, table


def _header(inputs: ReportInputs) -> str:
    built = inputs.built
    total, trainable = built.total_params, built.trainable_params
    macs = total_macs(built)
    memory = activation_bytes(built, 1)
    facts = [
        ("Model file", f"<code>{escape(inputs.source)}</code>"),
        ("Input shape", escape(format_shape(built.input_shape))),
        ("Output shape", escape(format_shape(built.output_shape))),
        ("Parameters", f"{total:,} ({escape(readable_size(total * BYTES_PER_VALUE))}): "
                       f"{trainable:,} trainable, {total - trainable:,} non-trainable"),
        ("MACs per sample", "?" if macs is None else f"{macs:,}"),
        ("Activation memory", "?" if memory is None
         else f"{escape(readable_size(memory))} per sample (float32 outputs of all layers)"),
    ]
    if inputs.input_source is not None:
        shown = "<stdin>" if inputs.input_source == "-" else inputs.input_source
        facts.append(("Input", f"<code>{escape(shown)}</code>"))
    if inputs.history_source is not None:
        shown = "<stdin>" if inputs.history_source == "-" else inputs.history_source
        facts.append(("Training history", f"<code>{escape(shown)}</code>"))
    rows = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    notes = "".join(f'<p class="note">{escape(note)}</p>' for note in inputs.notes)
    return (f'<header><h1>Model &ldquo;{escape(built.name)}&rdquo;</h1>'
            f'<dl class="facts">{rows}</dl>{notes}</header>')


def _diagram_section(built: BuiltModel) -> str:
    options = DiagramOptions(expand_nested=True, show_trainable=True, show_activations=True)
    svg = svg_document(diagram(built, options), standalone=False)
    return (f'<section id="diagram"><h2>Architecture</h2><div class="diagram">{svg}</div>'
            "</section>")


def _layer_bytes(info: LayerInfo) -> int | None:
    """float32 bytes of the outputs of a layer (of the layers of a nested model) per sample."""
    sizes = [num_elements(leaf.output_shape) for leaf in info.walk() if not leaf.children]
    return None if None in sizes else sum(sizes) * BYTES_PER_VALUE


def _bar(value: int | None, largest: int, kind: str) -> str:
    if not value or not largest:
        return ""
    return f'<span class="bar {kind}" style="width:{max(1, round(120 * value / largest))}px">' \
        "</span>"


def _table_section(built: BuiltModel) -> str:
    """The summary table, expanded, with bars scaled to the largest computing layer."""
    leaves = built.leaves()
    largest = {"params": max(info.params for info in leaves),
               "macs": max(info.macs or 0 for info in leaves),
               "memory": max(_layer_bytes(info) or 0 for info in leaves)}
    rows = []
    for info, depth in _expanded(built.layers, 0):
        nested = bool(info.children)
        memory = _layer_bytes(info)
        trainable = "-" if not info.weights else ("Y" if info.layer.trainable else "N")
        indent = f' style="padding-left:{8 + 18 * depth}px"' if depth else ""
        cells = [
            f"<td{indent}>{escape(info.name)} ({escape(info.layer.type)})</td>",
            f"<td>{escape(format_shape(info.output_shape))}</td>",
            f'<td class="number">{info.params:,}'
            f'{"" if nested else _bar(info.params, largest["params"], "params")}</td>',
            f'<td class="number">{"?" if info.macs is None else f"{info.macs:,}"}'
            f'{"" if nested else _bar(info.macs, largest["macs"], "macs")}</td>',
            f'<td class="number">{"?" if memory is None else escape(readable_size(memory))}'
            f'{"" if nested else _bar(memory, largest["memory"], "memory")}</td>',
            f"<td>{trainable}</td>",
        ]
        kind = ' class="nested"' if nested else ""
        rows.append(f'<tr{kind} data-path="{escape(info.path)}">{"".join(cells)}</tr>')
    macs = total_macs(built)
    memory = activation_bytes(built, 1)
    footer = (f"<tr><td>Total</td><td></td><td class=\"number\">{built.total_params:,}</td>"
              f'<td class="number">{"?" if macs is None else f"{macs:,}"}</td>'
              f'<td class="number">{"?" if memory is None else escape(readable_size(memory))}'
              "</td><td></td></tr>")
    return ('<section id="layers"><h2>Layers</h2><table class="layers"><thead><tr>'
            "<th>Layer (type)</th><th>Output shape</th><th>Params</th><th>MACs</th>"
            "<th>Activation memory</th><th>Trainable</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody><tfoot>{footer}</tfoot></table>"
            "<p>Bars are relative to the largest layer; a nested model's row (in italics) "
            "totals its layers. MACs: multiply-accumulates per sample; activation memory: "
            "the float32 output per sample.</p></section>")


def _expanded(infos: list[LayerInfo], depth: int):
    """(info, depth) of every layer, nested ones after their model."""
    for info in infos:
        yield info, depth
        yield from _expanded(info.children, depth + 1)


# ------------------------------------------------------------------ weights


def _weights_section(built: BuiltModel, weights: dict[str, np.ndarray]) -> str:
    """A card per weight, grouped by layer: histogram and statistics."""
    parts = []
    for info in built.leaves():
        if not info.weights:
            continue
        cards = "".join(_weight_card(info, key, weights[key]) for key in info.weights)
        trainable = "trainable" if info.layer.trainable else "non-trainable"
        parts.append(f'<h3>{escape(info.path)} ({escape(info.layer.type)}, {trainable})</h3>'
                     f'<div class="cards">{cards}</div>')
    if not parts:
        parts.append("<p>This model has no weights.</p>")
    return f'<section id="weights"><h2>Weights</h2>{"".join(parts)}</section>'


@dataclass
class WeightStatistics:
    """A weight's values summed up: how many, their range, mean and standard deviation, and
    a histogram of `HISTOGRAM_BINS` bins (over [min - 0.5, max + 0.5] for a constant)."""

    size: int
    finite: int
    low: float = 0.0
    high: float = 0.0
    mean: float = 0.0
    std: float = 0.0
    counts: list[int] = field(default_factory=list)
    edges: list[float] = field(default_factory=list)


STATISTICS_CHUNK = 1 << 20
"""Values of a weight looked at at once (a large weight is summed up in pieces, in float64,
without a copy of its own size)."""


def weight_statistics(array: np.ndarray) -> WeightStatistics:
    """`array`'s statistics over its finite values, in two passes of bounded memory: range and
    mean, then deviations and histogram."""
    flat = array.reshape(-1)
    stats = WeightStatistics(size=flat.size, finite=0, low=math.inf, high=-math.inf)
    total = 0.0
    for values in _finite_pieces(flat):
        stats.finite += values.size
        stats.low, stats.high = min(stats.low, values.min()), max(stats.high, values.max())
        total += values.sum()
    if not stats.finite:
        stats.low = stats.high = 0.0
        return stats
    stats.mean = total / stats.finite
    low, high = (stats.low, stats.high) if stats.low < stats.high \
        else (stats.low - 0.5, stats.high + 0.5)
    counts = np.zeros(HISTOGRAM_BINS, np.int64)
    squares = 0.0
    for values in _finite_pieces(flat):
        squares += ((values - stats.mean) ** 2).sum()
        counts += np.histogram(values, bins=HISTOGRAM_BINS, range=(low, high))[0]
    stats.std = (squares / stats.finite) ** 0.5
    stats.counts = counts.tolist()
    stats.edges = np.linspace(low, high, HISTOGRAM_BINS + 1).tolist()
    return stats


def _finite_pieces(flat: np.ndarray):
    """The finite values of `flat`, `STATISTICS_CHUNK` at a time, as float64 (no empty
    piece)."""
    for start in range(0, flat.size, STATISTICS_CHUNK):
        piece = flat[start:start + STATISTICS_CHUNK]
        values = piece[np.isfinite(piece)].astype(np.float64)
        if values.size:
            yield values


def _weight_card(info: LayerInfo, key: str, array: np.ndarray) -> str:
    stats = weight_statistics(array)
    shape = "(" + ", ".join(map(str, array.shape)) + (",)" if array.ndim == 1 else ")")
    lines = [f"shape {shape}, {stats.size:,} values"]
    chart = ""
    if stats.finite:
        lines.append(f"min {short(stats.low)}, max {short(stats.high)}")
        lines.append(f"mean {short(stats.mean)}, std {short(stats.std)}")
        chart = histogram_svg(stats.counts, stats.edges, f"histogram of {key}")
    if stats.finite < stats.size:
        lines.append(f"{stats.size - stats.finite:,} NaN or infinite")
    text = "".join(f"<p>{escape(line)}</p>" for line in lines)
    return (f'<div class="card" data-weight="{escape(key)}"><h4>{escape(info.weight_name(key))}'
            f"</h4>{chart}{text}</div>")


# ------------------------------------------------------------------ predictions, maps


def _predictions_section(built: BuiltModel, last: np.ndarray) -> str:
    """For each sample of the model's output `last`: bars with its largest values (a vector),
    its picture (an image), else its statistics."""
    cards = []
    for index, output in enumerate(last):
        values = np.asarray(output, np.float64).ravel()
        lines = []
        chart = ""
        if output.ndim == 1:
            top = np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")[:TOP_VALUES]
            lines.append("largest: " + ", ".join(f"[{i}] {short(values[i])}" for i in top))
            shown = values if values.size <= MAX_BARS else None
            if shown is not None:
                chart = bars_svg(shown.tolist(), f"output of sample {index}")
            else:
                lines.append(f"{values.size:,} values; the largest shown")
        else:
            finite = values[np.isfinite(values)]
            lines.append(f"shape {format_shape(output.shape, batch=False)}")
            if finite.size:
                lines.append(f"min {short(finite.min())}, max {short(finite.max())}, "
                             f"mean {short(finite.mean())}")
            picture = _picture(np.asarray(output))
            if picture is not None:
                chart = f'<img class="picture" src="{picture}" alt="output of sample {index}">'
            else:
                lines.append("its maps are the last layer's below")
        text = "".join(f"<p>{escape(line)}</p>" for line in lines)
        cards.append(f'<div class="card"><h4>sample {index}</h4>{chart}{text}</div>')
    return (f'<section id="predictions"><h2>Predictions</h2><p>The model\'s output '
            f"{escape(format_shape(built.output_shape))} for the first {len(last)} "
            f'sample{"s" if len(last) != 1 else ""} of the input.</p>'
            f'<div class="cards">{"".join(cards)}</div></section>')


def _map_images(values: np.ndarray) -> tuple[list[tuple[str, int, int]], str]:
    """(data URI, shown width, shown height) of each feature map, and what they are."""
    maps, what = feature_maps(values, MAX_CHANNELS)
    images = []
    for plane in maps:
        pixels = to_pixels(shrunk(plane, MAP_SIDE))
        height, width = pixels.shape
        zoom = max(1, MAP_DISPLAY // max(height, width))
        images.append((data_uri(png_image(pixels)), width * zoom, max(height * zoom, 8)))
    if maps and max(maps[0].shape) > MAP_SIDE:
        what += f"; averaged down to at most {MAP_SIDE} pixels a side"
    return images, what


def _picture(sample: np.ndarray) -> str | None:
    """A sample that is a picture, (H, W, 1|3), as a data URI (stretched to 0-255 as a whole);
    None for other shapes."""
    if sample.ndim != 3 or sample.shape[-1] not in (1, 3):
        return None
    pixels = to_pixels(shrunk(sample.astype(np.float64), 4 * MAP_SIDE))
    return data_uri(png_image(pixels[..., 0] if pixels.shape[-1] == 1 else pixels))


def _maps_section(built: BuiltModel, inputs: ReportInputs,
                  outputs: dict[str, np.ndarray]) -> str:
    """The input picture (if it is one), then each computing layer's maps for sample 0."""
    parts = []
    picture = _picture(np.asarray(inputs.samples[0]))
    if picture is not None:
        parts.append(f'<h3>input {escape(format_shape(built.input_shape))}</h3>'
                     f'<div class="maps"><figure><img src="{picture}" alt="input sample 0">'
                     "</figure></div>")
    budget = MAX_MAP_PIXELS
    leaves = built.leaves()
    for position, info in enumerate(leaves):
        images, what = _map_images(np.asarray(outputs[info.path][0]))
        pixels = sum(w * h for _, w, h in images)
        if pixels > budget:
            parts.append(f'<p class="note">The maps of the last {len(leaves) - position} '
                         f"layers are left out: the page would hold more than "
                         f"{MAX_MAP_PIXELS:,} pixels of maps.</p>")
            break
        budget -= pixels
        figures = "".join(f'<figure><img src="{uri}" width="{w}" height="{h}" '
                          f'alt="{escape(info.path)} map {i}">{i}</figure>'
                          for i, (uri, w, h) in enumerate(images))
        parts.append(f'<h3 data-path="{escape(info.path)}">{escape(info.path)} '
                     f"({escape(info.layer.type)}) {escape(format_shape(info.output_shape))}"
                     f'</h3><p>{escape(what)}</p><div class="maps">{figures}</div>')
    return ('<section id="feature-maps"><h2>Feature maps</h2><p>Each layer\'s output for '
            "sample 0, each map stretched from its smallest value (black) to its largest "
            f'(white); a constant map is grey.</p>{"".join(parts)}</section>')


# ------------------------------------------------------------------ history


def _thinned(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """At most `MAX_CURVE_POINTS` of `points`, evenly spaced, the last one kept."""
    if len(points) <= MAX_CURVE_POINTS:
        return points
    step = len(points) / MAX_CURVE_POINTS
    kept = [points[int(i * step)] for i in range(MAX_CURVE_POINTS - 1)]
    return kept + [points[-1]]


def _history_section(inputs: ReportInputs) -> str:
    """A chart per metric: training and validation curves."""
    charts = []
    for name, training, validation in curves(inputs.history):
        series = [(name, _thinned(finite_points(training)), TRAINING)]
        if validation is not None:
            series.append((f"val_{name}", _thinned(finite_points(validation)), VALIDATION))
        charts.append(f'<div class="card">{line_chart_svg(name, series)}</div>')
    epochs = max(len(values) for values in inputs.history.values())
    return (f'<section id="history"><h2>Training</h2><p>{epochs:,} '
            f'epoch{"s" if epochs != 1 else ""}.</p><div class="cards">{"".join(charts)}'
            "</div></section>")

