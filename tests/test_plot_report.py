"""`seqcli plot` and `seqcli report` (issue 20): the diagram as `keras.utils.plot_model` draws
it (SVG parsed as XML, its geometry checked box by box; PNG painted with Pillow), and the
self-contained HTML report (parsed with html.parser, its numbers checked against the model's
own, its images decoded), loaded in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from tests.conftest import CONFIGS, built_from

SVG = "{http://www.w3.org/2000/svg}"
NESTED = """
name: outer
input_shape: [6, 6, 2]
layers:
  - type: Sequential
    name: middle
    trainable: false
    layers:
      - {type: Conv2D, filters: 3, kernel_size: 3, activation: relu}
      - type: Sequential
        name: inner
        layers:
          - {type: MaxPooling2D}
          - {type: Flatten}
  - {type: Dropout, rate: 0.5}
  - {type: Dense, units: 2, activation: {type: LeakyReLU, negative_slope: 0.1}}
"""


def svg_root(text: str) -> ElementTree.Element:
    """The parsed SVG document (an XML error fails the test)."""
    root = ElementTree.fromstring(text.encode("utf-8"))
    assert root.tag == f"{SVG}svg"
    return root


def groups(root: ElementTree.Element, kind: str) -> list[ElementTree.Element]:
    """Every `<g class=kind>` (layer, frame, edge), in document order."""
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == kind]


def texts(element: ElementTree.Element) -> list[str]:
    """The lines of text drawn inside `element`."""
    return ["".join(text.itertext()) for text in element.iter(f"{SVG}text")]


def box_of(group: ElementTree.Element) -> tuple[float, float, float, float]:
    """(x, y, width, height) of a layer's box: its first rectangle, black."""
    rect = group.find(f"{SVG}rect")
    assert rect.get("fill") == "#000000"
    return tuple(float(rect.get(k)) for k in ("x", "y", "width", "height"))


def plot(cli, tmp_path: Path, model, *options: str, name: str = "model.svg"):
    path = tmp_path / name
    result = cli("plot", model, "-o", path, *options)
    assert result.code == 0, result
    assert (result.out, result.err) == ("", "")
    return path


# ------------------------------------------------------------------ the SVG


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
@pytest.mark.parametrize("expand", [False, True])
def test_every_layer_is_a_box_with_its_name_type_and_shapes(cli, tmp_path, config, expand):
    built = built_from(config.read_text(), base_dir=CONFIGS)
    path = plot(cli, tmp_path, config, *(["--expand-nested"] if expand else []))
    root = svg_root(path.read_text())
    drawn = built.leaves() if expand else built.layers
    layers = groups(root, "layer")
    assert [g.get("data-path") for g in layers] == [info.path for info in drawn]
    for group, info in zip(layers, drawn):
        assert texts(group) == [f"{info.name} ({info.layer.type})",
                                f"Input shape: {_shape(info.input_shape)}",
                                f"Output shape: {_shape(info.output_shape)}"]
        assert group.find(f"{SVG}title").text == info.path
    assert len(groups(root, "edge")) == len(drawn) - 1


def _shape(shape) -> str:
    return "(" + ", ".join(["None", *map(str, shape)]) + ")"


def test_expand_nested_frames_nested_models_inside_each_other(cli, tmp_path):
    (tmp_path / "m.yaml").write_text(NESTED)
    flat = svg_root(plot(cli, tmp_path, tmp_path / "m.yaml", name="flat.svg").read_text())
    assert groups(flat, "frame") == []
    assert [g.get("data-path") for g in groups(flat, "layer")] == ["middle", "dropout", "dense"]

    root = svg_root(plot(cli, tmp_path, tmp_path / "m.yaml", "--expand-nested").read_text())
    frames = groups(root, "frame")
    assert [f.get("data-path") for f in frames] == ["middle", "middle/inner"]
    middle, inner = frames
    assert [g.get("data-path") for g in groups(middle, "layer")] == [
        "middle/conv2d", "middle/inner/max_pooling2d", "middle/inner/flatten"]
    assert [g.get("data-path") for g in groups(inner, "layer")] == [
        "middle/inner/max_pooling2d", "middle/inner/flatten"]
    for frame in frames:  # a dashed outline labelled with the model's name, around its boxes
        outline = frame.find(f"{SVG}rect")
        assert outline.get("stroke-dasharray") and outline.get("fill") == "none"
        assert texts(frame)[0] == frame.get("data-path").rsplit("/", 1)[-1]
        x, y, w, h = (float(outline.get(k)) for k in ("x", "y", "width", "height"))
        for group in groups(frame, "layer"):
            bx, by, bw, bh = box_of(group)
            assert x < bx and bx + bw < x + w and y < by and by + bh < y + h


