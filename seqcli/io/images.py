"""Image files as model inputs, read as Keras's `image_dataset_from_directory` reads them.

Which files: those a folder holds (recursively, in Keras's order: `index_directory`'s walk,
sorted by folder, files sorted in each, symbolic links to folders not followed), single files,
or a glob's matches; several inputs in sorted order, each folder's files in its place. Class
folders give labels as Keras's labels="inferred" does.

How they are read is Keras's default path (format="tf", `_load_image_tf`): TensorFlow's
`decode_image(channels=C, expand_animations=False)` gives uint8 pixels, then
`tf.image.resize` (`image_resize`) gives float32 values 0-255, shaped as the model's input.
Pillow decodes; where it differs from TensorFlow, seqcli does what TensorFlow does:

- JPEG: TensorFlow's integer-fast IDCT, fancy chroma upsampling and colour conversion (for
  subsampled files Pillow hands over the planes, which are upsampled and converted here as
  libjpeg does); grayscale is libjpeg's luma.
- PNG: colour to grayscale with libpng's weights and truncation (in linear light when the
  file declares a gamma or sRGB, as libpng does); 16-bit samples keep their high byte.
- GIF: the first frame, on a canvas the size of that frame; transparent pixels are black.

Where TensorFlow refuses (a GIF or BMP as grayscale, a GIF or JPEG as RGBA, WebP and TIFF,
which Keras does not list) or where its decoder is not reproduced (CMYK JPEGs and subsampled
ones coded as RGB, colour PNGs with an ICC profile or 16-bit samples read as grayscale, a
32-bit BMP's fourth byte), seqcli follows Keras's other loader, `_load_image_grain`:
Pillow's `convert` to "L", "RGB" or "RGBA". The first frame of an animation or page of a TIFF
is read; EXIF orientation is ignored, as TensorFlow ignores it.

Pillow is the optional extra `seqcli[images]`, imported only when an image is opened. Every
image is opened, decoded, converted and resized on its own, so memory holds one image at a
time (beyond the batch being made).
"""

from __future__ import annotations

import glob
import math
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from seqcli.errors import InputDataError, MissingFileError, SeqcliError, UsageError
from seqcli.io import image_resize
from seqcli.io.chunked import is_glob, is_zarr
from seqcli.io.image_paths import IMAGE_SUFFIXES, has_image_suffix
from seqcli.io.limits import MAX_IMAGE_FILES
from seqcli.io.pillow import require_pillow
from seqcli.shapes import format_shape

INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5",
                  "gaussian", "mitchellcubic")
"""The `interpolation` values of `image_dataset_from_directory`."""
CROP_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5")
"""Those Keras's `smart_resize` takes (crop_to_aspect_ratio)."""
PILLOW_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
"""The only decoders Pillow is allowed to run (never EPS, PSD, ... on a stranger's file)."""
FORMAT_NAMES = "PNG, JPEG, GIF, BMP, WebP or TIFF"
"""The same, for messages."""
CHANNELS = {1: "grayscale", 3: "RGB", 4: "RGBA"}
"""Channels of a model's input that images are decoded to."""
READING_IMAGES = "reading images"


@dataclass(frozen=True)
class ImageOptions:
    """How images are fitted to the model's height and width (Keras's arguments)."""

    interpolation: str = "bilinear"
    """One of `INTERPOLATIONS`."""
    crop_to_aspect_ratio: bool = False
    """Resize the largest centred window of the target's aspect ratio."""
    pad_to_aspect_ratio: bool = False
    """Resize to fit, then pad with zeros to the target (`tf.image.resize_with_pad`)."""

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise UsageError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; "
                             f"received: {self.interpolation!r}")
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise UsageError("only one of crop_to_aspect_ratio and pad_to_aspect_ratio can be "
                             "true, as in Keras")
        if self.crop_to_aspect_ratio and self.interpolation not in CROP_INTERPOLATIONS:
            raise UsageError(f"crop_to_aspect_ratio resizes with {', '.join(CROP_INTERPOLATIONS)}"
                             f" (as Keras's smart_resize); received: {self.interpolation!r}")


# ----------------------------------------------------------------------------- which files


@dataclass
class ImageFiles:
    """The image files an INPUT names, in the order their rows are made."""

    paths: list[str]
    labels: np.ndarray | None = None
    """int32 class ids, one per path (class folders only)."""
    class_names: list[str] | None = None
    """The class folders' names, in the order of their ids."""
    source: str | None = None
    """What was given, for messages: the file, folder or glob, or `N images`."""


