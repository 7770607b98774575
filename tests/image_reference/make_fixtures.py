"""Record what Keras's `image_dataset_from_directory` makes of a folder of images, for
`tests/test_images.py`, and a small convnet's predictions on it, for the CLI's tests.

Run it from a scratch environment with TensorFlow, Keras 3 and Pillow (seqcli never depends on
them), from the repository root:

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu keras pillow
    /tmp/tfvenv/bin/python tests/image_reference/make_fixtures.py [SEQCLI]

(SEQCLI: the seqcli executable that imports the model, by default the repository's
.venv/bin/seqcli.) It writes, beside itself:

    images/<class>/...   small images in every format and mode Keras reads (PNG: RGB, RGBA,
                         palette with transparency, L, LA, 16-bit, with gAMA and sRGB chunks;
                         JPEG: 4:2:0, 4:2:2, 4:4:4, grayscale, progressive; BMP; a 2-frame
                         GIF with a transparent colour), of sizes below and above the target,
                         plus one loose file beside the class folders, a hidden one, a nested
                         folder and a text file that is no image
    twins/               WebP (lossless) and TIFF copies of three PNGs (Keras does not list
                         these formats: the tests compare them with their PNG twins)
    reference.npz        Keras's arrays: `rgb/<interpolation>/<fit>` for every interpolation
                         and fit (plain, crop, pad) it accepts, `grayscale/bilinear/plain`,
                         `rgba/bilinear/plain`, `labels`, and `predictions` of the model
    reference.json       the settings, the class names, the files of each colour mode's
                         arrays in row order (and of labels=None), Keras's refusals
    model.yaml, model.safetensors   the convnet, imported with `seqcli import-keras`

TensorFlow refuses some formats in some colour modes (a GIF or BMP in grayscale, a JPEG or GIF
in RGBA): those modes are recorded on a copy of the folder without the files it refuses. Keras
refuses crop_to_aspect_ratio with "gaussian" and "mitchellcubic"; reference.json lists the
refusals. Everything is seeded, so reruns write the same images and arrays.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image, PngImagePlugin  # noqa: E402

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"
TWINS = HERE / "twins"
SEQCLI = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[1] / ".venv" / "bin" / "seqcli"
IMAGE_SIZE = (10, 8)
"""(height, width) the images are resized to (the model's input)."""
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5",
                  "gaussian", "mitchellcubic")
FITS = {"plain": {}, "crop": {"crop_to_aspect_ratio": True},
        "pad": {"pad_to_aspect_ratio": True}}
REFUSED = {"grayscale": (".gif", ".bmp"), "rgba": (".jpg", ".gif")}
"""Suffixes of the files TensorFlow's decode_image refuses in a colour mode."""


def picture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth, slightly noisy RGB picture (uint8): edges and gradients for the resizers."""
    y, x = np.mgrid[0:height, 0:width]
    planes = [128 + 100 * np.sin(x / 3.0 + y / 5.0), 128 + 90 * np.cos(x / 2.0 - y / 3.0),
              (x * 23 + y * 11) % 256]
    noisy = np.stack(planes, axis=-1) + rng.normal(0, 12, (height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def png_info(chunk: bytes, data: bytes) -> PngImagePlugin.PngInfo:
    """A PngInfo adding one raw chunk."""
    info = PngImagePlugin.PngInfo()
    info.add(chunk, data)
    return info


def write_images(rng: np.random.Generator) -> None:
    """The images of every class folder, the loose and hidden files, and the twins."""
    shutil.rmtree(IMAGES, ignore_errors=True)
    shutil.rmtree(TWINS, ignore_errors=True)
    for folder in ("circles/more", "squares", "stripes"):
        (IMAGES / folder).mkdir(parents=True)
    TWINS.mkdir()

    rgb = picture(rng, 17, 40)
    Image.fromarray(rgb).save(IMAGES / "circles" / "rgb.png")
    Image.fromarray(rgb).save(TWINS / "rgb.webp", lossless=True)
    Image.fromarray(rgb).save(TWINS / "rgb.tiff")
    rgba = np.dstack([picture(rng, 48, 64), rng.integers(0, 256, (48, 64), dtype=np.uint8)])
    Image.fromarray(rgba, "RGBA").save(IMAGES / "circles" / "rgba.png")
    Image.fromarray(rgba, "RGBA").save(TWINS / "rgba.webp", lossless=True, exact=True)
    Image.fromarray(rgba, "RGBA").save(TWINS / "rgba.tiff")
    Image.fromarray(picture(rng, 9, 9)).quantize(12).save(IMAGES / "circles" / "palette.png",
                                                          transparency=3)
    gray = picture(rng, 31, 100)[:, :, 0]
    Image.fromarray(gray).save(IMAGES / "circles" / "more" / "gray.png")
    Image.fromarray(gray).save(TWINS / "gray.tiff")
    Image.fromarray(picture(rng, 21, 33)[:, :, :2], "LA").save(IMAGES / "circles" / "la.png")
    wide = picture(rng, 20, 12)[:, :, 0].astype(np.uint16) * 257 + rng.integers(0, 256, (20, 12))
    Image.fromarray(wide.astype(np.uint16)).save(IMAGES / "circles" / "gray16.png")
    Image.fromarray(picture(rng, 18, 30)).save(
        IMAGES / "circles" / "gamma.png", pnginfo=png_info(b"gAMA", (45455).to_bytes(4, "big")))

    photo = picture(rng, 48, 64)
    Image.fromarray(photo).save(IMAGES / "squares" / "photo420.jpg", quality=85)
    Image.fromarray(picture(rng, 17, 40)).save(IMAGES / "squares" / "photo422.jpg", quality=85,
                                               subsampling=1)
    Image.fromarray(picture(rng, 9, 9)).save(IMAGES / "squares" / "photo444.jpg", quality=90,
                                             subsampling=0)
    Image.fromarray(picture(rng, 31, 100)[:, :, 1]).save(IMAGES / "squares" / "gray.jpg",
                                                         quality=85)
    Image.fromarray(picture(rng, 23, 29)).save(IMAGES / "squares" / "progressive.jpg",
                                               quality=80, progressive=True)
    Image.fromarray(picture(rng, 13, 21)).save(IMAGES / "squares" / "bitmap.bmp")
    Image.fromarray(picture(rng, 6, 4)).save(IMAGES / "squares" / ".hidden.png")
    (IMAGES / "squares" / "notes.txt").write_text("not an image\n")

    frames = [Image.fromarray(picture(rng, 17, 40)).quantize(16) for _ in range(2)]
    frames[0].save(IMAGES / "stripes" / "animated.gif", save_all=True,
                   append_images=frames[1:], duration=100, loop=0, transparency=2)
    Image.fromarray(picture(rng, 3, 5)).save(IMAGES / "stripes" / "tiny.png")
    Image.fromarray(picture(rng, 40, 17)).save(
        IMAGES / "stripes" / "srgb.png", pnginfo=png_info(b"sRGB", b"\x00"))
    Image.fromarray(picture(rng, 12, 12)).save(IMAGES / "loose.png")


def dataset_arrays(folder: Path, color_mode: str, interpolation: str, fit: dict,
                   labels="inferred"):
    """(images, labels, class names, file paths relative to `folder`) of Keras's dataset."""
    dataset = keras.utils.image_dataset_from_directory(
        folder, labels=labels, shuffle=False, batch_size=None, image_size=IMAGE_SIZE,
        color_mode=color_mode, interpolation=interpolation, verbose=False, **fit)
    images, targets = [], []
    for item in dataset:
        image, target = item if labels is not None else (item, None)
        images.append(np.asarray(image, dtype=np.float32))
        targets.append(target)
    paths = [Path(path).relative_to(folder).as_posix() for path in dataset.file_paths]
    label_array = None if labels is None else np.asarray(targets, dtype=np.int32)
    return np.stack(images), label_array, dataset.class_names, paths