@pytest.mark.parametrize("rankdir", ["TB", "LR"])
def test_boxes_line_up_with_arrows_between_them(cli, tmp_path, rankdir):
    (tmp_path / "m.yaml").write_text(NESTED)
    root = svg_root(plot(cli, tmp_path, tmp_path / "m.yaml", "--expand-nested",
                         "--rankdir", rankdir).read_text())
    boxes = [box_of(g) for g in groups(root, "layer")]
    edges = groups(root, "edge")
    assert len(edges) == len(boxes) - 1
    along, across = (1, 0) if rankdir == "TB" else (0, 1)
    centres = {round(box[across] + box[across + 2] / 2, 2) for box in boxes}
    assert len(centres) == 1  # one straight line through every box
    for a, b, edge in zip(boxes, boxes[1:], edges):
        assert a[along] + a[along + 2] < b[along]  # in order, not overlapping
        line, head = edge.find(f"{SVG}line"), edge.find(f"{SVG}polygon")
        start = (float(line.get("x1")), float(line.get("y1")))
        tip = tuple(map(float, head.get("points").split()[0].split(",")))
        assert start[along] == pytest.approx(a[along] + a[along + 2])  # leaves a's far side
        assert tip[along] == pytest.approx(b[along])  # and points at b's near side
    width, height = float(root.get("width")), float(root.get("height"))
    assert all(0 < x and x + w < width and 0 < y and y + h < height for x, y, w, h in boxes)


def test_show_trainable_marks_layers_with_weights(cli, tmp_path):
    (tmp_path / "m.yaml").write_text(NESTED)
    plain = svg_root(plot(cli, tmp_path, tmp_path / "m.yaml", "--expand-nested",
                          name="plain.svg").read_text())
    assert not any("trainable" in line.lower() for line in texts(plain))
    root = svg_root(plot(cli, tmp_path, tmp_path / "m.yaml", "--expand-nested",
                         "--show-trainable").read_text())
    marks = {g.get("data-path"): texts(g)[-1] for g in groups(root, "layer")}
    assert marks == {
        "middle/conv2d": "Non-trainable",  # frozen with its nested model
        "middle/inner/max_pooling2d": "Output shape: (None, 2, 2, 3)",  # no weights, no mark
        "middle/inner/flatten": "Output shape: (None, 12)",
        "dropout": "Output shape: (None, 12)",
        "dense": "Trainable",
    }
    fills = {g.get("data-path"): [r.get("fill") for r in g.findall(f"{SVG}rect")][-1]
             for g in groups(root, "layer")}
    assert fills["middle/conv2d"] == "#b22222" and fills["dense"] == "#228b22"


def test_show_activations_names_each_layers_activation(cli, tmp_path):
    (tmp_path / "m.yaml").write_text(NESTED)
    root = svg_root(plot(cli, tmp_path, tmp_path / "m.yaml", "--expand-nested",
                         "--show-activations").read_text())
    lines = {g.get("data-path"): texts(g) for g in groups(root, "layer")}
    assert lines["middle/conv2d"][1] == "Activation: relu"
    assert lines["dense"][1] == "Activation: LeakyReLU"  # an activation layer as activation
    assert not any(line.startswith("Activation") for line in lines["dropout"])


def test_names_are_escaped(cli, tmp_path):
    name = "a<b>&\"c' d"
    (tmp_path / "m.yaml").write_text(
        f"name: '<model> & co'\ninput_shape: [3]\nlayers:\n"
        f"  - {{type: Dense, units: 2, name: {json.dumps(name)}}}\n")
    root = svg_root(plot(cli, tmp_path, tmp_path / "m.yaml").read_text())
    assert root.find(f"{SVG}title").text == "<model> & co"
    (layer,) = groups(root, "layer")
    assert layer.get("data-path") == name and texts(layer)[0] == f"{name} (Dense)"