def list_images(inputs: list[str], labelled: bool = False) -> ImageFiles:
    """The image files `inputs` name. Files and glob matches are taken in sorted order, a
    folder's images (recursively) in Keras's order in its place; a glob's matches that are
    not image files are left out, as a folder's are. `labelled`: `inputs` is one folder whose
    subfolders are the classes (Keras's labels="inferred": their names in sorted order, files
    beside them ignored, hidden folders skipped)."""
    if labelled:
        return _list_classes(inputs)
    paths: list[str] = []
    for path in sorted(inputs):
        paths.extend(_expanded(path, MAX_IMAGE_FILES - len(paths)))
    source = inputs[0] if len(inputs) == 1 else f"{len(paths)} images"
    if not paths:
        raise InputDataError(f"{source}: no image files there; looked for "
                             f"{_suffixes()} files")
    return ImageFiles(paths, source=source)


def _expanded(path: str, room: int) -> list[str]:
    """The image files one input names, at most `room` of them."""
    if is_glob(path):
        found = []
        for match in sorted(glob.glob(path)):  # image files, and the images of folders
            if os.path.isdir(match) and not is_zarr(match):
                found += _folder_images(match, room - len(found))
            elif has_image_suffix(match) and os.path.isfile(match):
                _check_count(path, len(found) + 1, room)
                found.append(match)
        if not found:
            raise InputDataError(f"{path}: no image file matches this pattern; looked for "
                                 f"{_suffixes()} files")
        return found
    if os.path.isdir(path):
        return _folder_images(path, room)
    if not os.path.lexists(path):
        raise MissingFileError(f"{path}: no such file or folder; check the INPUT path")
    if not has_image_suffix(path):
        raise InputDataError(f"{path}: not an image file name; images are read from "
                             f"{_suffixes()} files (or a folder of them)")
    _check_count(path, 1, room)
    return [path]


def _check_count(source: str, count: int, room: int) -> None:
    """An InputDataError when `count` more files than `room` are found (`MAX_IMAGE_FILES` in
    all)."""
    if count > room:
        raise InputDataError(f"{source}: more than {MAX_IMAGE_FILES:,} image files in all; "
                             "split the inputs into several runs")


def _folder_images(folder: str, room: int) -> list[str]:
    """The image files under `folder`, in the order of Keras's `iter_valid_files`: folders
    sorted by path, the files of each sorted; links to folders are not followed. An
    unreadable folder is a MissingFileError."""
    def unreadable(error: OSError):
        raise MissingFileError(f"{error.filename}: cannot read this folder: "
                               f"{error.strerror or error}") from error

    walk = []
    found = 0
    for root, _, files in os.walk(folder, onerror=unreadable):
        images = [name for name in files if has_image_suffix(name)]
        found += len(images)
        _check_count(folder, found, room)
        walk.append((root, images))
    return [os.path.join(root, name) for root, images in sorted(walk, key=lambda entry: entry[0])
            for name in sorted(images)]


def _list_classes(inputs: list[str]) -> ImageFiles:
    """`list_images` for one folder of class subfolders."""
    if len(inputs) != 1 or not os.path.isdir(inputs[0]):
        given = inputs[0] if len(inputs) == 1 else f"{len(inputs)} paths"
        if len(inputs) == 1 and not os.path.lexists(inputs[0]):
            raise MissingFileError(f"{given}: no such folder; check the path")
        raise UsageError(f"labelled images come from one folder whose subfolders are the "
                         f"classes; received {given}")
    folder = inputs[0]
    try:
        names = sorted(name for name in os.listdir(folder)
                       if not name.startswith(".") and os.path.isdir(os.path.join(folder, name)))
    except OSError as error:
        raise MissingFileError(f"{folder}: cannot read this folder: "
                               f"{error.strerror or error}") from error
    if not names:
        raise InputDataError(f"{folder}: no class subfolders in it; labelled images are "
                             "sorted into one subfolder per class (cat/, dog/, ...)")
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        found = _folder_images(os.path.join(folder, name), MAX_IMAGE_FILES - len(paths))
        paths.extend(found)
        labels.extend([label] * len(found))
    if not paths:
        raise InputDataError(f"{folder}: no image files in its class subfolders "
                             f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}); "
                             f"looked for {_suffixes()} files")
    return ImageFiles(paths, np.asarray(labels, dtype=np.int32), names, folder)


