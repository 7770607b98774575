"""Images as inputs (`seqcli.io.images`): every array Keras's `image_dataset_from_directory`
made of `tests/image_reference/images` (recorded by its make_fixtures.py with TensorFlow) is
reproduced, with Keras's file order, labels and class names; WebP and TIFF read as their PNG
twins; hostile and broken files are refused with their exit codes."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from seqcli.errors import InputDataError, MissingFileError, SeqcliError, UsageError
from seqcli.io import images
from seqcli.io.image_paths import names_images
from seqcli.io.images import (
    ImageFiles,
    ImageInput,
    ImageOptions,
    ImageRows,
    image_geometry,
    list_images,
    load_image,
    load_images,
)

REFERENCE = Path(__file__).resolve().parent / "image_reference"
IMAGES = REFERENCE / "images"
RECORDED = np.load(REFERENCE / "reference.npz")
DESCRIBED = json.loads((REFERENCE / "reference.json").read_text())
HEIGHT, WIDTH = DESCRIBED["image_size"]
CHANNELS = {"rgb": 3, "grayscale": 1, "rgba": 4}
TOLERANCE = 1e-3
"""On the 0-255 scale. The worst difference is 4.6e-5 (lanczos3 and lanczos5, whose sin is
rounded differently from TensorFlow's sinf); every other array is bit-identical."""
DATASETS = sorted(key for key in RECORDED.files if key.count("/") == 2)


def options_of(key: str) -> ImageOptions:
    """The ImageOptions of a recorded array's key, `mode/interpolation/fit`."""
    _, interpolation, fit = key.split("/")
    return ImageOptions(interpolation, fit == "crop", fit == "pad")


def relative(paths: list[str], folder: Path = IMAGES) -> list[str]:
    """`paths` relative to `folder`, with forward slashes."""
    return [Path(path).relative_to(folder).as_posix() for path in paths]


# ----------------------------------------------------------------------------- Keras's arrays


@pytest.mark.parametrize("key", DATASETS)
def test_every_recorded_array_is_reproduced(key):
    mode = key.split("/")[0]
    files = DESCRIBED["files"][mode]
    expected = RECORDED[key]
    assert expected.shape == (len(files), HEIGHT, WIDTH, CHANNELS[mode])
    got = np.stack([load_image(str(IMAGES / name), expected.shape[1:], options_of(key))
                    for name in files])
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() <= TOLERANCE


def test_keras_refuses_crop_with_gaussian_and_mitchellcubic_and_so_does_seqcli():
    assert {entry["array"] for entry in DESCRIBED["refused"]} == {
        "rgb/gaussian/crop", "rgb/mitchellcubic/crop"}
    for interpolation in ("gaussian", "mitchellcubic"):
        with pytest.raises(UsageError, match="crop_to_aspect_ratio resizes with"):
            ImageOptions(interpolation, crop_to_aspect_ratio=True)


def test_image_input_reads_the_folder_as_keras_batches_it():
    files = list_images([str(IMAGES)], labelled=True)
    data = ImageInput(files, (HEIGHT, WIDTH, 3), ImageOptions())
    assert data.shape == (len(DESCRIBED["files"]["rgb"]), HEIGHT, WIDTH, 3)
    assert data.dtype == np.float32 and data.source == str(IMAGES)
    with data:
        batches = list(data.batches(4))
    assert [len(batch) for batch in batches] == [4, 4, 4, 4, 1]
    assert np.abs(np.concatenate(batches) - RECORDED["rgb/bilinear/plain"]).max() <= TOLERANCE
    assert np.array_equal(data.read_rows(5, 9), np.concatenate(batches)[5:9])


def test_grayscale_without_a_channel_axis_is_the_one_channel_array():
    name = DESCRIBED["files"]["grayscale"][0]
    flat = load_image(str(IMAGES / name), (HEIGHT, WIDTH), ImageOptions())
    assert flat.shape == (HEIGHT, WIDTH)
    assert np.array_equal(flat, RECORDED["grayscale/bilinear/plain"][0, :, :, 0])


def test_load_images_stacks_them_all():
    files = list_images([str(IMAGES)], labelled=True)
    stacked = load_images(files, (HEIGHT, WIDTH, 3), ImageOptions("area"))
    assert np.abs(stacked - RECORDED["rgb/area/plain"]).max() <= TOLERANCE


# ----------------------------------------------------------------------------- which files


def test_class_folders_give_keras_order_labels_and_class_names():
    files = list_images([str(IMAGES)], labelled=True)
    assert relative(files.paths) == DESCRIBED["files"]["rgb"]
    assert files.labels.dtype == np.int32
    assert files.labels.tolist() == RECORDED["labels"].tolist()
    assert files.class_names == DESCRIBED["class_names"] == ["circles", "squares", "stripes"]
    assert "loose.png" not in relative(files.paths)  # beside the classes: ignored, as Keras
    assert "squares/notes.txt" not in relative(files.paths)


def test_an_unlabelled_folder_is_keras_labels_none_walk():
    files = list_images([str(IMAGES)])
    assert relative(files.paths) == DESCRIBED["unlabelled_files"]
    assert files.labels is None and files.class_names is None
    assert files.source == str(IMAGES)


def test_files_and_globs_are_taken_in_sorted_order():
    named = [str(IMAGES / "stripes" / "tiny.png"), str(IMAGES / "circles" / "rgb.png")]
    files = list_images(named)
    assert relative(files.paths) == ["circles/rgb.png", "stripes/tiny.png"]
    assert files.source == "2 images"
    globbed = list_images([str(IMAGES / "squares" / "*")])  # notes.txt is left out
    assert relative(globbed.paths) == ["squares/bitmap.bmp", "squares/gray.jpg",
                                       "squares/photo420.jpg", "squares/photo422.jpg",
                                       "squares/photo444.jpg", "squares/progressive.jpg"]


def test_a_folder_takes_its_place_among_files(tmp_path):
    for name in ("b/2.png", "b/1.png", "a.png", "c.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    files = list_images([str(tmp_path / "c.png"), str(tmp_path / "b"), str(tmp_path / "a.png")])
    assert relative(files.paths, tmp_path) == ["a.png", "b/1.png", "b/2.png", "c.png"]


def test_a_walk_is_sorted_by_folder_path_as_keras_sorts_it(tmp_path):
    for name in ("b/sub/3.png", "b-x/2.png", "b/1.png", "c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    # iter_valid_files sorts (root, files) by root: "b-x" < "b/sub" as "-" < "/"
    assert relative(list_images([str(tmp_path)]).paths, tmp_path) == [
        "c.png", "b/1.png", "b-x/2.png", "b/sub/3.png"]


def test_links_to_folders_are_not_followed_and_suffixes_are_any_case(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.png").write_bytes(b"")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "data" / "UPPER.JPG").write_bytes(b"")
    assert relative(list_images([str(tmp_path / "data")]).paths, tmp_path) == ["data/UPPER.JPG"]


@pytest.mark.parametrize("given, expected", [
    (["IMAGES"], True), (["IMAGES/circles/rgb.png"], True), (["photo.PNG"], True),
    (["x.npy"], False), (["x.npy", "a.tiff"], True), (["IMAGES/*/*.png"], True),
    (["IMAGES/squares/*"], True), (["IMAGES/*/no-such-*"], False), (["store.zarr"], False),
])
def test_names_images(given, expected):
    assert names_images([path.replace("IMAGES", str(IMAGES)) for path in given]) is expected


def test_a_zarr_folder_and_a_glob_of_arrays_are_not_images(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "zarr.json").write_text("{}")
    (tmp_path / "a.npy").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"")
    assert not names_images([str(tmp_path / "plain")])
    assert not names_images([str(tmp_path / "*")])  # a.npy sorts first


# ----------------------------------------------------------------------------- refusals


def test_a_missing_path_is_exit_66(tmp_path):
    with pytest.raises(MissingFileError, match="no such file or folder") as raised:
        list_images([str(tmp_path / "gone.png")])
    assert raised.value.exit_code == 66
    with pytest.raises(MissingFileError, match="no such folder"):
        list_images([str(tmp_path / "gone")], labelled=True)


def test_a_folder_without_images_names_the_suffixes_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputDataError, match=r"no image files there; looked for \.bmp, \.gif"):
        list_images([str(tmp_path)])
    with pytest.raises(InputDataError, match="no image file matches this pattern"):
        list_images([str(tmp_path / "*.txt")])


def test_a_file_named_as_no_image_is_refused(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"")
    with pytest.raises(InputDataError, match="x.npy: not an image file name") as raised:
        list_images([str(tmp_path / "x.npy")])
    assert raised.value.exit_code == 65


def test_labelled_images_need_one_folder_of_class_folders(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(InputDataError, match="no class subfolders"):
        list_images([str(tmp_path)], labelled=True)
    with pytest.raises(UsageError, match="one folder whose subfolders are the classes"):
        list_images([str(tmp_path / "a.png")], labelled=True)
    (tmp_path / "cats").mkdir()
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "b.png").write_bytes(b"")  # a hidden folder is no class
    with pytest.raises(InputDataError, match=r"no image files in its class subfolders \(cats\)"):
        list_images([str(tmp_path)], labelled=True)


def test_an_empty_class_folder_is_a_class(tmp_path):
    for name in ("a/1.png", "c/2.png"):
        (tmp_path / name).parent.mkdir()
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "b").mkdir()
    files = list_images([str(tmp_path)], labelled=True)
    assert files.class_names == ["a", "b", "c"] and files.labels.tolist() == [0, 2]


def test_more_files_than_the_limit_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_FILES", 3)
    for index in range(4):
        (tmp_path / f"{index}.png").write_bytes(b"")
    with pytest.raises(InputDataError, match="more than 3 image files"):
        list_images([str(tmp_path)])


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk with its CRC."""
    return (len(data).to_bytes(4, "big") + kind + data
            + zlib.crc32(kind + data).to_bytes(4, "big"))


def decoded(path: Path, channels: int = 3) -> np.ndarray:
    """`path` loaded at the reference size."""
    return load_image(str(path), (HEIGHT, WIDTH, channels), ImageOptions())


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    header = (100_000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b""))
    with pytest.raises(InputDataError, match=r"bomb.png: refused as a likely decompression bomb: "
                                             r".*10000000000 pixels") as raised:
        decoded(bomb)
    assert raised.value.exit_code == 65


def test_an_image_of_zero_pixels_is_refused(tmp_path):
    header = (0).to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b""))
    with pytest.raises(InputDataError, match="empty.png: not an image: it starts as a PNG"):
        decoded(empty)


def test_an_image_just_above_pillows_limit_is_refused_too(tmp_path, monkeypatch):
    import PIL.Image

    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)  # 17 x 40 is between 1x and 2x
    with pytest.raises(InputDataError, match="refused as a likely decompression bomb: .*680 pix"):
        decoded(IMAGES / "circles" / "rgb.png")


def test_a_truncated_image_is_refused_not_half_decoded(tmp_path):
    whole = (IMAGES / "circles" / "rgba.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(InputDataError, match="cut.png: cannot decode this image"):
        decoded(tmp_path / "cut.png")
    jpeg = (IMAGES / "squares" / "photo420.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    with pytest.raises(InputDataError, match="cut.jpg: cannot decode this image"):
        decoded(tmp_path / "cut.jpg")


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"), (b"hello, world\n", "it is text"),
    (b"\x93NUMPY\x01\x00", "it is a .npy array"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "it starts as a PNG image but is not a valid one"),
    (bytes(range(256)), "it is not a PNG, JPEG, GIF, BMP, WebP or TIFF image"),
])
def test_a_file_that_is_no_image_says_what_it_is(tmp_path, content, message):
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(InputDataError, match=f"x.png: not an image: {message}"):
        decoded(tmp_path / "x.png")


def test_formats_pillow_could_read_but_seqcli_does_not_are_no_images(tmp_path):
    import PIL.Image

    PIL.Image.new("RGB", (4, 4)).save(tmp_path / "x.png", format="PPM")
    with pytest.raises(InputDataError, match="not an image"):
        decoded(tmp_path / "x.png")


def test_a_fifo_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(InputDataError, match="pipe.png: not a regular file but a FIFO"):
        decoded(tmp_path / "pipe.png")
    with pytest.raises(InputDataError, match="not a regular file but a folder"):
        decoded(tmp_path)


def test_an_unreadable_file_is_exit_66(tmp_path, monkeypatch):
    (tmp_path / "locked.png").write_bytes(b"")
    real_open = os.open

    def refused(path, *args, **kwargs):
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refused)
    with pytest.raises(MissingFileError, match="locked.png: cannot read it: permission denied"):
        decoded(tmp_path / "locked.png")
    with pytest.raises(MissingFileError, match="gone.png: no such file"):
        decoded(tmp_path / "gone.png")


def test_padding_an_image_to_nothing_is_refused(tmp_path):
    import PIL.Image

    PIL.Image.new("RGB", (200, 1)).save(tmp_path / "line.png")
    with pytest.raises(InputDataError, match="a 200x1 image shrinks to nothing"):
        load_image(str(tmp_path / "line.png"), (HEIGHT, WIDTH, 3),
                   ImageOptions(pad_to_aspect_ratio=True))


@pytest.mark.parametrize("shape, message", [
    ((None, None, 3), "height or width is open"), ((784,), "feed it a .npy array"),
    ((10, 10, 2), "not 2"), ((4, 10, 10, 3), "feed it a .npy array"),
])
def test_image_geometry_refuses_shapes_images_cannot_fill(shape, message):
    with pytest.raises(InputDataError, match=message) as raised:
        image_geometry(shape)
    assert "the model takes inputs of shape" in str(raised.value)


def test_image_geometry_of_image_shapes():
    assert image_geometry((28, 28)) == (28, 28, 1)
    assert image_geometry((180, 160, 3)) == (180, 160, 3)
    assert image_geometry([10, 8, 4]) == (10, 8, 4)


def test_image_options_refuse_what_keras_refuses():
    with pytest.raises(UsageError, match="only one of crop_to_aspect_ratio"):
        ImageOptions(crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)
    with pytest.raises(UsageError, match="interpolation must be one of bilinear"):
        ImageOptions("cubic")


def test_load_images_refuses_more_than_the_memory_left(monkeypatch):
    monkeypatch.setattr("seqcli.io.memory.available_memory", lambda: 1000)
    files = list_images([str(IMAGES)], labelled=True)
    with pytest.raises(SeqcliError, match=r"17 images of shape \(10, 8, 3\) take 15.94 KB") \
            as raised:
        load_images(files, (HEIGHT, WIDTH, 3), ImageOptions())
    assert raised.value.exit_code == 1


def test_batches_refuse_a_bad_batch_size():
    data = ImageInput(ImageFiles([str(IMAGES / "loose.png")]), (HEIGHT, WIDTH, 3),
                      ImageOptions())
    assert data.source == str(IMAGES / "loose.png")
    with pytest.raises(UsageError, match="batch size must be a positive integer"):
        data.batches(0)


# ----------------------------------------------------------------------------- WebP, TIFF, rows


@pytest.mark.parametrize("twin, original, channels", [
    ("rgb.webp", "circles/rgb.png", 3), ("rgb.tiff", "circles/rgb.png", 3),
    ("rgba.webp", "circles/rgba.png", 4), ("rgba.tiff", "circles/rgba.png", 4),
    ("rgba.webp", "circles/rgba.png", 3), ("gray.tiff", "circles/more/gray.png", 1),
    ("gray.tiff", "circles/more/gray.png", 3),
])
def test_webp_and_tiff_read_as_their_png_twins(twin, original, channels):
    assert np.array_equal(decoded(REFERENCE / "twins" / twin, channels),
                          decoded(IMAGES / original, channels))


def test_image_rows_pickle_and_read_the_same_rows_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(REFERENCE)
    names = [f"images/{name}" for name in DESCRIBED["files"]["rgb"]]
    rows = ImageRows(names, (HEIGHT, WIDTH, 3), ImageOptions("bicubic"))
    copy = pickle.loads(pickle.dumps(rows))
    monkeypatch.chdir(tmp_path)  # a worker elsewhere: relative paths from the run's folder
    assert copy.read(3, 7).shape == (4, HEIGHT, WIDTH, 3)
    assert np.array_equal(copy.read(3, 7), RECORDED["rgb/bicubic/plain"][3:7])
    assert copy.read(5, 5).shape == (0, HEIGHT, WIDTH, 3)


def test_importing_the_module_imports_no_pillow():
    code = "import sys, seqcli.io.images; print('PIL' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_without_pillow_reading_images_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(SeqcliError, match=r"reading images needs the 'Pillow' package, which "
                                          r"is not installed: pip install 'seqcli\[images\]'") \
            as raised:
        decoded(IMAGES / "loose.png")
    assert raised.value.exit_code == 1


@pytest.mark.parametrize("subsampling, mode", [(2, "RGB"), (1, "RGB"), (0, "RGB"), (2, "L")])
def test_large_images_are_read_in_strips_with_the_same_pixels(tmp_path, monkeypatch,
                                                              subsampling, mode):
    """A large image is copied out of Pillow, upsampled and converted strip by strip (each
    strip reading a sample row of its neighbours): the pixels equal those of one pass over
    the whole image, whatever the strip height, odd heights and 4:2:0 / 4:2:2 chroma too."""
    from PIL import Image

    rng = np.random.default_rng(9)
    smooth = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).resize(
        (403, 301), Image.BILINEAR)
    noisy = np.asarray(smooth) // 2 + rng.integers(0, 60, (301, 403, 3), dtype=np.uint8)
    picture = Image.fromarray(noisy).convert(mode)
    picture.save(tmp_path / "p.jpg", quality=85, subsampling=subsampling)
    picture.save(tmp_path / "p.png")
    for name in ("p.jpg", "p.png"):
        monkeypatch.setattr(images, "STRIP_PIXELS", 1 << 40)
        whole = images.decode_image(str(tmp_path / name), 3)
        for strip in (403, 403 * 3, 5000, 403 * 64):
            monkeypatch.setattr(images, "STRIP_PIXELS", strip)
            assert np.array_equal(images.decode_image(str(tmp_path / name), 3), whole), strip


def test_a_grayscale_image_in_rgb_is_resized_once_and_repeated(tmp_path):
    from PIL import Image

    gray = np.random.default_rng(2).integers(0, 256, (37, 23), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    options = images.ImageOptions("bicubic")
    one = images.load_image(str(tmp_path / "g.png"), (9, 14, 1), options)
    three = images.load_image(str(tmp_path / "g.png"), (9, 14, 3), options)
    assert np.array_equal(three, np.repeat(one, 3, axis=-1))
    assert np.array_equal(images.decode_image(str(tmp_path / "g.png"), 3),
                          np.repeat(gray[:, :, None], 3, axis=-1))


@pytest.mark.parametrize("kind, channels", [("gif", 3), ("gray16", 3), ("gray16", 4),
                                            ("rgba", 1), ("palette", 4), ("srgb", 1)])
def test_conversions_by_strips_equal_one_pass(tmp_path, monkeypatch, kind, channels):
    """Conversions of a large image (GIF transparency, 16-bit gray, libpng's colour to gray,
    palettes) made strip by strip give the pixels of one pass over the whole image."""
    from PIL import Image

    rng = np.random.default_rng(11)
    rgb = rng.integers(0, 256, (157, 211, 3), dtype=np.uint8)
    path = tmp_path / ("p.gif" if kind == "gif" else "p.png")
    if kind == "gif":
        frame = Image.fromarray(rgb).quantize(16)
        frame.save(path, transparency=3)
    elif kind == "gray16":
        samples = rng.integers(0, 65536, (157, 211)).astype(np.uint16)
        Image.fromarray(samples).save(path, transparency=int(samples[5, 5]))
    elif kind == "rgba":
        Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])).save(path)
    elif kind == "palette":
        Image.fromarray(rgb).quantize(32).save(path, transparency=7)
    else:
        Image.fromarray(rgb).save(path, gamma=0.45455)
    monkeypatch.setattr(images, "STRIP_PIXELS", 1 << 40)
    whole = images.decode_image(str(path), channels)
    for strip in (211, 211 * 5, 3000):
        monkeypatch.setattr(images, "STRIP_PIXELS", strip)
        assert np.array_equal(images.decode_image(str(path), channels), whole), strip


def test_a_glob_of_folders_reads_each_folders_images_in_turn(tmp_path):
    """`photos/*` matching folders (and files) takes each folder's images in its place, in
    sorted order of the matches."""
    from PIL import Image

    for folder, names in (("b", ["2.png", "1.png"]), ("a", ["x.jpg"]), ("c", [])):
        (tmp_path / "photos" / folder).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (4, 4)).save(tmp_path / "photos" / folder / name)
    Image.new("RGB", (4, 4)).save(tmp_path / "photos" / "loose.png")
    (tmp_path / "photos" / "notes.txt").write_text("no picture\n")
    pattern = str(tmp_path / "photos" / "*")
    assert names_images([pattern])
    found = images.list_images([pattern]).paths
    assert [os.path.relpath(path, tmp_path / "photos") for path in found] == [
        "a/x.jpg", "b/1.png", "b/2.png", "loose.png"]
