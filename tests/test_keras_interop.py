"""`seqcli import-keras` and `seqcli export-keras` against files Keras 3 wrote (made by
tests/keras_files/make_keras_files.py; Keras itself is not needed here), round trips, and
hostile files built in tmp_path."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqcli.config.load import load_model
from seqcli.io.weights import read_weights
from seqcli.layers.sequential import LAYER_CLASSES

FILES = Path(__file__).parent / "keras_files"
REFERENCE = Path(__file__).parent / "keras_reference"
MANIFEST = json.loads((FILES / "manifest.json").read_text())
MODELS = [entry["stem"] for entry in MANIFEST["models"]]
REFERENCE_MODELS = json.loads((REFERENCE / "manifest.json").read_text())["models"]


def _import(cli, source, out: Path):
    result = cli("import-keras", source, "-o", out)
    assert result.code == 0, result
    return result


def _semantics(path) -> tuple:
    """What a model file means: name, input shape, every layer's validated settings."""
    def dump(layers):
        rows = []
        for layer in layers:
            row = layer.model_dump(exclude={"input_shape", "dtype", "layers", "from_"})
            if layer.type == "Sequential":
                row["layers"] = dump(layer.sublayers)
            rows.append(row)
        return rows

    model = load_model(str(path))
    return model.name, model.input_shape and tuple(model.input_shape), dump(model.layers)


def _rewrite(source: Path, target: Path, config=None, weights: bytes | None = None,
             extra: dict | None = None) -> Path:
    """A copy of the .keras `source` with config.json and/or model.weights.h5 replaced."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == "config.json" and config is not None:
                data = config if isinstance(config, bytes) else json.dumps(config).encode()
            if info.filename == "model.weights.h5" and weights is not None:
                data = weights
            copy.writestr(info.filename, data)
        for name, data in (extra or {}).items():
            copy.writestr(name, data)
    return target


def _config(name: str) -> dict:
    with zipfile.ZipFile(FILES / name) as archive:
        return json.loads(archive.read("config.json"))


def _edited_weights(tmp_path: Path, edit) -> bytes:
    """nested_frozen.keras's model.weights.h5 after `edit(h5py.File)`."""
    with zipfile.ZipFile(FILES / "nested_frozen.keras") as archive:
        data = archive.read("model.weights.h5")
    path = tmp_path / "edited.h5"
    path.write_bytes(data)
    with h5py.File(path, "r+") as file:
        edit(file)
    return path.read_bytes()


# ------------------------------------------------------------------ Keras files → seqcli


@pytest.mark.parametrize("stem", MODELS)
def test_import_predicts_what_keras_predicts(cli, tmp_path, stem):
    out = tmp_path / f"{stem}.yaml"
    _import(cli, FILES / f"{stem}.keras", out)
    assert (tmp_path / f"{stem}.safetensors").is_file()
    assert yaml.safe_load(out.read_text())["weights"] == f"{stem}.safetensors"
    prediction = tmp_path / "y.npy"
    result = cli("predict", out, FILES / f"{stem}.input.npy", "-o", prediction)
    assert result.code == 0, result
    got, expected = np.load(prediction), np.load(FILES / f"{stem}.output.npy")
    assert got.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert float(np.abs(got - expected).max()) <= 2e-5 * scale


def test_fixtures_cover_every_layer_type():
    """Every layer type of the contract is in at least one Keras-made fixture."""
    found = set()

    def walk(entry):
        found.add(entry["class_name"])
        config = entry["config"] if isinstance(entry["config"], dict) else {}
        for layer in config.get("layers", []) + [config[key] for key in (
                "layer", "backward_layer") if isinstance(config.get(key), dict)]:
            walk(layer)

    for stem in MODELS:
        walk(_config(f"{stem}.keras"))
    expected = {cls.model_fields["type"].default for cls in LAYER_CLASSES}
    assert expected - found == set()
    total = sum(path.stat().st_size for path in FILES.iterdir())
    assert total < 1536 * 1024  # small fixtures: a few KB a model