def _suffixes() -> str:
    """`IMAGE_SUFFIXES` for a message."""
    return ", ".join(IMAGE_SUFFIXES)


# ----------------------------------------------------------------------------- the model's size


def image_geometry(sample_shape: tuple) -> tuple[int, int, int]:
    """(height, width, channels) images are decoded and resized to for a model whose
    per-sample input shape is `sample_shape`: (H, W, C) with C 1 (grayscale), 3 (RGB) or 4
    (RGBA), or (H, W) for grayscale without a channel axis. An InputDataError otherwise."""
    shape = tuple(sample_shape)
    received = f"the model takes inputs of shape {format_shape(shape)}"
    if len(shape) not in (2, 3):
        raise InputDataError(f"{received}, but images are (height, width, channels) arrays: "
                             "feed it a .npy array, or give it an image input shape such as "
                             "[180, 180, 3]")
    height, width = shape[:2]
    if height is None or width is None:
        raise InputDataError(f"{received}, whose height or width is open (None): images are "
                             "resized to the model's height and width, so give its input "
                             "shape fixed ones, such as [180, 180, 3]")
    channels = shape[2] if len(shape) == 3 else 1
    if channels not in CHANNELS:
        raise InputDataError(f"{received}: images are decoded to 1 (grayscale), 3 (RGB) or 4 "
                             f"(RGBA) channels, not {channels}")
    return int(height), int(width), int(channels)


# ----------------------------------------------------------------------------- one image


def load_image(path: str, sample_shape: tuple, options: ImageOptions) -> np.ndarray:
    """The image file `path` decoded to the channels of `sample_shape`, fitted to its height and
    width as `options` say: float32 values 0-255, shaped exactly `sample_shape`."""
    image_module = require_pillow(READING_IMAGES)
    with _pillow_warnings(image_module):
        return _loaded(path, sample_shape, options, image_module)


def _loaded(path: str, sample_shape: tuple, options: ImageOptions, image_module) -> np.ndarray:
    """`load_image` inside `_pillow_warnings`. A grayscale image wanted in RGB is resized as
    its one channel, then repeated (the same values, a third of the memory); an image of more
    than LARGE_IMAGE_PIXELS waits for any other such image to be done (memory holds one)."""
    height, width, channels = image_geometry(sample_shape)
    with _opened(path, image_module) as image:
        with _one_large_image(image.size):
            pixels = _image_pixels(path, image, channels, gray_kept=channels == 3)
            image.close()
            del image
            resized = _fitted(path, pixels, height, width, options)
    if resized.shape[-1] != channels:
        resized = np.repeat(resized, channels, axis=-1)
    return resized.reshape(sample_shape)


LARGE_IMAGE_PIXELS = 16 * 1024**2
"""Images beyond this many pixels (a 4,096 x 4,096 one) are decoded one at a time: each holds
some hundreds of MB while it is read."""
_LARGE_IMAGE = threading.Lock()


@contextmanager
def _one_large_image(size: tuple[int, int]) -> Iterator[None]:
    """Inside the block, no other image of more than LARGE_IMAGE_PIXELS is decoded, if this
    one (`size`: width, height) is such an image."""
    if size[0] * size[1] <= LARGE_IMAGE_PIXELS:
        yield
        return
    with _LARGE_IMAGE:
        yield


def _fitted(path: str, pixels: np.ndarray, height: int, width: int,
            options: ImageOptions) -> np.ndarray:
    """`pixels` cropped or padded to the aspect ratio as `options` say, and resized to
    (height, width)."""
    if options.crop_to_aspect_ratio:
        pixels = image_resize.aspect_crop(pixels, height, width)
    if not options.pad_to_aspect_ratio:
        resized = image_resize.resize(pixels, height, width, options.interpolation)
    else:
        resized = image_resize.resize_with_pad(pixels, height, width, options.interpolation)
        if resized is None:
            raise InputDataError(
                f"{path}: a {pixels.shape[1]}x{pixels.shape[0]} image shrinks to nothing when "
                f"fitted into {width}x{height} without distortion; drop --pad-to-aspect-ratio "
                "or leave this image out")
    return resized


