"""`seqcli extract --images DIR`: each requested layer's output of each sample as a PNG grid
(CONTRACT §3), checked pixel by pixel against grids built here, cell by cell, from the arrays
`seqcli extract -o` writes for the same layers; and the folder written all at once or not at
all."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seqcli.visual.grids import MAX_ZOOM, MIN_TILE_SIDE

NESTED = """\
input_shape: [6, 6, 2]
seed: 1
layers:
  - {type: Conv2D, filters: 3, kernel_size: 3, activation: relu}
  - type: Sequential
    name: base
    layers:
      - {type: Conv2D, filters: 5, kernel_size: 2}
      - {type: GlobalMaxPooling2D}
  - {type: Dense, units: 2}
  - {type: Activation, activation: softmax}
"""
SHAPES = """\
input_shape: [16]
seed: 2
layers:
  - {type: Dense, units: 16}
  - {type: Reshape, name: volume, target_shape: [2, 2, 2, 2]}
  - {type: Reshape, name: steps, target_shape: [8, 2]}
  - {type: Reshape, name: five_axes, target_shape: [2, 2, 2, 2, 1]}
"""


def _files(tmp_path: Path, model: str, samples: int, shape: tuple[int, ...],
           seed: int = 0) -> tuple[Path, Path]:
    """The model file of text `model` and an input of `samples` random samples of `shape`."""
    path = tmp_path / "model.yaml"
    path.write_text(model)
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(seed).normal(size=(samples, *shape)).astype(np.float32))
    return path, x


def _stretched(plane: np.ndarray) -> np.ndarray:
    """A map from its smallest value (0) to its largest (255), rounded; constant: 128."""
    plane = plane.astype(np.float64)
    low, high = plane.min(), plane.max()
    if high == low:
        return np.full(plane.shape, 128, np.uint8)
    return np.rint((plane - low) / (high - low) * 255).astype(np.uint8)


def _expected_grid(sample: np.ndarray) -> np.ndarray:
    """The grid of one sample's output, as the contract describes it: (H, W, C) as C maps in
    ceil(sqrt(C)) columns row by row, (D, H, W, C) as a row per depth slice and a column per
    channel, (steps, features) as one map, (units,) as one strip; each map stretched on its own
    and enlarged by a whole factor towards 32 pixels on its short side (at most 16 times);
    white 1-pixel lines between the cells and in unused cells."""
    if sample.ndim == 1:
        maps, rows, columns = [sample[None, :]], 1, 1
    elif sample.ndim == 2:
        maps, rows, columns = [sample], 1, 1
    elif sample.ndim == 3:
        channels = sample.shape[-1]
        columns = math.ceil(math.sqrt(channels))
        rows = math.ceil(channels / columns)
        maps = [sample[:, :, c] for c in range(channels)]
    else:
        rows, columns = sample.shape[0], sample.shape[-1]
        maps = [sample[d, :, :, c] for d in range(rows) for c in range(columns)]
    height, width = maps[0].shape
    zoom = min(MAX_ZOOM, math.ceil(MIN_TILE_SIDE / min(height, width)))
    cell_height, cell_width = height * zoom + 1, width * zoom + 1
    image = np.full((rows * cell_height - 1, columns * cell_width - 1), 255, np.uint8)
    for index, plane in enumerate(maps):
        row, column = index // columns, index % columns
        enlarged = np.kron(_stretched(plane), np.ones((zoom, zoom), np.uint8))
        image[row * cell_height:row * cell_height + height * zoom,
              column * cell_width:column * cell_width + width * zoom] = enlarged
    return image


def _png(path: Path) -> np.ndarray:
    """The pixels of an 8-bit grey PNG file, decoded by Pillow."""
    with Image.open(path) as image:
        assert image.mode == "L", path
        return np.asarray(image)


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every entry under `folder` by relative path: a file's bytes, a folder's None."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


def _one_error_line(result, code: int, *words: str) -> None:
    """`result` failed with `code`: one `seqcli: error:` line holding `words`, no stdout."""
    assert result.code == code, result
    assert result.out == ""
    assert result.err.startswith("seqcli: error: ") and result.err.count("\n") == 1, result.err
    assert all(word in result.err for word in words), result.err


def _staging_left(tmp_path: Path) -> list[str]:
    """Hidden entries in `tmp_path`: a staging folder or temp file left behind."""
    return [entry for entry in os.listdir(tmp_path) if entry.startswith(".")]


def test_grid_of_two_small_maps_by_hand():
    from seqcli.visual.grids import grid_pixels

    values = np.zeros((2, 2, 2), np.float32)
    values[..., 0] = [[0.0, 1.0], [2.0, 3.0]]
    values[..., 1] = 5.0  # constant: mid-grey
    image = grid_pixels(values)
    # 2 channels: ceil(sqrt(2)) = 2 columns, one row; 2x2 maps enlarged 16 times (32 / 2)
    assert image.shape == (32, 32 + 1 + 32) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[:16, :16], 0)
    np.testing.assert_array_equal(image[:16, 16:32], 85)
    np.testing.assert_array_equal(image[16:, :16], 170)
    np.testing.assert_array_equal(image[16:, 16:32], 255)
    np.testing.assert_array_equal(image[:, 32], 255)  # the line between the maps
    np.testing.assert_array_equal(image[:, 33:], 128)


def test_grid_leaves_unused_cells_white():
    from seqcli.visual.grids import grid_pixels

    values = np.arange(40 * 40 * 3, dtype=np.float32).reshape(40, 40, 3)
    image = grid_pixels(values)
    # 3 maps of 40x40 (no enlargement): 2 columns, 2 rows, the last cell empty
    assert image.shape == (81, 81)
    np.testing.assert_array_equal(image[41:, 41:], 255)
    assert image[0, 0] == 0 and image[39, 39] == 255 and image[40, 0] == 255


def test_images_of_nested_layers_match_their_arrays(cli, tmp_path):
    model, x = _files(tmp_path, NESTED, 3, (6, 6, 2))
    layers = ["conv2d", "base/conv2d", "base", "dense"]
    asked = [arg for name in layers for arg in ("--layer", name)]
    arrays = tmp_path / "arrays.npz"
    assert cli("extract", model, x, *asked, "-o", arrays, "-q").code == 0
    result = cli("extract", model, x, *asked, "--images", tmp_path / "maps", "-q")
    assert (result.code, result.out) == (0, ""), result
    expected = np.load(arrays)
    maps = tmp_path / "maps"
    assert sorted(os.listdir(maps)) == ["base", "base__conv2d", "conv2d", "dense"]
    for name in layers:
        folder = maps / name.replace("/", "__")
        assert sorted(os.listdir(folder)) == ["0.png", "1.png", "2.png"]
        for sample in range(3):
            np.testing.assert_array_equal(_png(folder / f"{sample}.png"),
                                          _expected_grid(expected[name][sample]),
                                          err_msg=f"{name} sample {sample}")
    assert sorted(os.listdir(tmp_path)) == ["arrays.npz", "maps", "model.yaml", "x.npy"]


def test_images_and_arrays_together(cli, tmp_path):
    model, x = _files(tmp_path, NESTED, 2, (6, 6, 2))
    alone = tmp_path / "alone.npy"
    assert cli("extract", model, x, "--layer", "conv2d", "-o", alone, "-q").code == 0
    both = tmp_path / "both.npy"
    result = cli("extract", model, x, "--layer", "conv2d", "-o", both,
                 "--images", tmp_path / "maps", "-q")
    assert (result.code, result.out) == (0, ""), result
    assert both.read_bytes() == alone.read_bytes()
    values = np.load(alone)
    for sample in range(2):
        np.testing.assert_array_equal(_png(tmp_path / "maps" / "conv2d" / f"{sample}.png"),
                                      _expected_grid(values[sample]))


def test_all_layers(cli, tmp_path):
    model, x = _files(tmp_path, NESTED, 1, (6, 6, 2))
    arrays = tmp_path / "all.npz"
    assert cli("extract", model, x, "--all", "-o", arrays, "-q").code == 0
    result = cli("extract", model, x, "--all", "--images", tmp_path / "maps", "-q")
    assert result.code == 0, result
    expected = np.load(arrays)
    assert sorted(os.listdir(tmp_path / "maps")) == sorted(expected.files)
    for name in expected.files:
        assert os.listdir(tmp_path / "maps" / name) == ["0.png"]  # one sample: one digit
        np.testing.assert_array_equal(_png(tmp_path / "maps" / name / "0.png"),
                                      _expected_grid(expected[name][0]))


def test_hundred_samples_in_several_batches(cli, tmp_path):
    model, x = _files(tmp_path, SHAPES, 100, (16,))
    arrays = tmp_path / "dense.npy"
    assert cli("extract", model, x, "--layer", "dense", "-o", arrays, "-q").code == 0
    result = cli("extract", model, x, "--layer", "dense", "--images", tmp_path / "maps",
                 "--batch-size", "32", "-q")
    assert result.code == 0, result
    names = sorted(os.listdir(tmp_path / "maps" / "dense"))
    assert names == [f"{i:03d}.png" for i in range(100)]  # padded to the 3 digits of 100
    values = np.load(arrays)
    for sample in (0, 31, 32, 57, 99):  # both sides of a batch's end, and the last
        np.testing.assert_array_equal(_png(tmp_path / "maps" / "dense" / f"{sample:03d}.png"),
                                      _expected_grid(values[sample]))


def test_ranks_two_and_four(cli, tmp_path):
    model, x = _files(tmp_path, SHAPES, 2, (16,))
    arrays = tmp_path / "a.npz"
    asked = ["--layer", "volume", "--layer", "steps"]
    assert cli("extract", model, x, *asked, "-o", arrays, "-q").code == 0
    assert cli("extract", model, x, *asked, "--images", tmp_path / "maps", "-q").code == 0
    expected = np.load(arrays)
    volume = _png(tmp_path / "maps" / "volume" / "1.png")
    assert volume.shape == (2 * 33 - 1, 2 * 33 - 1)  # 2 depth rows x 2 channels of 2x2 x16
    np.testing.assert_array_equal(volume, _expected_grid(expected["volume"][1]))
    steps = _png(tmp_path / "maps" / "steps" / "0.png")
    assert steps.shape == (8 * 16, 2 * 16)  # 8 steps down, 2 features across
    np.testing.assert_array_equal(steps, _expected_grid(expected["steps"][0]))


def test_layer_without_a_grid_is_refused_up_front(cli, tmp_path):
    model, x = _files(tmp_path, SHAPES, 2, (16,))
    before = sorted(os.listdir(tmp_path))
    result = cli("extract", model, x, "--layer", "dense", "--layer", "five_axes",
                 "--images", tmp_path / "maps", "-q")
    _one_error_line(result, 2, "'five_axes'", "(None, 2, 2, 2, 2, 1)", "5 axes")
    assert sorted(os.listdir(tmp_path)) == before


def test_layers_sharing_a_folder_are_refused(cli, tmp_path):
    model, x = _files(tmp_path, NESTED.replace("{type: Dense, units: 2}",
                                               "{type: Dense, units: 2, name: base__conv2d}"),
                      2, (6, 6, 2))
    result = cli("extract", model, x, "--layer", "base/conv2d", "--layer", "base__conv2d",
                 "--images", tmp_path / "maps", "-q")
    _one_error_line(result, 2, "'base/conv2d'", "'base__conv2d'", "same folder")
    assert not (tmp_path / "maps").exists()


def test_grid_over_the_pixel_limit_is_refused(cli, tmp_path, monkeypatch):
    from seqcli.visual import grids

    monkeypatch.setattr(grids, "MAX_GRID_PIXELS", 1000)
    model, x = _files(tmp_path, NESTED, 2, (6, 6, 2))
    result = cli("extract", model, x, "--layer", "conv2d", "--images", tmp_path / "maps", "-q")
    _one_error_line(result, 2, "'conv2d'", "65 x 65 pixels", "1,000")
    assert not (tmp_path / "maps").exists()


def test_existing_folder_keeps_other_files_and_gets_new_ones(cli, tmp_path):
    model, x = _files(tmp_path, NESTED, 2, (6, 6, 2))
    maps = tmp_path / "maps"
    (maps / "conv2d").mkdir(parents=True)
    (maps / "notes.txt").write_text("mine")
    (maps / "conv2d" / "0.png").write_bytes(b"old")
    (maps / "conv2d" / "7.png").write_bytes(b"other")
    arrays = tmp_path / "c.npy"
    assert cli("extract", model, x, "--layer", "conv2d", "-o", arrays, "-q").code == 0
    assert cli("extract", model, x, "--layer", "conv2d", "--layer", "dense",
               "--images", maps, "-q").code == 0
    assert (maps / "notes.txt").read_text() == "mine"
    assert (maps / "conv2d" / "7.png").read_bytes() == b"other"
    np.testing.assert_array_equal(_png(maps / "conv2d" / "0.png"),
                                  _expected_grid(np.load(arrays)[0]))
    assert sorted(os.listdir(maps / "dense")) == ["0.png", "1.png"]
    assert _staging_left(tmp_path) == []


def _filled_folder(tmp_path: Path) -> Path:
    """An --images folder that already holds files."""
    maps = tmp_path / "maps"
    (maps / "conv2d").mkdir(parents=True)
    (maps / "notes.txt").write_text("mine")
    (maps / "conv2d" / "0.png").write_bytes(b"old")
    return maps


def test_bad_input_leaves_the_folder_as_it_was(cli, tmp_path):
    model, _ = _files(tmp_path, NESTED, 2, (6, 6, 2))
    maps = _filled_folder(tmp_path)
    before = _tree(maps)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 5, 5, 2), np.float32))
    result = cli("extract", model, bad, "--layer", "conv2d", "--images", maps)
    _one_error_line(result, 65)
    assert _tree(maps) == before
    assert _staging_left(tmp_path) == []


def test_failure_in_a_later_batch_leaves_the_folder_as_it_was(cli, tmp_path):
    model, x = _files(tmp_path, NESTED, 4, (6, 6, 2))
    values = np.load(x)
    values[3, 0, 0, 0] = np.nan  # the last batch: the first three are written by then
    np.save(x, values)
    maps = _filled_folder(tmp_path)
    before = _tree(maps)
    result = cli("extract", model, x, "--layer", "conv2d", "--layer", "dense",
                 "--images", maps, "--batch-size", "1", "--strict", "-q")
    _one_error_line(result, 65)
    assert _tree(maps) == before
    assert _staging_left(tmp_path) == []


def test_interrupted_run_leaves_no_folder(cli, tmp_path, monkeypatch):
    from seqcli.visual import grids

    written = []

    def interrupted(pixels):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(pixels)
        return b"\x89PNG"

    monkeypatch.setattr(grids, "png_image", interrupted)
    model, x = _files(tmp_path, NESTED, 4, (6, 6, 2))
    result = cli("extract", model, x, "--layer", "conv2d", "--images", tmp_path / "maps",
                 "--batch-size", "1", "-q")
    _one_error_line(result, 130, "interrupted")
    assert not (tmp_path / "maps").exists()
    assert _staging_left(tmp_path) == []


def test_folder_that_is_a_file_is_refused(cli, tmp_path):
    model, x = _files(tmp_path, NESTED, 2, (6, 6, 2))
    taken = tmp_path / "maps"
    taken.write_bytes(b"a file")
    result = cli("extract", model, x, "--layer", "conv2d", "--images", taken)
    _one_error_line(result, 73, str(taken), "not a folder")
    assert taken.read_bytes() == b"a file"
    assert _staging_left(tmp_path) == []


def test_layer_folder_that_is_a_file_is_refused(cli, tmp_path):
    model, x = _files(tmp_path, NESTED, 2, (6, 6, 2))
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "base__conv2d").write_bytes(b"a file")
    result = cli("extract", model, x, "--layer", "base/conv2d", "--images", maps, "-q")
    _one_error_line(result, 73, "base__conv2d", "not a folder")
    assert _tree(maps) == {"base__conv2d": b"a file"}
    assert _staging_left(tmp_path) == []


def test_folder_that_cannot_be_created_is_refused(cli, tmp_path):
    model, x = _files(tmp_path, NESTED, 2, (6, 6, 2))
    result = cli("extract", model, x, "--layer", "conv2d",
                 "--images", tmp_path / "missing" / "maps")
    _one_error_line(result, 73, "does not exist")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("images, words", [
    ("-", ["--images", "folder"]),
    ("SAME", ["-o", "--images", "same"]),
])
def test_usage_errors(cli, tmp_path, images, words):
    model, x = _files(tmp_path, NESTED, 2, (6, 6, 2))
    same = tmp_path / "out"
    result = cli("extract", model, x, "--layer", "conv2d", "-o", same,
                 "--images", same if images == "SAME" else images)
    _one_error_line(result, 2, *words)
    assert not same.exists()


def test_help_shows_the_option(cli):
    result = cli("extract", "--help")
    assert "--images" in result.out and "--images maps/" in result.out
