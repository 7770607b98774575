"""Limits on files from strangers that more than one reader applies."""

from __future__ import annotations

MAX_COMPRESSION_RATIO = 1000
"""Inflated over stored bytes beyond which a zip member (or compressed dataset) is refused as
a likely zip bomb: deflate itself tops out near 1032:1 (Keras stores members uncompressed)."""
MIN_RATIO_CHECKED_SIZE = 1024**2
"""Members that inflate to at most this many bytes are too small to matter: never refused."""
MAX_RANK = 64
"""The most axes an array in a `.npy`, `.npz` or safetensors file may have: numpy's own limit
(NPY_MAXDIMS), checked from the header so that a larger rank is bad data, not a crash."""

MAX_MODEL_VALUES = 100_000
"""YAML values (scalars, lists, mappings) that a model file and the files it pulls in with
`from:` may hold together: PyYAML reads about 50,000 a second, so a hostile file cannot keep
the reader busy for more than a few seconds; a real model holds a few thousand."""
MAX_LIST_ITEMS = 10_000
"""Items in one YAML list or mapping of a model file (one level of `layers`, a shape, a
statistic): no model setting needs more, and a longer list is refused as it is read."""
MAX_EXPANDED_LAYERS = 100_000
"""Layers a model may hold once every `from:` file and nested model is expanded in place
(counted before anything is built): a file reusing another many times multiplies its layers."""
MAX_NUMBER_LENGTH = 100
"""Characters of a number written in a model file (more than any float's exact digits):
a longer one is refused before Python converts it."""
MAX_PATH_BYTES = 4096
"""UTF-8 bytes of a path written in a model file (`from:`, `weights:`): Linux's PATH_MAX, so
that no longer path is looked up (nor quoted whole in a message)."""
MAX_NAME_BYTES = 1024
"""UTF-8 bytes of a layer or model name: with 32 levels of nesting, a weight key stays far
below the 65,535 bytes a `.npz` member name may have."""

MAX_BATCH_SIZE = 2**31 - 1
"""The largest `--batch-size` of any command (the largest size a model file may give): a
batch size is a count of samples held in memory at once, never more than this."""
MAX_EPOCHS = 1_000_000
"""The most epochs `fit --epochs` runs."""
MAX_SEED = 2**64 - 1
"""The largest `--seed`: any unsigned 64-bit number."""
MAX_BENCH_SECONDS = 3600.0
"""The longest steady-state measurement `bench --seconds` asks for."""
MAX_IMAGE_FILES = 1_000_000
"""The most image files one INPUT (files, folders and globs together) may name: a folder tree
holding more is refused as soon as its walk has counted past it."""
MAX_GRID_PIXELS = 32 * 1024**2
"""The most pixels of one grid image of `extract --images` (32 MiB of 8-bit grey, some 5,700
pixels a side): a layer whose grid of feature maps would be larger is refused before the run."""

MAX_KERAS_CONFIG_BYTES = 4 * 1024**2
"""The most a `.keras` file's config.json may inflate to (a model's config is kilobytes)."""
MAX_KERAS_METADATA_BYTES = 64 * 1024
"""The most a `.keras` file's metadata.json may inflate to."""
MAX_KERAS_WEIGHTS_BYTES = 16 * 1024**3
"""The most a `.keras` file's model.weights.h5 may inflate to (to a temporary file), and the
most weight bytes read from any Keras weights file, whatever the model declares."""
MAX_KERAS_INFLATED_BYTES = 16 * 1024**3
"""The most bytes all the members of one `.keras` file may inflate to together."""
KERAS_WEIGHT_COPIES = 4
"""Copies of each weight a `.keras` file's model.weights.h5 may hold: the weight itself and
up to three optimizer slots for it (Adam keeps two), each as float64 at most."""
KERAS_H5_BASE_BYTES = 1024**2
KERAS_H5_OBJECT_BYTES = 16 * 1024
"""HDF5's bookkeeping allowed in a model.weights.h5: the base, plus this much per layer and
per weight copy (Keras's files use about 1 KB per group or dataset)."""


def likely_zip_bomb(inflated: int, stored: int) -> bool:
    """True when `inflated` bytes from `stored` ones exceed both `MIN_RATIO_CHECKED_SIZE` and
    `MAX_COMPRESSION_RATIO` times the stored size (taken as at least one byte)."""
    return inflated > MIN_RATIO_CHECKED_SIZE and inflated > MAX_COMPRESSION_RATIO * max(stored, 1)