def without(suffixes: tuple[str, ...]) -> Path:
    """A copy of the images folder leaving out files with these suffixes."""
    copy = Path(tempfile.mkdtemp()) / "images"
    shutil.copytree(IMAGES, copy, ignore=lambda _, names: [
        name for name in names if name.lower().endswith(suffixes)])
    return copy


def record() -> tuple[dict, dict]:
    """Every array Keras makes of the folder, and what reference.json says of them: the files
    of each colour mode's arrays, in row order."""
    arrays, files, refused = {}, {}, []
    _, arrays["labels"], class_names, files["rgb"] = dataset_arrays(IMAGES, "rgb", "bilinear", {})
    for interpolation in INTERPOLATIONS:
        for fit_name, fit in FITS.items():
            key = f"rgb/{interpolation}/{fit_name}"
            try:
                arrays[key], _, _, paths = dataset_arrays(IMAGES, "rgb", interpolation, fit)
            except ValueError as error:
                refused.append({"array": key, "keras": str(error).splitlines()[0]})
                continue
            assert paths == files["rgb"]
    for mode, suffixes in REFUSED.items():
        arrays[f"{mode}/bilinear/plain"], _, _, files[mode] = dataset_arrays(
            without(suffixes), mode, "bilinear", {})
    _, _, _, unlabelled = dataset_arrays(IMAGES, "rgb", "bilinear", {}, labels=None)
    return arrays, {"class_names": class_names, "files": files, "unlabelled_files": unlabelled,
                    "refused": refused}


def convnet() -> keras.Sequential:
    """A small seeded convnet on (height, width, 3) with three classes."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((*IMAGE_SIZE, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    for variable in model.weights:  # biases away from zero, so that they matter
        if "bias" in variable.path:
            variable.assign(np.linspace(-0.2, 0.2, variable.shape[0], dtype=np.float32))
    return model


def write_model(model: keras.Sequential) -> None:
    """The model imported with `seqcli import-keras` into model.yaml and its weights."""
    with tempfile.TemporaryDirectory() as scratch:
        saved = Path(scratch) / "convnet.keras"
        model.save(saved)
        for old in HERE.glob("model.*"):
            old.unlink()
        subprocess.run([str(SEQCLI), "import-keras", str(saved), "-o", str(HERE / "model.yaml")],
                       check=True)


def main() -> None:
    write_images(np.random.default_rng(20))
    arrays, described = record()
    model = convnet()
    dataset = keras.utils.image_dataset_from_directory(
        IMAGES, shuffle=False, batch_size=4, image_size=IMAGE_SIZE, verbose=False)
    arrays["predictions"] = model.predict(dataset, verbose=0).astype(np.float32)
    write_model(model)
    described.update(image_size=list(IMAGE_SIZE), keras=keras.__version__,
                     tensorflow=tf.__version__, pillow=Image.__version__)
    np.savez_compressed(HERE / "reference.npz", **arrays)
    (HERE / "reference.json").write_text(json.dumps(described, indent=1) + "\n")
    size = sum(path.stat().st_size for path in HERE.rglob("*") if path.is_file())
    print(f"{len(arrays)} arrays; the fixture holds {size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