def test_import_writes_explicit_names_only_non_default_keys_and_frozen_flags(cli, tmp_path):
    out = tmp_path / "m.yaml"
    _import(cli, FILES / "nested_frozen.keras", out)
    text = out.read_text()
    assert text.startswith("# Imported from nested_frozen.keras (Keras 3.15.1)")
    document = yaml.safe_load(text)
    assert document["name"] == "nested_frozen"
    assert document["input_shape"] == [6, 4]
    layers = document["layers"]
    # Keras's global-counter names are written out, even where the type's own would do
    assert [layer["name"] for layer in layers] == ["flatten_1", "dense_4", "body", "head",
                                                  "activation_1"]
    assert layers[1] == {"type": "Dense", "name": "dense_4", "units": 12,
                         "activation": "relu"}
    body, head = layers[2], layers[3]
    assert body["trainable"] is False and body["type"] == "Sequential"
    assert all("trainable" not in layer for layer in body["layers"])  # said once, on body
    assert body["layers"][1] == {"type": "BatchNormalization", "name": "batch_normalization",
                                 "center": False}
    assert body["layers"][2]["layers"][1] == {"type": "LayerNormalization",
                                              "name": "layer_normalization_2",
                                              "scale": False}
    assert "trainable" not in head
    assert head["layers"][-1] == {"type": "Dense", "name": "out", "units": 4,
                                  "trainable": False}
    assert head["layers"][0] == {"type": "Reshape", "name": "reshape", "target_shape": [2, 4]}


@pytest.mark.parametrize("entry", MANIFEST["models"], ids=MODELS)
def test_import_counts_params_as_keras(cli, tmp_path, entry):
    """Total and trainable parameter counts as Keras reported them (frozen layers, BN's
    moving statistics)."""
    out = tmp_path / "m.yaml"
    _import(cli, FILES / f"{entry['stem']}.keras", out)
    summary = json.loads(cli("summary", out, "--json").out)
    assert (summary["total_params"], summary["trainable_params"]) == (
        entry["params"], entry["trainable_params"])


def test_import_keeps_regularizers_and_constraints_and_notes_dropped_options(cli, tmp_path):
    result = _import(cli, FILES / "image_stack.keras", tmp_path / "m.yaml")
    notes = [line for line in result.err.splitlines() if "note:" in line]
    assert len(notes) == 1
    assert "kernel_initializer RandomNormal dropped" in notes[0]
    layers = yaml.safe_load((tmp_path / "m.yaml").read_text())["layers"]
    assert layers[2] == {"type": "Conv2D", "name": "stem", "filters": 8, "kernel_size": 3,
                         "strides": 2, "activation": "relu", "kernel_regularizer": {"l2": 0.01}}
    assert [layer.get("bias_constraint") for layer in layers
            if layer["type"] == "SeparableConv2D"] == [{"type": "NonNeg"}]
    assert layers[1]["padding"] == [[1, 0], [2, 1]]
    assert layers[5]["activation"] == "silu"  # Keras's swish, by its canonical name
    quiet = cli("import-keras", FILES / "image_stack.keras", "-o", tmp_path / "q.yaml", "-q")
    assert quiet.code == 0 and quiet.err == ""


def test_functional_chain_becomes_sequential(cli, tmp_path):
    out = tmp_path / "m.yaml"
    _import(cli, FILES / "functional_chain.keras", out)
    document = yaml.safe_load(out.read_text())
    assert document["name"] == "chain" and document["input_shape"] == [5]
    assert [(layer["type"], layer["name"]) for layer in document["layers"]] == [
        ("Dense", "a"), ("BatchNormalization", "norm"), ("Dense", "b"), ("Activation", "act")]


def test_unbuilt_model_imports_without_weights(cli, tmp_path):
    out = tmp_path / "m.yaml"
    result = _import(cli, FILES / "unbuilt.keras", out)
    assert "never built" in result.err
    document = yaml.safe_load(out.read_text())
    assert "weights" not in document and "input_shape" not in document
    assert not (tmp_path / "m.safetensors").exists()
    summary = json.loads(cli("summary", out, "--json", "--input-shape", "3").out)
    assert summary["total_params"] == 3 * 4 + 4 + 4 * 2 + 2


# ------------------------------------------------------------------ --weights-only


def test_weights_only_reads_keras_save_weights_by_position(cli, tmp_path):
    """Keras's model.save_weights of a reference model gives back its reference weights."""
    out = tmp_path / "w.safetensors"
    model = REFERENCE / "models" / "nested_frozen.yaml"
    result = cli("import-keras", model, "--weights-only",
                 FILES / "ref_nested_frozen.weights.h5", "-o", out)
    assert result.code == 0, result
    got = read_weights(out)
    expected = dict(np.load(REFERENCE / "weights" / "nested_frozen.npz"))
    assert list(got) == list(expected)
    for key, array in expected.items():
        assert got[key].tobytes() == array.astype(np.float32).tobytes(), key