def decode_image(path: str, channels: int) -> np.ndarray:
    """The pixels of the image file `path` as TensorFlow's `decode_image(channels=channels,
    expand_animations=False)` gives them (see the module's docstring): (height, width,
    channels) uint8. Any failure is an InputDataError naming the file (a file that cannot be
    opened: MissingFileError)."""
    image_module = require_pillow(READING_IMAGES)
    with _pillow_warnings(image_module):
        return _decoded(path, channels, image_module)


@contextmanager
def _pillow_warnings(image_module) -> Iterator[None]:
    """Pillow's decompression-bomb warning raised as an error, its other warnings (about
    metadata) not shown. The filters are the process's: set them around the decoding, never
    inside threads that decode side by side."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", image_module.DecompressionBombWarning)
        yield


def _decoded(path: str, channels: int, image_module) -> np.ndarray:
    """`decode_image` inside `_pillow_warnings`."""
    with _opened(path, image_module) as image:
        return _image_pixels(path, image, channels)


@contextmanager
def _opened(path: str, image_module):
    """The image file `path` opened by Pillow with only PILLOW_FORMATS' decoders; failures
    while the block reads it are InputDataErrors naming it (`_decoding`)."""
    with _image_file(path) as file, _decoding(path, file, image_module):
        yield image_module.open(file, formats=PILLOW_FORMATS)


def _image_pixels(path: str, image, channels: int, gray_kept: bool = False) -> np.ndarray:
    """The pixels of the opened `image` (`decode_image`); with `gray_kept`, an 8-bit grayscale
    image wanted in RGB stays one channel, for its caller to repeat."""
    width, height = image.size
    if width < 1 or height < 1:
        raise InputDataError(f"{path}: the image is {width}x{height} pixels; it has none "
                             "to read")
    if gray_kept and channels == 3 and image.mode == "L":
        channels = 1  # TensorFlow's gray to RGB repeats the value
    if image.format in ("JPEG", "MPO"):
        return _jpeg_pixels(image, channels)
    image.load()
    if image.format == "PNG":
        return _png_pixels(image, channels)
    if image.format == "GIF" and channels == 3:
        return _gif_pixels(image)
    return _converted(image, channels)


@contextmanager
def _image_file(path: str):
    """`path` opened for reading, if it is a regular file (never waiting on a FIFO)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as error:
        raise MissingFileError(f"{path}: no such file; check the INPUT path") from error
    except OSError as error:
        reason = "permission denied" if isinstance(error, PermissionError) else error.strerror
        raise MissingFileError(f"{path}: cannot read it: {reason or error}") from error
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        what = "a folder" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
        raise InputDataError(f"{path}: not a regular file but {what}; images are read from "
                             "files")
    with os.fdopen(descriptor, "rb") as file:
        yield file


@contextmanager
def _decoding(path: str, file, image_module):
    """Pillow's failures while `path` is decoded, as InputDataErrors naming it (its
    decompression-bomb warning too, raised by `_pillow_warnings`)."""
    try:
        yield
    except (SeqcliError, MemoryError):
        raise
    except image_module.UnidentifiedImageError as error:
        raise InputDataError(_not_an_image(path, file)) from error
    except (image_module.DecompressionBombWarning, image_module.DecompressionBombError) as error:
        raise InputDataError(f"{path}: refused as a likely decompression bomb: "
                             f"{_one_line(error)}") from error
    except Exception as error:  # Pillow's decoders raise OSError, ValueError, SyntaxError, ...
        raise InputDataError(f"{path}: cannot decode this image: {_one_line(error)}") from error


def _not_an_image(path: str, file) -> str:
    """What a file Pillow cannot identify is, for its message."""
    from seqcli.io.filetype import HEAD_SIZE, file_kind

    file.seek(0)
    head = file.read(HEAD_SIZE)
    kind = file_kind(head) if head else "empty"
    what = {"empty": "the file is empty", "npy": "it is a .npy array",
            "zip": "it is a ZIP archive", "text": "it is text", "csv": "it is CSV text"}.get(
        kind, f"it is not a {FORMAT_NAMES} image")
    if kind is not None and kind.startswith("image:"):
        what = f"it starts as a {kind[6:]} image but is not a valid one"
    return f"{path}: not an image: {what}"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# ----------------------------------------------------------------------------- conversions


STRIP_PIXELS = 1 << 20
"""Pixels of the strips a large image's pixels are copied out of Pillow in."""