def test_dash_writes_svg_to_stdout(cli, tmp_path):
    result = cli("plot", CONFIGS / "dense_stack.yaml", "-o", "-")
    assert result.code == 0 and result.err == ""
    assert result.out.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<svg')
    assert result.out == cli("plot", CONFIGS / "dense_stack.yaml").out
    svg_root(result.out)


def test_a_model_without_input_shape_takes_input_shape(cli, tmp_path):
    (tmp_path / "m.yaml").write_text("layers:\n  - {type: Dense, units: 2}\n")
    root = svg_root(plot(cli, tmp_path, tmp_path / "m.yaml", "--input-shape", "7").read_text())
    assert texts(groups(root, "layer")[0])[1:] == ["Input shape: (None, 7)",
                                                   "Output shape: (None, 2)"]


def test_every_text_fits_its_cell_in_a_wide_font():
    """The estimate leaves room for wider fonts than Helvetica (DejaVu Sans: about 0.62 of the
    font size per character, 0.70 bold): each text fits its cell, a title its box."""
    from seqcli.visual.diagram import DiagramOptions, Group, Rect, Text, diagram

    drawing = diagram(built_from(NESTED), DiagramOptions(
        expand_nested=True, show_trainable=True, show_activations=True))

    def layers(items):
        for item in items:
            if isinstance(item, Group):
                yield from [item] if item.kind == "layer" else layers(item.items)

    checked = 0
    for layer in layers(drawing.items):
        box, *cells = [item for item in layer.items if isinstance(item, Rect)]
        for text in (item for item in layer.items if isinstance(item, Text)):
            width = sum(len(span.text) * text.size * (0.70 if span.bold else 0.62)
                        for span in text.spans)
            inside = [cell for cell in cells if cell.x < text.x < cell.x + cell.width
                      and cell.y < text.y < cell.y + cell.height] or [box]
            assert width <= inside[0].width, (text, inside)
            checked += 1
    assert checked == 5 * 3 + 2 + 2  # each box: title, shapes; 2 activations, 2 marks


def test_estimated_width_counts_wide_characters_whole():
    from seqcli.visual.diagram import estimated_width

    assert estimated_width("ab", 10, False) == pytest.approx(12)
    assert estimated_width("ab", 10, True) == pytest.approx(13.2)
    assert estimated_width("層a", 10, False) == pytest.approx(16)