def test_weights_only_onto_imported_model_matches_full_import(cli, tmp_path):
    model = tmp_path / "m.yaml"
    _import(cli, FILES / "nested_frozen.keras", model)
    out = tmp_path / "w.npz"
    result = cli("import-keras", model, "--weights-only", FILES / "nested_frozen.weights.h5",
                 "-o", out)
    assert result.code == 0, result
    full, only = read_weights(tmp_path / "m.safetensors"), read_weights(out)
    assert list(full) == list(only)
    assert all(np.array_equal(full[key], only[key]) for key in full)


def test_weights_only_onto_another_model_is_refused(cli, tmp_path):
    result = cli("import-keras", REFERENCE / "models" / "mobilenet_block.yaml",
                 "--weights-only", FILES / "ref_nested_frozen.weights.h5",
                 "-o", tmp_path / "w.safetensors")
    assert result.code == 65
    assert "ref_nested_frozen.weights.h5" in result.err and "conv2d" in result.err
    assert len(result.err.splitlines()) == 1
    assert not (tmp_path / "w.safetensors").exists()


def test_weights_only_needs_a_weights_file(cli, tmp_path):
    model = REFERENCE / "models" / "nested_frozen.yaml"
    result = cli("import-keras", model, "--weights-only", FILES / "nested_frozen.keras",
                 "-o", tmp_path / "w.safetensors")
    assert result.code == 2 and "without --weights-only" in result.err


# ------------------------------------------------------------------ seqcli → Keras files


def _export_reference(cli, stem: str, out: Path):
    entry = next(e for e in REFERENCE_MODELS if e["stem"] == stem)
    args = ["export-keras", REFERENCE / entry["model"], "-o", out]
    if "weights" in entry["files"]:
        args += ["--weights", REFERENCE / entry["files"]["weights"]]
    if entry["deferred"]:
        args += ["--input-shape", ",".join(map(str, entry["input_shape"]))]
    result = cli(*args)
    assert result.code == 0, result
    return entry


def _h5_tree(archive_path: Path) -> dict:
    with zipfile.ZipFile(archive_path) as archive:
        data = archive.read("model.weights.h5")
    tree = {}
    with h5py.File(io.BytesIO(data), "r") as file:
        def visit(name, item):
            if isinstance(item, h5py.Dataset):
                tree[name] = (item.shape, str(item.dtype), item[()].tobytes())
            else:
                tree[name] = dict(item.attrs)
        file.visititems(visit)
    return tree


KERAS_ONLY_DEFAULTS = {"ragged": False, "optional": False, "input_axes": None,
                       "output_axes": None, "quantization_config": None, "renorm": False,
                       "renorm_clipping": None, "renorm_momentum": 0.99, "compile_config": {},
                       "rms_scaling": False, "shared_object_id": None}


