"""Feature maps as pictures: a layer's output for one sample as 2-D maps (`feature_maps`, which
the HTML report draws), or as one grey grid image of all its maps (`grid_pixels`), and the
writer of `extract --images`, which puts one grid per layer and sample into a folder, all the
files of a run or none of them.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqcli.errors import OutputError, UsageError
from seqcli.io.atomic import STDOUT, fsync_path, output_error, write_staged
from seqcli.io.limits import MAX_GRID_PIXELS
from seqcli.io.stores import check_folder, staging_name
from seqcli.shapes import format_shape
from seqcli.visual.png import png_image, to_pixels

MIN_TILE_SIDE = 32
"""The short side, in pixels, that a smaller map is enlarged to (by a whole factor, rounded
up), up to `MAX_ZOOM` times."""
MAX_ZOOM = 16
"""The largest enlargement of a map: a strip of single values becomes 16 pixels high."""
SEPARATOR = 255
"""The grey of the 1-pixel lines between the maps of a grid and of its unused cells: white,
as the maps of ReLU layers are mostly black."""

WriteBatch = Callable[[dict[str, np.ndarray]], None]
"""Takes a batch of each layer's outputs, {layer path: (batch, *output shape)}."""


def feature_maps(values: np.ndarray,
                 max_channels: int | None = None) -> tuple[list[np.ndarray], str]:
    """One sample's output of a layer as 2-D images to draw, and what they are: (H, W, C) as
    its channels (the first `max_channels` of them, if given), (D, H, W, C) as those of its
    middle depth slice, (steps, features) and (units,) as one image each; none for other
    ranks."""
    rank = values.ndim
    if rank == 4:
        middle = values.shape[0] // 2
        maps, what = feature_maps(values[middle], max_channels)
        return maps, f"depth slice {middle} of {values.shape[0]}; {what}"
    if rank == 3:
        channels = values.shape[-1]
        shown = channels if max_channels is None else min(channels, max_channels)
        what = f"{channels:,} channel{'s' if channels != 1 else ''}"
        if shown < channels:
            what += f", the first {shown} shown"
        return [values[..., c] for c in range(shown)], what
    if rank == 2:
        return [values], f"{values.shape[0]:,} steps (rows) by {values.shape[1]:,} features"
    if rank == 1:
        return [values[None, :]], f"{values.shape[0]:,} value{'s' if values.shape[0] != 1 else ''}"
    return [], f"rank {rank}: not drawn"


# ----------------------------------------------------------------------------- one grid


@dataclass(frozen=True)
class GridLayout:
    """Where the maps of one sample's output go in its grid image: `rows` x `columns` cells of
    `map_height` x `map_width` values, each value `zoom` x `zoom` pixels, 1-pixel lines between
    the cells."""

    rows: int
    columns: int
    map_height: int
    map_width: int
    zoom: int

    @property
    def height(self) -> int:
        """The image's height in pixels."""
        return self.rows * (self.map_height * self.zoom + 1) - 1

    @property
    def width(self) -> int:
        """The image's width in pixels."""
        return self.columns * (self.map_width * self.zoom + 1) - 1