def test_plot_never_loads_numpy_numba_or_pillow_and_other_commands_never_load_it(tmp_path):
    code = ("import sys; from seqcli.cli import main; "
            "assert not [m for m in sys.modules if m.startswith('seqcli.visual')]; "
            f"main(['plot', '{CONFIGS / 'transfer_learning.yaml'}', '-o', "
            f"'{tmp_path / 'm.svg'}', '--expand-nested']); "
            "assert not {'numpy', 'numba', 'PIL'} & set(sys.modules), sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    svg_root((tmp_path / "m.svg").read_text())


# ------------------------------------------------------------------ the PNG


def test_png_is_painted_with_pillow(cli, tmp_path):
    from PIL import Image

    from seqcli.visual.diagram import DiagramOptions, diagram
    from seqcli.visual.raster import SCALE, Fonts

    path = plot(cli, tmp_path, CONFIGS / "transfer_learning.yaml", "--expand-nested",
                "--show-trainable", name="model.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    built = built_from((CONFIGS / "transfer_learning.yaml").read_text(), base_dir=CONFIGS)
    drawing = diagram(built, DiagramOptions(expand_nested=True, show_trainable=True),
                      Fonts().measure)
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.size == (round(drawing.width * SCALE), round(drawing.height * SCALE))
    colours = np.asarray(image).reshape(-1, 3)
    counts = {name: int(np.all(colours == rgb, axis=1).sum()) for name, rgb in {
        "black": (0, 0, 0), "white": (255, 255, 255), "green": (0x22, 0x8b, 0x22),
        "red": (0xb2, 0x22, 0x22)}.items()}
    assert all(count > 1000 for count in counts.values()), counts


def test_a_huge_diagram_is_painted_smaller_or_refused():
    from seqcli.errors import SeqcliError
    from seqcli.visual.diagram import Drawing
    from seqcli.visual.raster import MAX_PIXELS, SCALE, fitting_scale

    assert fitting_scale(Drawing("m", 1000, 1000)) == SCALE
    side = (MAX_PIXELS / 2) ** 0.5
    assert fitting_scale(Drawing("m", side, side)) == pytest.approx(2 ** 0.5)
    with pytest.raises(SeqcliError, match="write it as .svg"):
        fitting_scale(Drawing("m", 10 * side, side))


# ------------------------------------------------------------------ images without Pillow


def read_png(data: bytes) -> np.ndarray:
    """The pixels of a PNG that seqcli wrote (8-bit grayscale or RGB, every row unfiltered),
    read with zlib alone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, position = {}, 8
    while position < len(data):
        (length,), kind = struct.unpack(">I", data[position:position + 4]), \
            data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length:position + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        position += 12 + length
    width, height, depth, color, *_ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    channels = {0: 1, 2: 3}[color]
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, -1)
    assert depth == 8 and (rows[:, 0] == 0).all()
    pixels = rows[:, 1:].reshape(height, width, channels)
    return pixels[..., 0] if channels == 1 else pixels


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (17, 2), (4, 6, 3)])
def test_png_encoder_round_trips(shape):
    from PIL import Image

    from seqcli.visual.png import png_image

    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    data = png_image(pixels)
    np.testing.assert_array_equal(read_png(data), pixels)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)


def test_to_pixels_stretches_finite_values_to_0_255():
    from seqcli.visual.png import to_pixels

    np.testing.assert_array_equal(to_pixels(np.array([-1.0, 0.0, 1.0, np.nan, np.inf])),
                                  [0, 128, 255, 0, 0])
    np.testing.assert_array_equal(to_pixels(np.full((2, 2), 3.0)), np.full((2, 2), 128))
    np.testing.assert_array_equal(to_pixels(np.array([np.nan, -np.inf])), [0, 0])


def test_shrunk_averages_whole_blocks():
    from seqcli.visual.png import shrunk

    values = np.arange(7 * 5, dtype=np.float64).reshape(7, 5)
    assert shrunk(values, 7) is values
    small = shrunk(values, 3)  # factor 3: a 2 x 1 grid of 3 x 3 blocks, the rest cut off
    np.testing.assert_allclose(small, [[values[:3, :3].mean()], [values[3:6, :3].mean()]])
    strip = np.arange(10.0)[None, :]  # thinner than a block: every factor-th value
    np.testing.assert_array_equal(shrunk(strip, 4), [[0.0, 3.0, 6.0, 9.0]])
    maps = np.arange(4 * 4 * 2, dtype=np.float64).reshape(4, 4, 2)
    np.testing.assert_allclose(shrunk(maps, 2)[0, 0], maps[:2, :2].mean(axis=(0, 1)))


@pytest.mark.parametrize("shape, count, what", [
    ((5, 6, 3), 3, "3 channels"),
    ((4, 4, 40), 32, "40 channels, the first 32 shown"),
    ((9, 4, 4, 2), 2, "depth slice 4 of 9; 2 channels"),
    ((7, 3), 1, "7 steps (rows) by 3 features"),
    ((6,), 1, "6 values"),
    ((1,), 1, "1 value"),
    ((2, 2, 2, 2, 2), 0, "rank 5: not drawn"),
])
def test_feature_maps_by_rank(shape, count, what):
    from seqcli.visual.grids import feature_maps
    from seqcli.visual.report import MAX_CHANNELS

    values = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    maps, said = feature_maps(values, MAX_CHANNELS)  # the report's cut
    assert (len(maps), said) == (count, what)
    assert all(m.ndim == 2 for m in maps)
    if len(shape) == 3:
        np.testing.assert_array_equal(maps[-1], values[..., count - 1])
    if len(shape) == 4:
        np.testing.assert_array_equal(maps[0], values[4, ..., 0])
    if len(shape) == 1:
        np.testing.assert_array_equal(maps[0], values[None, :])


@pytest.mark.parametrize("values", [
    np.random.default_rng(0).normal(size=(7, 5, 3)).astype(np.float32),
    np.array([1.0, np.nan, -np.inf, 3.0, 2.0, np.inf, 2.5], np.float32),
    np.full((4, 4), 0.25, np.float32),
])
def test_weight_statistics_in_pieces_are_those_of_the_whole(monkeypatch, values):
    from seqcli.visual import report

    monkeypatch.setattr(report, "STATISTICS_CHUNK", 4)  # pieces of 4 values, one short
    stats = report.weight_statistics(values)
    finite = values[np.isfinite(values)].astype(np.float64)
    assert (stats.size, stats.finite) == (values.size, finite.size)
    assert (stats.low, stats.high) == (finite.min(), finite.max())
    assert stats.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert stats.std == pytest.approx(finite.std(), rel=1e-12, abs=1e-15)
    low, high = (finite.min(), finite.max()) if finite.min() < finite.max() \
        else (finite.min() - 0.5, finite.max() + 0.5)
    counts, edges = np.histogram(finite, bins=report.HISTOGRAM_BINS, range=(low, high))
    assert stats.counts == counts.tolist() and sum(stats.counts) == finite.size
    np.testing.assert_allclose(stats.edges, edges, rtol=1e-15)


def test_weight_statistics_of_no_finite_value():
    from seqcli.visual.report import weight_statistics

    stats = weight_statistics(np.array([np.nan, np.inf], np.float32))
    assert (stats.size, stats.finite, stats.counts) == (2, 0, [])


# ------------------------------------------------------------------ charts and history


@pytest.mark.parametrize("low, high, ticks", [
    (0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (0.55, 1.2, [0.4, 0.6, 0.8, 1.0, 1.2]),
    (1, 5, [1, 2, 3, 4, 5]),
    (3.0, 3.0, [3.0]),
    (-0.003, 0.012, [-0.005, 0.0, 0.005, 0.01, 0.015]),
])
def test_nice_ticks(low, high, ticks):
    from seqcli.visual.charts import nice_ticks

    assert nice_ticks(low, high) == pytest.approx(ticks)


def test_curves_pair_training_with_validation():
    from seqcli.visual.history import curves

    history = {"loss": [1.0], "accuracy": [0.5], "val_loss": [2.0], "val_accuracy": [0.4],
               "val_only": [3.0]}
    assert curves(history) == [("loss", [1.0], [2.0]), ("accuracy", [0.5], [0.4]),
                               ("val_only", [3.0], None)]


def test_line_chart_puts_each_point_where_its_value_is():
    from seqcli.visual.charts import line_chart_svg

    root = svg_root(line_chart_svg("loss", [("loss", [(1, 1.0), (2, 0.5), (3, 0.25)],
                                             "#1f77b4")]))
    (line,) = root.iter(f"{SVG}polyline")
    points = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
    xs, ys = zip(*points)
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1])  # epochs evenly spaced
    assert (ys[1] - ys[0]) == pytest.approx(2 * (ys[2] - ys[1]), abs=0.02)  # to scale, down


# ------------------------------------------------------------------ the report


class Page(HTMLParser):
    """Every start tag of an HTML page with its attributes, and its text by element id."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v
                                                            for k, v in attrs.items())]