def _compare_configs(ours, theirs, path: str, problems: list):
    """Every key we write, Keras wrote with the same value; Keras's other keys are defaults."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key, value in ours.items():
            if key not in theirs:
                problems.append(f"{path}.{key}: not in Keras's file")
            elif key == "dtype" or (key == "name" and ours.get("batch_shape")):
                continue  # "float32" for the DTypePolicy dict; InputLayer names are counters
            elif key == "trainable" and "layers" in ours:
                continue  # Keras reloads a frozen nested model as trainable, its layers frozen
            else:
                _compare_configs(value, theirs[key], f"{path}.{key}", problems)
        for key, value in theirs.items():
            if key not in ours and not (key.endswith(("_regularizer", "_constraint"))
                                        and value is None) \
                    and KERAS_ONLY_DEFAULTS.get(key, "absent") != value \
                    and not (key == "shared_object_id"):
                problems.append(f"{path}.{key}: only in Keras's file, = {value!r}")
    elif isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for index, (a, b) in enumerate(zip(ours, theirs)):
            _compare_configs(a, b, f"{path}[{index}]", problems)
    elif ours != theirs:
        problems.append(f"{path}: {ours!r} here, {theirs!r} in Keras's file")


@pytest.mark.parametrize("stem", ["nested_frozen", "mobilenet_block"])
def test_export_has_keras_structure(cli, tmp_path, stem):
    """Zip members, config.json and the .h5 layout are those of Keras's own file of the
    same model (tests/keras_files/ref_<stem>.keras)."""
    out = tmp_path / f"{stem}.keras"
    _export_reference(cli, stem, out)
    keras_file = FILES / f"ref_{stem}.keras"
    with zipfile.ZipFile(out) as ours, zipfile.ZipFile(keras_file) as theirs:
        assert ours.namelist() == theirs.namelist() == ["metadata.json", "config.json",
                                                        "model.weights.h5"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in ours.infolist())
        metadata = json.loads(ours.read("metadata.json"))
        assert metadata["keras_version"].startswith("3.")
        ours_config = json.loads(ours.read("config.json"))
        theirs_config = json.loads(theirs.read("config.json"))
    problems: list[str] = []
    _compare_configs(ours_config, theirs_config, "", problems)
    assert problems == []
    assert _h5_tree(out) == _h5_tree(keras_file)


def test_export_config_shape(cli, tmp_path):
    out = tmp_path / "m.keras"
    _export_reference(cli, "nested_frozen", out)
    with zipfile.ZipFile(out) as archive:
        config = json.loads(archive.read("config.json"))
    assert config["class_name"] == "Sequential" and config["module"] == "keras"
    assert config["build_config"] == {"input_shape": [None, 16]}
    layers = config["config"]["layers"]
    assert layers[0]["class_name"] == "InputLayer"
    assert layers[0]["config"]["batch_shape"] == [None, 16]
    frozen = layers[2]
    assert frozen["class_name"] == "Sequential" and frozen["config"]["trainable"] is False
    assert all(layer["config"]["trainable"] is False for layer in frozen["config"]["layers"][1:])
    assert layers[1]["config"]["kernel_initializer"] == {
        "module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": None},
        "registered_name": None}


@pytest.mark.parametrize("entry", REFERENCE_MODELS, ids=[e["stem"] for e in REFERENCE_MODELS])
def test_round_trip_keeps_model_and_weights(cli, tmp_path, entry):
    """export → import gives the same model and bit-identical weights; a second round trip
    gives the same model file."""
    stem = entry["stem"]
    _export_reference(cli, stem, tmp_path / "a.keras")
    _import(cli, tmp_path / "a.keras", tmp_path / "a.yaml")
    name, shape, layers = _semantics(REFERENCE / entry["model"])
    assert _semantics(tmp_path / "a.yaml") == (name, tuple(entry["input_shape"]), layers)
    if "weights" in entry["files"]:
        expected = dict(np.load(REFERENCE / entry["files"]["weights"]))
        got = read_weights(tmp_path / "a.safetensors")
        assert list(got) == list(expected)
        for key, array in expected.items():
            assert got[key].tobytes() == array.astype(np.float32).tobytes(), key
    assert cli("export-keras", tmp_path / "a.yaml", "-o", tmp_path / "b.keras").code == 0
    _import(cli, tmp_path / "b.keras", tmp_path / "b.yaml")
    body = (tmp_path / "a.yaml").read_text().split("\n", 1)[1]
    assert (tmp_path / "b.yaml").read_text().split("\n", 1)[1] == body.replace(
        "weights: a.safetensors", "weights: b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


@pytest.mark.parametrize("stem", MODELS)
def test_keras_file_round_trip(cli, tmp_path, stem):
    """import → export → import of a Keras-made file: the same model file and weights."""
    _import(cli, FILES / f"{stem}.keras", tmp_path / "a.yaml")
    assert cli("export-keras", tmp_path / "a.yaml", "-o", tmp_path / "b.keras").code == 0
    _import(cli, tmp_path / "b.keras", tmp_path / "b.yaml")
    assert _semantics(tmp_path / "a.yaml") == _semantics(tmp_path / "b.yaml")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_export_without_weights_file_uses_initial_weights(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [3]\nseed: 7\nlayers:\n  - {type: Dense, units: 2}\n")
    result = cli("export-keras", model, "-o", tmp_path / "m.keras")
    assert result.code == 0, result
    assert "initial weights (seed 7)" in result.err
    init = cli("init", model, "-o", tmp_path / "w.safetensors")
    assert init.code == 0
    tree = _h5_tree(tmp_path / "m.keras")
    initial = read_weights(tmp_path / "w.safetensors")
    assert tree["layers/dense/vars/0"][2] == initial["dense/kernel"].tobytes()


def test_layer_normalization_over_unsorted_axes_uses_keras_layout(cli, tmp_path):
    """Keras sorts LayerNormalization's axes before shaping gamma: axis [2, 1] on inputs
    (6, 5, 4) gives gamma (6, 5), in Keras and in seqcli; the values go through unchanged."""
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [6, 5, 4]\nweights: w.npz\nlayers:\n"
                     "  - {type: LayerNormalization, axis: [2, 1]}\n")
    initial = {"layer_normalization/gamma": np.arange(30, dtype=np.float32).reshape(6, 5),
               "layer_normalization/beta": -np.arange(30, dtype=np.float32).reshape(6, 5)}
    np.savez(tmp_path / "w.npz", **initial)
    assert cli("export-keras", model, "-o", tmp_path / "m.keras").code == 0
    tree = _h5_tree(tmp_path / "m.keras")
    assert tree["layers/layer_normalization/vars/0"][0] == (6, 5)
    assert tree["layers/layer_normalization/vars/0"][2] == \
        initial["layer_normalization/gamma"].tobytes()
    _import(cli, tmp_path / "m.keras", tmp_path / "back.yaml")
    back = read_weights(tmp_path / "back.safetensors")
    assert back["layer_normalization/gamma"].shape == (6, 5)
    assert back["layer_normalization/gamma"].tobytes() == \
        initial["layer_normalization/gamma"].tobytes()


def test_export_refusals(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("layers:\n  - {type: Dense, units: 2}\n")
    wrong_suffix = cli("export-keras", model, "-o", tmp_path / "m.h5")
    assert wrong_suffix.code == 2 and ".keras" in wrong_suffix.err
    unbuilt = cli("export-keras", model, "-o", tmp_path / "m.keras")
    assert unbuilt.code == 2 and "--input-shape" in unbuilt.err
    assert cli("export-keras", model, "-o", tmp_path / "m.keras", "--input-shape", "4").code == 0
    unwritable = cli("export-keras", model, "-o", tmp_path / "no" / "m.keras",
                     "--input-shape", "4")
    assert unwritable.code == 73


def test_failed_export_leaves_existing_file(cli, tmp_path):
    out = tmp_path / "m.keras"
    out.write_bytes(b"previous")
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [3]\nweights: w.npz\nlayers:\n  - {type: Dense, units: 2}\n")
    np.savez(tmp_path / "w.npz", **{"dense/kernel": np.zeros((4, 2), np.float32),
                                   "dense/bias": np.zeros(2, np.float32)})
    result = cli("export-keras", model, "-o", out)
    assert result.code == 65 and "dense/kernel" in result.err
    assert out.read_bytes() == b"previous"


# ------------------------------------------------------------------ refusals


def _refused(cli, tmp_path, source, *words):
    result = cli("import-keras", source, "-o", tmp_path / "out.yaml")
    assert result.code == 65, result
    assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err
    for word in words:
        assert word in result.err, (word, result.err)
    assert not (tmp_path / "out.yaml").exists()
    assert not (tmp_path / "out.safetensors").exists()
    return result


@pytest.mark.parametrize("case, words", [
    ("lambda", ["layer 'double' (Lambda)", "Python code"]),
    ("custom", ["layer 'scale' (Scale)", "custom layer class", "my_package>Scale"]),
    ("branches", ["layer 'merge' (Add)", "takes 2 inputs", "'left', 'right'"]),
    ("channels_first", ["layer 'conv' (Conv2D)", "channels_first"]),
])
def test_keras_made_refusals(cli, tmp_path, case, words):
    _refused(cli, tmp_path, FILES / f"refuse_{case}.keras", *words)


def _edit_layer(config: dict, index: int, **changes) -> dict:
    config["config"]["layers"][index]["config"].update(changes)
    return config


@pytest.mark.parametrize("edit, words", [
    (lambda c: _edit_layer(c, 2, activity_regularizer={
        "module": "keras.regularizers", "class_name": "OrthogonalRegularizer",
        "config": {"factor": 0.01, "mode": "rows"}}),
     ["layer 'dense_4' (Dense)", "unknown regularizer 'OrthogonalRegularizer'"]),
    (lambda c: _edit_layer(c, 2, dtype={"module": "keras", "class_name": "DTypePolicy",
                                        "config": {"name": "mixed_float16"}}),
     ["dtype policy 'mixed_float16'"]),
    (lambda c: _edit_layer(c, 2, units="12"), ["units"]),
    (lambda c: _edit_layer(c, 2, lora_rank=4), ["lora_rank=4"]),
    (lambda c: _edit_layer(c, 2, activation={"module": None, "class_name": "function",
                                             "config": "my_act", "registered_name": "my_act"}),
     ["not a built-in activation"]),
    (lambda c: c["config"]["layers"][2].update(class_name="ConvLSTM2D") or c,
     ["seqcli has no ConvLSTM2D layer"]),
    (lambda c: c["config"]["layers"].append(c["config"]["layers"][0]) or c,
     ["InputLayer may only come first"]),
    (lambda c: _edit_layer(c, 1, name="a/b"), ["without '/'"]),
    (lambda c: _edit_layer(c, 2, name="flatten_1"), ["two layers are named 'flatten_1'"]),
    (lambda c: {"module": "my_models", "class_name": "MyModel", "config": {}},
     ["subclassed"]),
])
def test_config_refusals(cli, tmp_path, edit, words):
    config = edit(_config("nested_frozen.keras"))
    source = _rewrite(FILES / "nested_frozen.keras", tmp_path / "bad.keras", config=config)
    _refused(cli, tmp_path, source, "bad.keras", *words)


def test_functional_called_in_training_mode_is_refused(cli, tmp_path):
    config = _config("functional_chain.keras")
    config["config"]["layers"][2]["inbound_nodes"][0]["kwargs"] = {"training": True}
    source = _rewrite(FILES / "functional_chain.keras", tmp_path / "bad.keras", config=config)
    _refused(cli, tmp_path, source, "layer 'norm'", "training=True")


def test_oversized_and_malformed_config_json(cli, tmp_path):
    config = _config("nested_frozen.keras")
    config["padding"] = "x" * (5 * 1024 * 1024)
    big = _rewrite(FILES / "nested_frozen.keras", tmp_path / "big.keras", config=config)
    _refused(cli, tmp_path, big, "config.json declares", "limit")
    deep = _rewrite(FILES / "nested_frozen.keras", tmp_path / "deep.keras",
                    config=b"[" * 100_000 + b"]" * 100_000)
    _refused(cli, tmp_path, deep, "config.json is not valid JSON")
    text = tmp_path / "text.keras"
    text.write_text("hello")
    _refused(cli, tmp_path, text, "not a .keras file")


def test_zip_bomb_member_is_refused(cli, tmp_path):
    source = tmp_path / "bomb.keras"
    with zipfile.ZipFile(FILES / "nested_frozen.keras") as original, \
            zipfile.ZipFile(source, "w") as bomb:
        for name in ("metadata.json", "config.json"):
            bomb.writestr(name, original.read(name))
        bomb.writestr("model.weights.h5", bytes(16 * 1024 * 1024), zipfile.ZIP_DEFLATED)
    _refused(cli, tmp_path, source, "model.weights.h5 is compressed", "zip bomb")


def test_legacy_hdf5_model_is_refused(cli, tmp_path):
    legacy = tmp_path / "model.keras"
    with h5py.File(legacy, "w") as file:
        file.attrs["model_config"] = "{}"
    _refused(cli, tmp_path, legacy, "HDF5 file, not a Keras 3 .keras archive")


def _external_link(file):
    del file["layers/dense/vars/0"]
    file["layers/dense/vars/0"] = h5py.ExternalLink("/etc/secret.h5", "/kernel")


def _soft_link_group(file):
    file.move("layers/dense", "layers/moved")
    file["layers/dense"] = h5py.SoftLink("/layers/moved")


def _soft_link_dataset(file):
    del file["layers/dense/vars/0"]
    file["layers/dense/vars/0"] = h5py.SoftLink("/layers/dense/vars/1")


def _virtual_dataset(file, tmp_path=None):
    del file["layers/dense/vars/0"]
    layout = h5py.VirtualLayout(shape=(24, 12), dtype="float32")
    layout[:] = h5py.VirtualSource("other.h5", "kernel", shape=(24, 12))
    file["layers/dense/vars"].create_virtual_dataset("0", layout, fillvalue=0)


def _external_storage(file):
    del file["layers/dense/vars/0"]
    file["layers/dense/vars"].create_dataset("0", shape=(24, 12), dtype="float32",
                                             external=[("/dev/zero", 0, 24 * 12 * 4)])


def _huge_shape(file):
    del file["layers/dense/vars/0"]
    file["layers/dense/vars"].create_dataset("0", shape=(200_000, 200_000), dtype="float32",
                                             chunks=(1000, 1000), compression="gzip")


def _integer_dataset(file):
    del file["layers/dense/vars/0"]
    file["layers/dense/vars/0"] = np.zeros((24, 12), np.int64)


def _extra_variable(file):
    file["layers/dense/vars/2"] = np.zeros(3, np.float32)


def _group_cycle(file):
    file["layers/dense/loop"] = file["layers"]  # a hard link back up: a cycle


def _weights_for_another_layer(file):
    file["layers/lstm/vars/0"] = np.zeros(3, np.float32)


@pytest.mark.parametrize("edit, words", [
    (_external_link, ["layers/dense/vars/0 is an external link", "refused"]),
    (_soft_link_group, ["layers/dense is a soft link"]),
    (_soft_link_dataset, ["layers/dense/vars/0 is a soft link"]),
    (_virtual_dataset, ["virtual dataset"]),
    (_external_storage, ["external files"]),
    (_huge_shape, ["has shape (200000, 200000), seqcli expects (24, 12)"]),
    (_integer_dataset, ["dtype int64; expected float32"]),
    (_extra_variable, ["the file has 3 variables", "seqcli expects 2 (kernel, bias)"]),
    (_group_cycle, ["nested over 64 deep"]),
    (_weights_for_another_layer, ["weights for 1 layer(s) the model does not have",
                                  "layers/lstm/vars"]),
], ids=["external_link", "soft_link_group", "soft_link_dataset", "virtual_dataset",
        "external_storage", "huge_shape", "integer_dataset", "extra_variable", "group_cycle",
        "another_layer"])
def test_hostile_weights_are_refused(cli, tmp_path, edit, words):
    weights = _edited_weights(tmp_path, edit)
    source = _rewrite(FILES / "nested_frozen.keras", tmp_path / "hostile.keras", weights=weights)
    _refused(cli, tmp_path, source, "hostile.keras: model.weights.h5", *words)


def test_shape_bomb_declared_by_the_config_too_is_refused(cli, tmp_path):
    """A config asking for a huge kernel, and a dataset of that shape storing nothing."""
    config = _edit_layer(_config("nested_frozen.keras"), 2, units=2_000_000)

    def bomb(file):
        del file["layers/dense/vars/0"]
        file["layers/dense/vars"].create_dataset("0", shape=(24, 2_000_000), dtype="float32",
                                                 chunks=(24, 10_000), compression="gzip")

    source = _rewrite(FILES / "nested_frozen.keras", tmp_path / "bomb.keras", config=config,
                      weights=_edited_weights(tmp_path, bomb))
    _refused(cli, tmp_path, source, "layers/dense/vars/0 declares 192,000,000 bytes",
             "decompression bomb")


def test_optimizer_state_is_ignored(cli, tmp_path):
    def optimizer(file):
        file["optimizer/vars/0"] = np.zeros((), np.float32)
        file["optimizer/vars/1"] = np.zeros((24, 12), np.float32)

    _assert_imports_as_the_original(cli, tmp_path, optimizer)


def test_keras_2_group_names_are_read(cli, tmp_path):
    """Keras 2.13-2.15 .keras files name the layer groups `_layer_checkpoint_dependencies`."""
    def rename(file):
        paths = []
        file.visit(lambda name: paths.append(name) if name.endswith("layers") else None)
        for path in sorted(paths, key=len, reverse=True):
            head, _, _ = path.rpartition("layers")
            file.move(path, head + "_layer_checkpoint_dependencies")

    _assert_imports_as_the_original(cli, tmp_path, rename)


def _assert_imports_as_the_original(cli, tmp_path, edit) -> None:
    """nested_frozen.keras with its weights file edited imports to the very same weights."""
    source = _rewrite(FILES / "nested_frozen.keras", tmp_path / "edited.keras",
                      weights=_edited_weights(tmp_path, edit))
    _import(cli, source, tmp_path / "m.yaml")
    _import(cli, FILES / "nested_frozen.keras", tmp_path / "plain.yaml")
    assert (tmp_path / "m.safetensors").read_bytes() == \
        (tmp_path / "plain.safetensors").read_bytes()


def test_hostile_standalone_weights_file_is_refused(cli, tmp_path):
    weights = tmp_path / "w.weights.h5"
    shutil.copy(FILES / "ref_nested_frozen.weights.h5", weights)
    with h5py.File(weights, "r+") as file:
        del file["layers/dense/vars/0"]
        file["layers/dense/vars/0"] = h5py.ExternalLink("elsewhere.h5", "/x")
    result = cli("import-keras", REFERENCE / "models" / "nested_frozen.yaml", "--weights-only",
                 weights, "-o", tmp_path / "w.safetensors")
    assert result.code == 65 and "external link" in result.err
    assert not (tmp_path / "w.safetensors").exists()


def test_import_usage_and_missing_files(cli, tmp_path):
    wrong = cli("import-keras", FILES / "nested_frozen.keras", "-o", tmp_path / "m.json")
    assert wrong.code == 2 and ".yaml" in wrong.err
    missing = cli("import-keras", tmp_path / "nope.keras", "-o", tmp_path / "m.yaml")
    assert missing.code == 66 and "nope.keras" in missing.err


def test_import_replaces_outputs_atomically(cli, tmp_path):
    out = tmp_path / "m.yaml"
    out.write_text("old")
    assert cli("import-keras", FILES / "sequence_stack.keras", "-o", out, "--force").code == 0
    assert out.read_text().startswith("# Imported from sequence_stack.keras")
    before = out.read_bytes()
    _refused_result = cli("import-keras", FILES / "refuse_lambda.keras", "-o", out, "--force")
    assert _refused_result.code == 65
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "m.yaml"]


def _paths(node, path=()):
    """Every place in a JSON document, as a tuple of keys and indices."""
    yield path
    children = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else []
    for key, child in children:
        yield from _paths(child, path + (key,))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=False)
    | st.sampled_from(["", "same", "relu", "Dense", "InputLayer", "__keras_tensor__", "a/b"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["class_name", "config", "module", "name", "layers", "units"]),
        inner, max_size=3),
    max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mangled_configs_are_imported_or_refused_cleanly(cli, tmp_path, data):
    """Any edit of a real config either imports or is refused with exit 65 and one line;
    never an internal error."""
    stem = data.draw(st.sampled_from(["nested_frozen", "functional_chain"]))
    config = _config(f"{stem}.keras")
    places = [p for p in _paths(config) if p]
    place = data.draw(st.sampled_from(places))
    parent = config
    for key in place[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and data.draw(st.booleans()):
        del parent[place[-1]]
    else:
        parent[place[-1]] = data.draw(JSON_VALUES)
    source = _rewrite(FILES / f"{stem}.keras", tmp_path / "mangled.keras", config=config)
    result = cli("import-keras", source, "-o", tmp_path / "out.yaml", "--force")
    assert result.code in (0, 65), result
    if result.code == 65:
        assert len(result.err.splitlines()) == 1


def _unsupported(config: dict, index: int, class_name: str, module="keras.layers") -> dict:
    entry = config["config"]["layers"][index]
    entry.update(class_name=class_name, module=module,
                 registered_name=None if module == "keras.layers" else f"pkg>{class_name}")
    return config


def test_every_unsupported_layer_is_named_in_one_refusal(cli, tmp_path):
    """Three layers seqcli lacks (a custom class, a Lambda, a Keras layer it does not have) and
    a preprocessing layer with its advice: all in one line, without the list of seqcli's
    layers."""
    config = _config("image_stack.keras")
    _unsupported(config, 3, "MyConv", module="my_package")
    _unsupported(config, 5, "Lambda")
    _unsupported(config, 8, "ConvLSTM2D")
    _unsupported(config, 12, "StringLookup")
    source = _rewrite(FILES / "image_stack.keras", tmp_path / "bad.keras", config=config)
    result = _refused(cli, tmp_path, source, "bad.keras: 4 things seqcli cannot import",
                      "layer 'stem' (MyConv): a custom layer class",
                      "layer 'depthwise_conv2d' (Lambda)",
                      "layer 'up_sampling2d' (ConvLSTM2D): seqcli has no ConvLSTM2D layer;",
                      "seqcli has no StringLookup layer (a preprocessing step")
    assert "Dense, " not in result.err  # no list of what seqcli has


def test_an_unsupported_layer_before_another_refusal_is_named_too(cli, tmp_path):
    config = _config("image_stack.keras")
    _unsupported(config, 3, "ConvLSTM2D")
    config["config"]["layers"][10]["config"]["data_format"] = "channels_first"
    source = _rewrite(FILES / "image_stack.keras", tmp_path / "bad.keras", config=config)
    _refused(cli, tmp_path, source, "2 things seqcli cannot import",
             "seqcli has no ConvLSTM2D layer", "layer 'conv2d' (Conv2D): data_format")