def grid_layout(shape: tuple[int, ...]) -> GridLayout | None:
    """The grid of a layer's output of per-sample `shape`: (H, W, C) as its C maps in
    ceil(sqrt(C)) columns, row by row; (D, H, W, C) as D rows (its depth slices, top to bottom)
    of C columns (their channels); (steps, features) as one map, steps down; (units,) as one
    strip. Maps whose short side is under `MIN_TILE_SIDE` are enlarged. None for other ranks and
    for an output without values."""
    if not 1 <= len(shape) <= 4 or 0 in shape:
        return None
    if len(shape) == 4:
        rows, columns, (map_height, map_width) = shape[0], shape[3], shape[1:3]
    elif len(shape) == 3:
        columns = math.isqrt(shape[2] - 1) + 1  # ceil(sqrt(C)), exactly
        rows, (map_height, map_width) = -(-shape[2] // columns), shape[:2]
    else:
        rows = columns = 1
        map_height, map_width = shape if len(shape) == 2 else (1, shape[0])
    zoom = min(MAX_ZOOM, -(-MIN_TILE_SIDE // min(map_height, map_width)))
    return GridLayout(rows, columns, map_height, map_width, zoom)


def grid_pixels(values: np.ndarray) -> np.ndarray:
    """One sample's output of one layer as one uint8 grey image, laid out by `grid_layout`:
    each map stretched to 0-255 on its own (`to_pixels`: its smallest value black, its largest
    white) and enlarged by the layout's zoom (nearest neighbour); `SEPARATOR` between the
    maps and in unused cells."""
    layout = grid_layout(values.shape)
    if layout is None:
        raise ValueError(f"no grid for an output of shape {values.shape}")
    if values.ndim == 4:
        maps = [plane for depth in values for plane in feature_maps(depth)[0]]
    else:
        maps = feature_maps(values)[0]
    zoom = layout.zoom
    cell_height, cell_width = layout.map_height * zoom + 1, layout.map_width * zoom + 1
    image = np.full((layout.height, layout.width), SEPARATOR, np.uint8)
    for index, plane in enumerate(maps):
        row, column = divmod(index, layout.columns)
        top, left = row * cell_height, column * cell_width
        image[top:top + cell_height - 1, left:left + cell_width - 1] = (
            to_pixels(plane).repeat(zoom, axis=0).repeat(zoom, axis=1))
    return image


def grid_layouts(shapes: dict[str, tuple[int, ...]]) -> dict[str, GridLayout]:
    """The grid of each layer's output ({layer path: per-sample shape}); a UsageError (exit 2)
    naming a layer that has no grid, or whose grid would hold more than `MAX_GRID_PIXELS`."""
    layouts = {}
    for path, shape in shapes.items():
        layout = grid_layout(tuple(shape))
        if layout is None:
            raise UsageError(f"--images cannot draw layer '{path}': its output, of shape "
                             f"{format_shape(tuple(shape))}, has {len(shape)} axes per sample, "
                             "and only 1 to 4 (none of them empty) are drawn; extract it with "
                             "-o alone, or leave it out")
        if layout.height * layout.width > MAX_GRID_PIXELS:
            raise UsageError(f"--images cannot draw layer '{path}': its grid of "
                             f"{layout.rows * layout.columns:,} maps would be "
                             f"{layout.height:,} x {layout.width:,} pixels, more than the "
                             f"{MAX_GRID_PIXELS:,} an image may have; extract it with -o "
                             "alone, or leave it out")
        layouts[path] = layout
    return layouts


# ----------------------------------------------------------------------------- the folder


def grid_folder(path: str) -> str:
    """The folder of a layer's grids: its path with '/' as '__' (`base__conv2d`)."""
    return path.replace("/", "__")


def check_grid_directory(directory: str) -> None:
    """Refuse, before any work, a folder that `write_grids` cannot fill (exit 73): a file in
    its place, a folder this process may not write, or none and a parent it cannot be created
    in; `-` is a usage error (exit 2)."""
    if directory == STDOUT:
        raise UsageError("--images takes a folder to write PNG files into, not - (stdout); "
                         "name a folder")
    target = Path(os.path.realpath(directory))
    _check_targets(directory, target, {})
    check_folder(directory, target if target.is_dir() else target.parent)


def _folders(paths: list[str]) -> dict[str, str]:
    """{layer path: its folder}; a UsageError for two layers that would share one."""
    owners: dict[str, str] = {}
    for path in paths:
        folder = grid_folder(path)
        if folder in owners:
            raise UsageError(f"--images would write layers '{owners[folder]}' and '{path}' into "
                             f"the same folder {folder}; extract them in two runs")
        owners[folder] = path
    return {path: folder for folder, path in owners.items()}


def _check_targets(directory: str, target: Path, files: dict[str, list[str]]) -> None:
    """An OutputError unless `target` (the real path of `directory`) is a folder or absent,
    and each of its subfolders named in `files` ({folder: file names}) a writable folder or
    absent, whose files of those names are no folders."""
    if os.path.lexists(target) and not target.is_dir():
        raise OutputError(f"cannot write images into {directory}: it is a file, not a folder; "
                          "choose another folder, or remove it")
    for folder, names in files.items():
        shown = os.path.join(directory, folder)
        inner = target / folder
        if inner.is_dir():
            check_folder(shown, inner)
        elif os.path.lexists(inner):
            raise OutputError(f"cannot write images into {shown}: it is a file, not a folder; "
                              "remove it, or choose another folder for --images")
        for name in names:
            if (inner / name).is_dir():
                raise output_error(os.path.join(shown, name),
                                   IsADirectoryError(errno.EISDIR, "Is a directory"))


def _write_png(file: Path, pixels: np.ndarray, shown: str) -> None:
    """Write `pixels` as a new PNG file `file`, fsynced; errors name `shown`."""
    try:
        write_staged(file, png_image(pixels))
    except OSError as error:
        raise output_error(shown, error) from error


def _move_into(staging: Path, target: Path, folders: list[str]) -> None:
    """Put the grids staged in `staging` into `target`: the whole folder when there is none
    yet, else each layer folder that is new, and each file of the others, replacing a file of
    the same name; then remove `staging`."""
    if not os.path.lexists(target):
        os.rename(staging, target)
        fsync_path(target.parent)
        return
    for folder in folders:
        source, destination = staging / folder, target / folder
        if not os.path.lexists(destination):
            os.rename(source, destination)
            continue
        for name in sorted(os.listdir(source)):
            os.replace(source / name, destination / name)
        fsync_path(destination)
    fsync_path(target)
    shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def write_grids(directory: str, shapes: dict[str, tuple[int, ...]],
                samples: int) -> Iterator[WriteBatch]:
    """Yield a function that writes each batch of the layers' outputs (`shapes`: {layer path:
    per-sample shape}; `samples` in all, in order) as PNG grids (`grid_pixels`),
    `directory/<layer path, '/' as '__'>/<sample index>.png`, the index zero-padded to the
    digits of `samples`.

    The files are written into a hidden folder beside `directory`, and moved into it (created
    if need be; a file of the same name is replaced, other files are left alone) only when the
    block succeeds; otherwise that folder is removed and `directory` stays as it was. Layers
    without a grid, and folders that cannot be written, are refused on entry, before anything
    is written.
    """
    grid_layouts(shapes)  # refuses a layer without a grid
    folders = _folders(list(shapes))
    target = Path(os.path.realpath(directory))
    _check_targets(directory, target, dict.fromkeys(folders.values(), []))
    digits = len(str(samples))
    names: dict[str, list[str]] = {folder: [] for folder in folders.values()}
    staging = staging_name(target)
    try:
        os.mkdir(staging)
    except OSError as error:
        raise output_error(directory, error) from error
    try:
        try:
            for folder in folders.values():
                os.mkdir(staging / folder)
        except OSError as error:
            raise output_error(os.path.join(directory, folder), error) from error
        written = 0

        def write(found: dict[str, np.ndarray]) -> None:
            nonlocal written
            for path, folder in folders.items():
                for offset, values in enumerate(found[path]):
                    name = f"{written + offset:0{digits}d}.png"
                    _write_png(staging / folder / name, grid_pixels(np.asarray(values)),
                               os.path.join(directory, folder, name))
                    names[folder].append(name)
            written += len(found[next(iter(folders))])

        yield write
        _check_targets(directory, target, names)
        try:
            _move_into(staging, target, list(folders.values()))
        except OSError as error:
            raise output_error(directory, error) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
