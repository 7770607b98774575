"""Images as INPUT and X through the commands, against what Keras recorded
(tests/image_reference/make_fixtures.py): the same files through
`keras.utils.image_dataset_from_directory` and the same model's `predict`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent / "image_reference"
IMAGES = HERE / "images"
MODEL = HERE / "model.yaml"
SETTINGS = json.loads((HERE / "reference.json").read_text())


@pytest.fixture(scope="module")
def recorded():
    with np.load(HERE / "reference.npz") as reference:
        return {name: reference[name] for name in reference.files}


def test_an_image_folder_predicts_what_keras_predicts(cli, tmp_path, recorded):
    """The folder (a loose image, then the class folders in Keras's walk order) through
    `predict` gives Keras's predictions of image_dataset_from_directory's batches."""
    out = tmp_path / "p.npy"
    result = cli("predict", MODEL, IMAGES, "-o", out, "-q", "--batch-size", "5")
    assert result.code == 0, result
    got = np.load(out)
    assert SETTINGS["unlabelled_files"][0] == "loose.png"
    assert SETTINGS["unlabelled_files"][1:] == SETTINGS["files"]["rgb"]
    assert got.shape == (18, 3)
    np.testing.assert_allclose(got[1:], recorded["predictions"], rtol=0, atol=2e-6)


def test_ranked_lines_start_with_each_files_path(cli, recorded):
    result = cli("predict", MODEL, IMAGES / "circles", IMAGES / "stripes" / "*.png", "--top-k",
                 "2", "-q")
    assert result.code == 0, result
    lines = result.out.splitlines()
    files = [name for name in SETTINGS["files"]["rgb"]
             if name.startswith("circles/") or (name.startswith("stripes/")
                                                and name.endswith(".png"))]
    assert [line.split("\t")[0] for line in lines] == [str(IMAGES / name) for name in files]
    order = [SETTINGS["files"]["rgb"].index(name) for name in files]
    expected = recorded["predictions"][order]
    for line, row in zip(lines, expected):
        first, second = (pair.split(":") for pair in line.split("\t")[1].split())
        assert int(first[0]) == int(np.argmax(row))
        assert float(first[1]) == pytest.approx(float(row.max()), abs=2e-6)
        assert int(second[0]) == int(np.argsort(-row, kind="stable")[1])


def test_evaluate_on_class_folders_labels_as_keras(cli, tmp_path, recorded):
    """Loss and accuracy of the class folders, labelled as Keras labels them, computed here
    from Keras's own predictions and labels."""
    names = tmp_path / "classes.txt"
    result = cli("evaluate", MODEL, IMAGES, "--loss", "sparse_categorical_crossentropy",
                 "--json", "-q", "--class-names", names)
    assert result.code == 0, result
    labels, predictions = recorded["labels"], recorded["predictions"].astype(np.float64)
    assert names.read_text().splitlines() == SETTINGS["class_names"]
    got = json.loads(result.out)
    loss = -np.log(predictions[np.arange(len(labels)), labels]).mean()
    assert got["loss"] == pytest.approx(loss, abs=1e-5)
    assert got["accuracy"] == pytest.approx(float((predictions.argmax(1) == labels).mean()))
    categorical = cli("evaluate", MODEL, IMAGES, "--loss", "categorical_crossentropy", "--json",
                      "-q")
    assert json.loads(categorical.out)["loss"] == pytest.approx(loss, abs=1e-5)


@pytest.mark.parametrize("split", [0.0, 0.25])
def test_fit_on_class_folders_is_fit_on_the_same_arrays(cli, tmp_path, recorded, split):
    """A class folder trains exactly as Keras's decoded arrays and labels do as .npy files;
    with a validation split, in the order RandomState(seed) shuffles Keras's file list."""
    x, y = recorded["rgb/bilinear/plain"], recorded["labels"].astype(np.int64)
    if split:
        order = np.random.RandomState(3).permutation(len(x))
        x, y = x[order], y[order]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    common = ["--loss", "sparse_categorical_crossentropy", "--optimizer", "adam", "--epochs",
              "2", "--batch-size", "4", "--seed", "3", "-q", "--validation-split", str(split)]
    from_folder = cli("fit", MODEL, IMAGES, "-o", tmp_path / "a.npz", *common,
                      "--history", tmp_path / "a.json")
    assert from_folder.code == 0, from_folder
    from_arrays = cli("fit", MODEL, tmp_path / "x.npy", tmp_path / "y.npy", "-o",
                      tmp_path / "b.npz", *common, "--history", tmp_path / "b.json")
    assert from_arrays.code == 0, from_arrays
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-6, err_msg=key)
    history = json.loads((tmp_path / "a.json").read_text())
    assert ("val_loss" in history) == bool(split)


@pytest.mark.parametrize("interpolation, aspect", [
    ("nearest", "crop"), ("bicubic", "pad"), ("area", "plain"), ("lanczos3", "crop"),
    ("mitchellcubic", "plain"),
])
def test_resize_options_reach_the_model(cli, tmp_path, recorded, interpolation, aspect):
    """The model's first layer (Rescaling 1/255) sees Keras's resized pixels."""
    out = tmp_path / "r.npy"
    options = {"crop": ["--crop-to-aspect-ratio"], "pad": ["--pad-to-aspect-ratio"],
               "plain": []}[aspect]
    result = cli("extract", MODEL, IMAGES, "--layer", "rescaling", "--interpolation",
                 interpolation, *options, "-o", out, "-q")
    assert result.code == 0, result
    np.testing.assert_allclose(np.load(out)[1:] * 255,  # [0]: loose.png, in no class
                               recorded[f"rgb/{interpolation}/{aspect}"], rtol=0, atol=2e-3)


def test_validation_images_beside_array_training_data(cli, tmp_path, recorded):
    """X a .npy, XV a folder of images with YV: the validation loss is the one the same
    pixels give as a .npy."""
    x, y = recorded["rgb/bilinear/plain"], recorded["labels"].astype(np.int64)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    circles = [i for i, name in enumerate(SETTINGS["files"]["rgb"]) if name.startswith("circles/")]
    np.save(tmp_path / "xv.npy", x[circles])
    np.save(tmp_path / "yv.npy", y[circles])
    histories = []
    for validation in (IMAGES / "circles", tmp_path / "xv.npy"):
        history = tmp_path / f"h{len(histories)}.json"
        result = cli("fit", MODEL, tmp_path / "x.npy", tmp_path / "y.npy", "-o",
                     tmp_path / f"w{len(histories)}.npz", "--validation-data", validation,
                     tmp_path / "yv.npy", "--loss", "sparse_categorical_crossentropy",
                     "--no-shuffle", "--history", history, "-q")
        assert result.code == 0, result
        histories.append(json.loads(history.read_text()))
    assert histories[0]["val_loss"] == pytest.approx(histories[1]["val_loss"], abs=1e-6)