def _by_strips(image, pixels_of) -> np.ndarray:
    """`pixels_of(image)`, the uint8 pixels of a loaded `image` (rows first), computed strip by
    strip of STRIP_PIXELS for a large image: memory holds Pillow's image and the result, not
    whole-image conversions and temporaries (numpy's own conversion alone goes through the
    image as bytes twice)."""
    width, height = image.size
    if width * height <= STRIP_PIXELS:
        return pixels_of(image)
    rows = max(1, STRIP_PIXELS // width)
    pixels = None
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        strip = pixels_of(image.crop((0, top, width, bottom)))
        if pixels is None:
            pixels = np.empty((height, *strip.shape[1:]), dtype=strip.dtype)
        pixels[top:bottom] = strip
    return pixels


WIDE_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
"""Pillow's modes of 16- (and 32-) bit grayscale."""


def _converted(image, channels: int) -> np.ndarray:
    """Pillow's conversion of `image` to `channels` (Keras's `_load_image_grain`), except that
    wide grayscale keeps the high byte of 16-bit samples, as TensorFlow does: (h, w, channels)
    uint8."""
    if image.mode in WIDE_GRAY_MODES:
        transparent = image.info.get("transparency")
        return _by_strips(image, lambda part: _wide_gray(part, channels, transparent))
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]

    def pixels_of(part) -> np.ndarray:
        if part.mode in ("P", "PA") and channels != 1:  # transparency as alpha, never a warning
            part = part.convert("RGBA")
        pixels = np.asarray(part if part.mode == mode else part.convert(mode))
        return pixels.reshape(*pixels.shape[:2], channels)

    return _by_strips(image, pixels_of)


def _wide_gray(image, channels: int, transparent) -> np.ndarray:
    """16-bit grayscale (32-bit clipped to 16) as TensorFlow's uint8 decoding gives it: the high
    byte, replicated to RGB; alpha 0 where a sample is the `transparent` one."""
    samples = np.clip(np.asarray(image).astype(np.int64), 0, 65535).astype(np.int32)
    gray = (samples >> 8).astype(np.uint8)
    if channels == 1:
        return gray[:, :, None]
    planes = [gray] * 3
    if channels == 4:
        alpha = np.full(gray.shape, 255, dtype=np.uint8)
        if isinstance(transparent, int):
            alpha[samples == transparent] = 0
        planes.append(alpha)
    return np.stack(planes, axis=-1)


def _png_pixels(image, channels: int) -> np.ndarray:
    """A PNG as TensorFlow's libpng decoding gives it: Pillow's pixels (whose conversions to RGB
    and RGBA are libpng's), and colour to grayscale with libpng's `png_set_rgb_to_gray`."""
    if channels != 1 or image.mode in ("1", "L", "LA") + WIDE_GRAY_MODES:
        return _converted(image, channels)
    gamma = _png_gamma(image.info)
    return _by_strips(image, lambda part: _libpng_gray(
        np.asarray(part.convert("RGBA"))[:, :, :3].astype(np.int32), gamma)[:, :, None])


LIBPNG_RED, LIBPNG_GREEN = 9797, 19234
"""libpng's rgb_to_gray coefficients for TensorFlow's (0.299, 0.587), in 1/32768."""
LIBPNG_BLUE = 32768 - LIBPNG_RED - LIBPNG_GREEN
SRGB_GAMMA = 45455
"""The file gamma (x 100000) an sRGB chunk stands for."""


def _png_gamma(info: dict) -> int | None:
    """The file gamma (x 100000) libpng takes from a PNG's sRGB or gAMA chunk, when it is far
    enough from 1 for libpng to convert to gray in linear light; else None."""
    if "srgb" in info:
        gamma = SRGB_GAMMA
    elif "gamma" in info:
        gamma = round(info["gamma"] * 100000)
        if not 16 <= gamma <= 625_000_000:  # libpng ignores an out-of-range gAMA
            return None
    else:
        return None
    return gamma if abs(gamma - 100000) > 5000 else None


