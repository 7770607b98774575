"""The INPUT of predict, extract and report, and the X of fit and evaluate: arrays (a `.npy`
file or stdin, a Zarr array, a glob of `.npy` shards) or images (files, folders, globs),
decoded and resized to the model's input as Keras's `image_dataset_from_directory` does.

Nothing here imports Pillow, numba or Zarr: `seqcli.io.images` opens images only when a
command reads them.
"""

from __future__ import annotations

from seqcli.errors import UsageError
from seqcli.io.arrays import STDIN
from seqcli.io.image_paths import names_images


def image_options(interpolation: str | None, crop: bool, pad: bool, images: bool):
    """The `ImageOptions` of `--interpolation`, `--crop-to-aspect-ratio` and
    `--pad-to-aspect-ratio` for an input of images (`images`); None for an array input, which
    a UsageError refuses them for, as it refuses both aspect-ratio options together (Keras
    does too)."""
    given = [name for name, value in (("--interpolation", interpolation is not None),
                                      ("--crop-to-aspect-ratio", crop),
                                      ("--pad-to-aspect-ratio", pad)) if value]
    if given and not images:
        raise UsageError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for image "
                         "inputs (PNG, JPEG, ...), which are resized to the model's input; "
                         "this input is an array: drop it")
    if crop and pad:
        raise UsageError("--crop-to-aspect-ratio and --pad-to-aspect-ratio are alternatives; "
                         "pass one")
    if not images:
        return None
    from seqcli.io.images import ImageOptions

    return ImageOptions(interpolation or "bilinear", crop, pad)


def input_paths(inputs: list[str] | None) -> list[str]:
    """INPUT's values: `-` (stdin) when it is omitted."""
    return list(inputs) if inputs else [STDIN]


def declared_shape(loaded) -> tuple:
    """The per-sample input shape the model file `loaded` declares, which images are resized
    to; a UsageError for a model that declares none (built from its data's shape)."""
    declared = loaded.input_shape
    if declared is None:
        raise UsageError(f"{loaded.source}: the model declares no input shape, so images "
                         "have no size to be resized to: give its first layer an input_shape "
                         "(e.g. [180, 180, 3]) or feed a .npy array")
    return tuple(declared)


def open_model_input(paths: list[str], runner, options=None):
    """INPUT opened for reading in batches: images as `ImageInput` sized for `runner`'s
    model, read with the `ImageOptions` `options` (None: Keras's defaults); else the single
    array `paths` names (`chunked.open_rows`). A UsageError for several paths that are not
    all images."""
    from seqcli.io.chunked import open_rows

    if names_images(paths):
        from seqcli.io.images import ImageInput, ImageOptions, list_images

        return ImageInput(list_images(paths), declared_shape(runner.loaded),
                          options or ImageOptions())
    if len(paths) > 1:
        raise UsageError(f"INPUT names {len(paths)} paths; several are taken only as image files "
                         "(PNG, JPEG, BMP, GIF, WebP, TIFF): for arrays give one .npy, .zarr or "
                         "a glob of .npy shards")
    return open_rows(paths[0])
