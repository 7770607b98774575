"""Whether an INPUT names image files, told from names alone (suffixes, folders, globs):
light enough for every command's start, which must not import `seqcli.io.images`."""

from __future__ import annotations

import glob
import os

from seqcli.io.arrays import STDIN
from seqcli.io.chunked import is_glob, is_zarr

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp", ".tif", ".tiff")
"""Suffixes of the files a folder's images are (Keras's allowlist, with WebP and TIFF)."""


def has_image_suffix(path: str) -> bool:
    """True when `path` ends in one of `IMAGE_SUFFIXES`, in any case."""
    return path.lower().endswith(IMAGE_SUFFIXES)


def names_images(paths: list[str]) -> bool:
    """True when INPUT names images rather than one array: none of `paths` is stdin, and one
    is a folder that is not a Zarr store, a file whose suffix is an image's, or a glob whose
    first sorted match is either. Opens no image, imports no Pillow."""
    return STDIN not in paths and any(_names_images(path) for path in paths)


def _names_images(path: str) -> bool:
    """`names_images` for one path."""
    if is_glob(path):
        matches = sorted(glob.glob(path))
        return bool(matches) and not is_glob(matches[0]) and _names_images(matches[0])
    if os.path.isdir(path):
        return not is_zarr(path)
    return has_image_suffix(path)