def _libpng_gray(rgb: np.ndarray, gamma: int | None) -> np.ndarray:
    """libpng's 8-bit rgb_to_gray of (h, w, 3) samples: `(r R + g G + b B) >> 15`; with a file
    gamma, through its tables to linear light and back (`png_gamma_8bit_correct`)."""
    red, green, blue = rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]
    if gamma is None:
        gray = (LIBPNG_RED * red + LIBPNG_GREEN * green + LIBPNG_BLUE * blue) >> 15
        return gray.astype(np.uint8)
    screen = _reciprocal(gamma)
    to_linear, from_linear = _gamma_table(screen), _gamma_table(_reciprocal(screen))
    linear = (LIBPNG_RED * to_linear[red] + LIBPNG_GREEN * to_linear[green]
              + LIBPNG_BLUE * to_linear[blue] + 16384) >> 15
    gray = np.where((red == green) & (red == blue), red, from_linear[linear])
    return gray.astype(np.uint8)


def _reciprocal(gamma: int) -> int:
    """libpng's `png_reciprocal` of a fixed-point (x 100000) value."""
    return int(math.floor(1e10 / gamma + 0.5))


def _gamma_table(gamma: int) -> np.ndarray:
    """libpng's 8-bit gamma table: `floor(255 (v / 255) ^ (gamma / 100000) + 0.5)`, 0 and 255
    kept."""
    values = np.arange(256)
    table = np.floor(255 * np.power(values / 255.0, gamma * 0.00001) + 0.5).astype(np.int64)
    table[[0, 255]] = [0, 255]
    return table


def _gif_pixels(image) -> np.ndarray:
    """A GIF's first frame as TensorFlow's decoder gives it in RGB: a canvas the size of the
    frame, holding the screen's pixels where the frame covers it and black elsewhere and
    where the frame is transparent."""
    left, top, right, bottom = getattr(image, "dispose_extent", (0, 0, *image.size))
    frame_width, frame_height = right - left, bottom - top
    transparent = image.info.get("transparency")
    masked = isinstance(transparent, int) and image.mode in ("P", "L")

    def pixels_of(part) -> np.ndarray:
        rgb = _converted(part, 3)
        if masked:
            rgb = np.where((np.asarray(part) == transparent)[:, :, None], np.uint8(0), rgb)
        return rgb

    rgb = _by_strips(image, pixels_of)
    if (left, top, frame_width, frame_height) == (0, 0, rgb.shape[1], rgb.shape[0]):
        return rgb
    canvas = np.zeros((frame_height, frame_width, 3), dtype=np.uint8)
    rows, columns = min(frame_height, rgb.shape[0]), min(frame_width, rgb.shape[1])
    canvas[top:rows, left:columns] = rgb[top:rows, left:columns]
    return canvas


# ----------------------------------------------------------------------------- JPEG


def _jpeg_pixels(image, channels: int) -> np.ndarray:
    """A JPEG as TensorFlow's libjpeg decoding gives it (integer-fast IDCT, fancy upsampling):
    exactly for grayscale output and for YCbCr files, subsampled or not; Pillow's decoding
    otherwise (CMYK, subsampled files coded as RGB)."""
    if image.mode == "RGB" and channels == 1:
        image.draft("L", None)  # libjpeg's own luma, as TensorFlow asks for one component
    factors = _sampling(image)
    if image.mode == "RGB" and factors is not None and len(set(factors)) > 1:
        if channels == 1 or not _ycc_coded(image):
            return _converted(image, channels)
        image.draft("YCbCr", None)
        if image.mode != "YCbCr":  # Pillow could not hand its planes over
            return _converted(image, channels)
        _integer_fast_dct(image)
        image.load()
        rgb = _ycc_image_to_rgb(image, factors)
        return rgb if channels == 3 else np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    if image.mode in ("L", "RGB"):
        _integer_fast_dct(image)
    return _converted(image, channels)


def _sampling(image) -> list[tuple[int, int]] | None:
    """Each component's (horizontal, vertical) sampling factors, from Pillow's SOF record."""
    layers = getattr(image, "layer", None)
    if not layers:
        return None
    return [(int(layer[1]), int(layer[2])) for layer in layers]


def _ycc_coded(image) -> bool:
    """True when libjpeg takes a 3-component JPEG as YCbCr: JFIF, an Adobe marker saying so, or
    no marker and component ids other than 'R', 'G', 'B' (its `default_decompress_parms`)."""
    if "jfif" in image.info:
        return True
    if "adobe" in image.info:
        return image.info.get("adobe_transform") != 0
    return [layer[0] for layer in image.layer] != [ord("R"), ord("G"), ord("B")]