def report(cli, tmp_path: Path, *args, name: str = "report.html") -> tuple[str, Page]:
    path = tmp_path / name
    result = cli("report", *args, "-o", path, "-q")
    assert result.code == 0, result
    assert (result.out, result.err) == ("", "")
    text = path.read_text()
    return text, Page(text)


def assert_self_contained(text: str, page: Page) -> None:
    """Nothing a browser would fetch: no script, link, frame or object; every src and href a
    data: URI or a fragment; no url() in styles; a Content-Security-Policy that forbids
    anything else."""
    names = {tag for tag, _ in page.tags}
    assert not names & {"script", "link", "iframe", "frame", "object", "embed", "base",
                        "audio", "video", "source", "use", "image", "foreignobject"}, names
    for tag, attrs in page.tags:
        for key in ("src", "href", "xlink:href", "srcset", "poster", "action", "data"):
            if key in attrs:
                assert attrs[key].startswith(("data:image/png;base64,", "#")), (tag, key)
        assert not any(value and re.search(r"url\(|https?:", value)
                       for key, value in attrs.items() if key != "xmlns"), (tag, attrs)
    assert "url(" not in text and "@import" not in text
    (policy,) = page.all("meta", **{"http-equiv": "Content-Security-Policy"})
    assert policy["content"] == "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def test_report_without_input_holds_diagram_table_and_weights(cli, tmp_path):
    from seqcli.runtime.model import load

    config = CONFIGS / "transfer_learning.yaml"
    text, page = report(cli, tmp_path, config)
    assert_self_contained(text, page)
    assert text.startswith("<!DOCTYPE html>")
    summary = json.loads(cli("summary", config, "--json", "--expand-nested").out)
    rows = page.all("tr")
    assert [r["data-path"] for r in rows if "data-path" in r] == [
        row["name"] for row in summary["layers"]]
    cells = re.findall(r'<tr(?: class="nested")? data-path="([^"]+)"><td[^>]*>[^<]*</td>'
                       r"<td>([^<]*)</td><td class=\"number\">([\d,]+)", text)
    assert [(path, shape, int(params.replace(",", ""))) for path, shape, params in cells] == [
        (row["name"], _shape(row["output_shape"][1:]), row["params"])
        for row in summary["layers"]]
    diagram = page.all("svg", **{"class": "seqcli-diagram"})
    assert len(diagram) == 1
    assert {a["data-path"] for a in page.all("g", **{"class": "layer"})} == {
        row["name"] for row in summary["layers"] if row["type"] != "Sequential"}
    weights = load(config).weights
    assert [a["data-weight"] for a in page.all("div", **{"class": "card"})] == list(weights)
    for key, array in weights.items():  # each histogram's bars count every value
        card = text.split(f'data-weight="{key}"', 1)[1].split('<div class="card"', 1)[0]
        counts = [int(n.replace(",", "")) for n in re.findall(r"\): ([\d,]+)</title>", card)]
        assert sum(counts) == array.size, key
        assert f"shape {tuple(array.shape)}" in card
    assert "Predictions" not in text and "Feature maps" not in text and "Training" not in text


