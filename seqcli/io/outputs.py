"""Arrays written batch by batch in the format chosen for them (`formats.OutputFormat`):
`.npy`, `.npz`, or text, `.csv` and `.jsonl`, all atomically (`-`: stdout).

Text holds each float32 value as its shortest decimal that reads back as the same float32
(`0.1`, `1e-30`); a CSV has NaN and Inf as `nan`, `inf`, `-inf` (as numpy and pandas read
them), JSON, which has no such numbers, as `null`.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from seqcli.io.arrays import NpyWriter, NpzWriter
from seqcli.io.atomic import atomic_output
from seqcli.io.chunked import StoreLayout
from seqcli.io.formats import OutputFormat

Write = Callable[[dict[str, np.ndarray]], None]
"""Appends one batch of each array, {name: (b, *sample_shape)}."""


def computed_first(items: Iterator) -> Iterator:
    """`items` with its first item computed now: a failure in the first batch (an image that
    does not decode, a model error) stops the command before its output is opened, so
    nothing reaches stdout."""
    for first in items:
        return itertools.chain([first], items)
    return iter(())


@contextmanager
def array_writer(path: str, chosen: OutputFormat, shapes: dict[str, tuple[int, ...]],
                 rows: int, labels: list[str] | None = None,
                 layout: StoreLayout | None = None) -> Iterator[Write]:
    """Yield a function that appends a batch of each array named in `shapes` ({name: sample
    shape}, `rows` rows in all) to `path`, in the format `chosen`; the file replaces `path`
    only if the block succeeds. `.npy` and `.csv` hold one array; `.npz` members and `.jsonl`
    keys are the names, or, for one vector output, `labels` in a `.jsonl` (and a `.csv`
    header); a `.zarr` store holds one array, or a group of them by name, chunked by
    `layout`."""
    if chosen in (OutputFormat.npy, OutputFormat.csv) and len(shapes) != 1:
        raise ValueError(f"a .{chosen.value} file holds one array, not {len(shapes)}")
    if chosen == OutputFormat.zarr:
        from seqcli.io.stores import ZarrWriter, store_arrays

        names = store_arrays(shapes)
        with ZarrWriter(path, {names[key]: shape for key, shape in shapes.items()}, rows,
                        layout or StoreLayout(rows or 1)) as writer:
            yield lambda found: writer.write({names[key]: found[key] for key in shapes})
    elif chosen == OutputFormat.npy:
        ((name, shape),) = shapes.items()
        with NpyWriter(path, shape, rows) as writer:
            yield lambda found: writer.write(found[name])
    elif chosen == OutputFormat.npz:
        with NpzWriter(path, shapes, rows) as writer:
            def write_members(found: dict[str, np.ndarray]) -> None:
                for key in shapes:
                    writer.write(key, found[key])

            yield write_members
    elif chosen == OutputFormat.csv:
        ((name, shape),) = shapes.items()
        with atomic_output(path, binary=False) as out:
            out.write(csv_header(math.prod(shape), labels))
            yield lambda found: out.write(csv_rows(found[name]))
    else:
        keys = labels if labels is not None else list(shapes)
        with atomic_output(path, binary=False) as out:
            yield lambda found: out.write(jsonl_lines(found, keys, by_label=labels is not None))


def csv_header(columns: int, labels: list[str] | None = None) -> str:
    """The header line of a CSV of `columns` values per row: the labels (quoted where a name
    needs it), else the indices 0, 1, ... of the flattened sample."""
    names = labels if labels is not None else [str(index) for index in range(columns)]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(names)
    return buffer.getvalue()


def csv_rows(batch: np.ndarray) -> str:
    """One CSV line per sample of `batch`, its values flattened (C order)."""
    flat = np.asarray(batch, np.float32).reshape(len(batch), -1)
    return "".join(",".join(map(str, row)) + "\n" for row in flat)


def jsonl_lines(found: dict[str, np.ndarray], keys: list[str], by_label: bool) -> str:
    """One JSON object per sample of the batches in `found`: {name: the sample's values as
    nested lists}, or, `by_label`, {label: value} for the one vector output."""
    quoted = [json.dumps(key) for key in keys]
    if by_label:
        (batch,) = found.values()
        return "".join("{" + ",".join(f"{key}:{value}" for key, value in zip(quoted, values))
                       + "}\n" for values in _texts(batch))
    nested = [[_nested(values, batch.shape[1:]) for values in _texts(batch)]
              for batch in found.values()]
    return "".join("{" + ",".join(f"{key}:{sample[row]}" for key, sample in zip(quoted, nested))
                   + "}\n" for row in range(len(nested[0]) if nested else 0))


def _texts(batch: np.ndarray) -> Iterator[list[str]]:
    """Each sample's values, flattened, as JSON number texts (`null` for NaN and Inf)."""
    flat = np.asarray(batch, np.float32).reshape(len(batch), -1)
    finite = np.isfinite(flat)
    for row, row_finite in zip(flat, finite):
        values = list(map(str, row))
        if not row_finite.all():
            for index in np.flatnonzero(~row_finite):
                values[index] = "null"
        yield values


def _nested(values: list[str], shape: tuple[int, ...]) -> str:
    """The flat `values` as a JSON array of `shape` (nested lists; a bare value for ())."""
    if not shape:
        return values[0]
    if len(shape) == 1:
        return "[" + ",".join(values) + "]"
    step = len(values) // shape[0] if shape[0] else 0
    return "[" + ",".join(_nested(values[i * step:(i + 1) * step], shape[1:])
                          for i in range(shape[0])) + "]"