def _integer_fast_dct(image) -> None:
    """Have Pillow's JPEG decoder use libjpeg's integer-fast IDCT, as TensorFlow's decode_image
    does (its draft flag: it also turns fancy upsampling off, which `_fancy_upsampled` redoes
    where it matters)."""
    scale = image.decoderconfig[0] if image.decoderconfig else 1
    image.decoderconfig = (scale, 1)


def _ycc_image_to_rgb(image, factors: list[tuple[int, int]]) -> np.ndarray:
    """The loaded YCbCr `image` (chroma replicated) upsampled and converted to RGB strip by
    strip, each strip read with a sample row of its neighbours above and below, so that memory
    holds the image once more rather than a dozen times in int32 planes."""
    width, height = image.size
    unit = max(v for _, v in factors)  # a strip starts on a sample row of every plane
    rows = max(unit, STRIP_PIXELS // max(width, 1) // unit * unit)
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        start, end = max(top - unit, 0), min(bottom + unit, height)
        block = np.asarray(image.crop((0, start, width, end)))
        upsampled = _fancy_upsampled(block, factors)
        rgb[top:bottom] = _ycc_to_rgb(upsampled[top - start:bottom - start])
    return rgb


def _fancy_upsampled(ycc: np.ndarray, factors: list[tuple[int, int]]) -> np.ndarray:
    """libjpeg's fancy upsampling of each plane smaller than the image (the chroma, usually),
    from the planes as upsampled by replication (what Pillow gives without fancy upsampling):
    h2v1, h1v2 and h2v2 triangle filters (jdsample.c); other ratios are replication in both."""
    height, width = ycc.shape[:2]
    most_h, most_v = max(h for h, _ in factors), max(v for _, v in factors)
    planes = []
    for index, (h, v) in enumerate(factors):
        ratio = (most_h // h, most_v // v)
        plane = ycc[:, :, index].astype(np.int32)
        samples = plane[::ratio[1], ::ratio[0]]
        wide_enough = samples.shape[1] > 2
        if ratio == (2, 1) and wide_enough:
            plane = _h2v1(samples)
        elif ratio == (1, 2):
            plane = _h1v2(samples)
        elif ratio == (2, 2) and wide_enough:
            plane = _h2v2(samples)
        planes.append(plane[:height, :width])
    return np.stack(planes, axis=-1)


def _neighbours(samples: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The sample before and after each one along `axis`, edges repeated."""
    first = np.take(samples, [0], axis=axis)
    last = np.take(samples, [-1], axis=axis)
    count = samples.shape[axis]
    before = np.concatenate([first, np.take(samples, range(count - 1), axis=axis)], axis=axis)
    after = np.concatenate([np.take(samples, range(1, count), axis=axis), last], axis=axis)
    return before, after


def _interleaved(even: np.ndarray, odd: np.ndarray, axis: int) -> np.ndarray:
    """`even` and `odd` taking turns along `axis`."""
    stacked = np.stack([even, odd], axis=axis + 1)
    shape = list(even.shape)
    shape[axis] *= 2
    return stacked.reshape(shape)


def _h2v1(samples: np.ndarray) -> np.ndarray:
    """h2v1_fancy_upsample: `(3 nearer + further + 1 or 2) >> 2` along a row."""
    before, after = _neighbours(samples, axis=1)
    return _interleaved((3 * samples + before + 1) >> 2, (3 * samples + after + 2) >> 2, axis=1)


def _h1v2(samples: np.ndarray) -> np.ndarray:
    """h1v2_fancy_upsample: `(3 nearer + further + 1 or 2) >> 2` down a column."""
    above, below = _neighbours(samples, axis=0)
    return _interleaved((3 * samples + above + 1) >> 2, (3 * samples + below + 2) >> 2, axis=0)


def _h2v2(samples: np.ndarray) -> np.ndarray:
    """h2v2_fancy_upsample: column sums `3 nearer + further` over rows, then
    `(3 sum + neighbouring sum + 8 or 7) >> 4` along the row."""
    above, below = _neighbours(samples, axis=0)
    sums = _interleaved(3 * samples + above, 3 * samples + below, axis=0)
    before, after = _neighbours(sums, axis=1)
    return _interleaved((3 * sums + before + 8) >> 4, (3 * sums + after + 7) >> 4, axis=1)


def _fixed(value: float) -> int:
    """jdcolor.c's FIX: `value` in 16-bit fixed point."""
    return int(value * 65536 + 0.5)


def _ycc_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """libjpeg's ycc_rgb_convert: its 16-bit fixed-point tables, results clamped to 0-255."""
    luma, blue, red = ycc[:, :, 0], ycc[:, :, 1] - 128, ycc[:, :, 2] - 128
    half = 1 << 15
    red_from_cr = (_fixed(1.40200) * red + half) >> 16
    blue_from_cb = (_fixed(1.77200) * blue + half) >> 16
    green = (-_fixed(0.34414) * blue + half - _fixed(0.71414) * red) >> 16
    rgb = np.stack([luma + red_from_cr, luma + green, luma + blue_from_cb], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- inputs


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ImageRows:
    """Rows of image files by range, each decoded and resized to `sample_shape`; picklable
    (plain attributes), for Dask workers, which find relative paths from the folder the run
    began in."""

    def __init__(self, paths: list[str], sample_shape: tuple, options: ImageOptions):
        image_geometry(sample_shape)
        self.paths = list(paths)
        self.sample_shape = tuple(int(size) for size in sample_shape)
        self.options = options
        self.folder = os.getcwd()

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows `start:stop`: (stop - start, *sample_shape) float32, decoded side by side on
        up to one thread per core (Pillow's decoders and numpy release the GIL); a failure is
        that of the first failing file in row order."""
        chosen = self.paths[start:stop]
        rows = np.empty((len(chosen), *self.sample_shape), dtype=np.float32)
        image_module = require_pillow(READING_IMAGES)

        def fill(row: int) -> None:
            rows[row] = _loaded(self._located(chosen[row]), self.sample_shape, self.options,
                                image_module)

        workers = min(len(chosen), _cores())
        with _pillow_warnings(image_module):
            if workers < 2:
                for row in range(len(chosen)):
                    fill(row)
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(workers, thread_name_prefix="seqcli-images") as pool:
                    for _ in pool.map(fill, range(len(chosen))):
                        pass
        return rows

    def _located(self, path: str) -> str:
        """`path` as this process finds it: relative to the run's folder if it has moved."""
        if os.path.isabs(path) or os.getcwd() == self.folder:
            return path
        return os.path.join(self.folder, path)


class ImageInput:
    """Image files as the input of predict, extract and report: the interface of
    `arrays.InputArray`, each batch decoded when it is asked for."""

    def __init__(self, files: ImageFiles, sample_shape: tuple, options: ImageOptions):
        self.files = files
        self.paths = files.paths
        """The image files, in row order."""
        self.rows = ImageRows(files.paths, sample_shape, options)
        """The reader of row ranges (what workers call)."""
        self.shape = (len(files.paths), *self.rows.sample_shape)
        self.dtype = np.dtype(np.float32)
        self.source = files.source or (files.paths[0] if len(files.paths) == 1
                                       else f"{len(files.paths)} images")

    def __enter__(self) -> ImageInput:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def batches(self, batch_size: int, as_float32: bool = True) -> Iterator[np.ndarray]:
        """Batches of at most `batch_size` images, in order, each decoded when it is asked for
        (float32 whatever `as_float32` says: pixels are never integer ids)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch size must be a positive integer; received: {batch_size!r}")
        return (self.rows.read(start, min(start + batch_size, self.shape[0]))
                for start in range(0, self.shape[0], batch_size))

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows `start:stop`, decoded."""
        return self.rows.read(start, stop)


def load_images(files: ImageFiles, sample_shape: tuple, options: ImageOptions) -> np.ndarray:
    """Every image of `files` as one float32 array (N, *sample_shape), for fit and evaluate,
    which hold their data whole; a SeqcliError (exit 1) before anything is decoded when that
    is more than the memory this machine has available."""
    from seqcli.io.memory import available_memory, readable_size

    rows = ImageRows(files.paths, sample_shape, options)
    needed = len(files.paths) * math.prod(rows.sample_shape) * 4
    available = available_memory()
    if available is not None and needed > available:
        source = files.source or f"{len(files.paths)} images"
        raise SeqcliError(f"{source}: {len(files.paths):,} images of shape "
                          f"{format_shape(rows.sample_shape, batch=False)} take "
                          f"{readable_size(needed)} as float32, more than the "
                          f"{readable_size(available)} of memory this machine has available; "
                          "they are held whole for training, so use fewer or smaller images")
    return rows.read(0, len(files.paths))