def test_report_with_input_shows_predictions_and_every_layers_maps(cli, tmp_path):
    config = CONFIGS / "feature_extractor.yaml"
    x = np.random.default_rng(1).uniform(0, 255, (3, 250, 250, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    text, page = report(cli, tmp_path, config, tmp_path / "x.npy", "--samples", "2")
    assert_self_contained(text, page)
    built = built_from(config.read_text(), base_dir=CONFIGS)
    headings = [a["data-path"] for a in page.all("h3") if "data-path" in a]
    assert headings == [info.path for info in built.leaves()]
    assert re.findall(r"<h4>(sample \d+)</h4>", text) == ["sample 0", "sample 1"]
    result = cli("extract", config, tmp_path / "x.npy", "--all", "-o", tmp_path / "all.npz")
    assert result.code == 0, result
    outputs = np.load(tmp_path / "all.npz")
    for path in headings:  # each map: the layer's output for sample 0, stretched to 0-255
        images = [a for a in page.all("img") if a["alt"].startswith(f"{path} map ")]
        maps = outputs[path][0]
        assert len(images) == 32
        for channel in (0, 31):
            pixels = read_png(base64.b64decode(images[channel]["src"].split(",", 1)[1]))
            expected = _reference_map(maps[..., channel], 128)
            assert pixels.shape == expected.shape
            assert np.abs(pixels.astype(int) - expected).max() <= 1, (path, channel)
    picture = read_png(base64.b64decode(page.all("img", alt="input sample 0")[0]["src"]
                                        .split(",", 1)[1]))
    np.testing.assert_allclose(picture, _stretched(x[0].astype(np.float64)), atol=1)


def _stretched(values: np.ndarray) -> np.ndarray:
    """A float64 reference of the stretch to 0-255."""
    return (values - values.min()) / (values.max() - values.min()) * 255


def _reference_map(values: np.ndarray, side: int) -> np.ndarray:
    """`values` (H, W) averaged over f x f blocks, f the smallest whole number that brings
    both sides to at most `side`, then stretched to 0-255, in float64 with plain loops."""
    values = values.astype(np.float64)
    factor = 1
    while max(values.shape) > factor * side:
        factor += 1
    height, width = values.shape[0] // factor, values.shape[1] // factor
    small = np.empty((height, width))
    for i in range(height):
        for j in range(width):
            small[i, j] = values[i * factor:(i + 1) * factor, j * factor:(j + 1) * factor].mean()
    return _stretched(small)


def test_predictions_are_the_models_outputs(cli, tmp_path):
    config = CONFIGS / "dense_stack.yaml"
    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    text, page = report(cli, tmp_path, config, tmp_path / "x.npy")
    result = cli("predict", config, tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert result.code == 0, result
    y = np.load(tmp_path / "y.npy")
    assert re.findall(r"<h4>(sample \d+)</h4>", text) == [f"sample {i}" for i in range(4)]
    for index in range(4):
        tips = re.findall(rf'aria-label="output of sample {index}".*?</svg>', text)[0]
        shown = [float(v) for v in re.findall(r"<title>\d+: ([^<]+)</title>", tips)]
        np.testing.assert_allclose(shown, y[index], rtol=1e-3, atol=1e-6)


def test_a_picture_output_is_shown_as_one(cli, tmp_path):
    (tmp_path / "m.yaml").write_text(
        "input_shape: [4]\nseed: 0\nlayers:\n  - {type: Dense, units: 48}\n"
        "  - {type: Reshape, target_shape: [4, 4, 3]}\n")
    np.save(tmp_path / "x.npy", np.ones((1, 4), np.float32))
    text, page = report(cli, tmp_path, tmp_path / "m.yaml", tmp_path / "x.npy")
    (picture,) = page.all("img", **{"class": "picture"})
    assert read_png(base64.b64decode(picture["src"].split(",", 1)[1])).shape == (4, 4, 3)


def test_report_of_a_text_model_takes_ids(cli, tmp_path):
    np.save(tmp_path / "ids.npy", np.random.default_rng(0).integers(1, 20000, (2, 200)))
    text, page = report(cli, tmp_path, CONFIGS / "text_classifier.yaml", tmp_path / "ids.npy")
    assert [a["data-path"] for a in page.all("h3") if "data-path" in a] == [
        "embedding", "bidirectional", "bidirectional_1", "dense"]
    assert "200 steps (rows) by 128 features; averaged down to at most 128 pixels a side" in text


def test_report_with_history_draws_each_metric_training_and_validation(cli, tmp_path):
    history = {"loss": [1.2, 0.9, 0.7], "accuracy": [0.3, 0.5, 0.6],
               "val_loss": [1.1, 0.95, float("nan")], "val_accuracy": [0.35, 0.45, 0.55]}
    (tmp_path / "h.json").write_text(json.dumps(history))
    text, page = report(cli, tmp_path, CONFIGS / "dense_stack.yaml", "--history",
                        tmp_path / "h.json")
    assert_self_contained(text, page)
    section = text.split('<section id="history">', 1)[1]
    charts = re.findall(r'<svg[^>]*aria-label="([^"]+)"', section)
    assert charts == ["loss", "accuracy"]
    lines = re.findall(r'<polyline points="([^"]+)"[^>]*><title>([^<]+)</title>', section)
    assert [(name, len(points.split())) for points, name in lines] == [
        ("loss", 3), ("val_loss", 2), ("accuracy", 3), ("val_accuracy", 3)]  # NaN left out
    assert "3 epochs." in section


def test_a_long_history_is_thinned(cli, tmp_path):
    from seqcli.visual.report import MAX_CURVE_POINTS

    (tmp_path / "h.json").write_text(json.dumps({"loss": list(np.linspace(1, 0, 5000))}))
    text, _ = report(cli, tmp_path, CONFIGS / "dense_stack.yaml", "--history",
                     tmp_path / "h.json")
    (points,) = re.findall(r'<polyline points="([^"]+)"', text)
    assert len(points.split()) == MAX_CURVE_POINTS


def test_report_notes_initial_weights(cli, tmp_path):
    result = cli("report", CONFIGS / "dense_stack.yaml", "-o", tmp_path / "r.html")
    assert result.code == 0 and result.out == ""
    assert result.err.startswith("seqcli: note: ") and "using initial weights" in result.err
    assert result.err.split("note: ", 1)[1].strip() in \
        (tmp_path / "r.html").read_text().replace("&#x27;", "'")


def test_report_of_a_model_without_input_shape(cli, tmp_path):
    (tmp_path / "m.yaml").write_text("layers:\n  - {type: Dense, units: 2}\n")
    text, page = report(cli, tmp_path, tmp_path / "m.yaml", "--input-shape", "3")
    assert page.all("tr", **{"data-path": "dense"})
    np.save(tmp_path / "x.npy", np.ones((2, 5), np.float32))
    text, page = report(cli, tmp_path, tmp_path / "m.yaml", tmp_path / "x.npy")
    assert "(None, 5)" in text


def test_report_reads_its_input_from_stdin():
    x = np.ones((2, 4), np.float32)
    buffer = io.BytesIO()
    np.save(buffer, x)
    done = subprocess.run([sys.executable, "-m", "seqcli", "report",
                           str(CONFIGS / "dense_stack.yaml"), "-", "-q"],
                          input=buffer.getvalue(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert b"<code>&lt;stdin&gt;</code>" in done.stdout and b"sample 1" in done.stdout


# ------------------------------------------------------------------ in a real browser


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def load_in_browser(page: Path, profile: Path, screenshot: Path, size=(1280, 2400)):
    """Chromium's console log (stderr) and the DOM after loading `page` headless, with a
    screenshot."""
    common = [chromium(), "--headless", "--disable-gpu", "--no-sandbox",
              f"--user-data-dir={profile}", "--no-first-run", "--hide-scrollbars"]
    shot = subprocess.run([*common, "--enable-logging=stderr", "--v=0",
                           f"--screenshot={screenshot}", f"--window-size={size[0]},{size[1]}",
                           page.as_uri()], capture_output=True, text=True, timeout=180)
    assert shot.returncode == 0, shot.stderr
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr
    return shot.stderr, dom.stdout


@pytest.mark.skipif(chromium() is None, reason="needs Chromium (make test installs it)")
def test_report_loads_in_chromium_without_a_console_message(cli, tmp_path):
    from PIL import Image

    np.save(tmp_path / "x.npy", np.random.default_rng(0).uniform(0, 255, (2, 250, 250, 3))
            .astype(np.float32))
    (tmp_path / "h.json").write_text(json.dumps({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}))
    report(cli, tmp_path, CONFIGS / "transfer_learning.yaml", tmp_path / "x.npy",
           "--history", tmp_path / "h.json")
    page = tmp_path / "report.html"
    log, dom = load_in_browser(page, tmp_path / "profile", tmp_path / "shot.png")
    assert [line for line in log.splitlines() if ":CONSOLE" in line] == []
    assert 'class="seqcli-diagram"' in dom and 'id="feature-maps"' in dom
    shot = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB")).astype(int)
    assert shot.shape == (2400, 1280, 3)
    black = (shot.sum(axis=2) == 0).mean()  # the diagram's boxes: Keras's black title rows
    red = np.all(shot == (0xb2, 0x22, 0x22), axis=2).sum()  # its Non-trainable marks
    assert black > 0.02 and red > 1000, (black, red)
    assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 50  # text, bars, maps: not blank

    # the check sees what it looks for: an outside image is blocked, and logged
    tainted = tmp_path / "tainted.html"
    tainted.write_text(page.read_text().replace(
        "<body>", '<body><img src="http://127.0.0.1:9/x.png" alt="outside">', 1))
    log, _ = load_in_browser(tainted, tmp_path / "profile", tmp_path / "tainted.png",
                             size=(400, 300))
    (blocked,) = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert "Content Security Policy" in blocked
