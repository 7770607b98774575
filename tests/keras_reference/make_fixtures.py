"""Generate the Keras 3 reference fixtures used by seqcli's tests.

Run it from a Python environment that has keras (3.x), jax, numpy and pyyaml, from the
repository root:

    KERAS_BACKEND=jax python tests/keras_reference/make_fixtures.py

It reads every `tests/keras_reference/models/*.yaml` (model files in seqcli's format, see
the contract), builds the same model with real Keras, gives it deterministic non-trivial
weights and writes, for each stem:

    weights/<stem>.npz            every weight, keyed `<layer path>/<weight name>`, float32
    inputs/<stem>.npy             float32 inputs of shape (3, *input_shape)
    expected/<stem>.summary.json  names, types, output shapes and parameter counts
    expected/<stem>.output.npy    model.predict(inputs) (inference mode), float32

plus `manifest.json` (stems, flags, Keras/JAX/NumPy versions). Models listed in
SUMMARY_ONLY get only the summary. Everything is seeded from the stem, so reruns give the
same files (up to floating point noise of the backend).

seqcli itself never depends on Keras: the tests only read the files written here, and
this script is not run by the tests. Rerun it after adding or changing a model file and
commit its outputs.
"""

from __future__ import annotations

import json
import os
import re
import sys
import zlib
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

HERE = Path(__file__).resolve().parent
MODELS = HERE / "models"
BATCH = 3

# Models whose input is too big to keep inputs/outputs/weights for: summary only.
SUMMARY_ONLY = {"guide_convnet", "random_crop"}

# Per-model generation options (none of this is in the YAML, which stays a plain model file).
#   input:  "normal" (standard normal times `scale`) or "pixels" (uniform in [0, 255])
#   gain:   multiplies the default weight scale 1/sqrt(fan_in), to push pre-activations
#           into the interesting ranges of saturating activations
#   deferred_input_shape: the per-sample shape for models that have no input shape
OPTIONS = {
    "dense_activations_a": {"gain": 2.0, "scale": 2.0},
    "dense_activations_b": {"gain": 1.6, "scale": 2.0},
    "activation_layers_a": {"gain": 2.0, "scale": 2.0},
    "activation_layers_b": {"gain": 1.6, "scale": 2.0},
    "gelu_exact": {"gain": 1.5, "scale": 1.5},
    "rescaling": {"input": "pixels"},
    "small_convnet": {"input": "pixels"},
    "shape_preprocessing_head": {"input": "pixels"},
    "deferred_build": {"deferred_input_shape": [6]},
    "augmentation_layers": {"input": "pixels"},
    "augmentation_tutorial": {"input": "pixels"},
    "image_classification_tutorial": {"input": "pixels"},
}

# Flags copied into manifest.json for the tests to read.
NOTES = {
    "depthwise_stride_dilation": {
        "strides_with_dilation": True,
        "note": "Keras 3.15 accepts strides > 1 together with dilation_rate > 1 in "
        "DepthwiseConv2D and SeparableConv2D (on every backend; the TensorFlow backend "
        "emulates it), while Conv1D/Conv2D refuse that combination.",
    },
}

SHAPE_KEYS = {"kernel_size", "strides", "dilation_rate", "pool_size", "size", "target_shape",
              "padding", "axis", "shape", "input_shape"}

# Strings a YAML 1.1 loader and a YAML 1.2 core-schema loader could read differently.
_AMBIGUOUS = re.compile(r"^([-+]?(\d[\d_]*)?\.?\d*([eE][-+]?\d+)?|yes|no|on|off|y|n)$", re.I)


def snake_case(name: str) -> str:
    """Keras's snake_case of a class name (Conv2D -> conv2d, MaxPooling2D -> max_pooling2d)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _check_scalars(value, where):
    if isinstance(value, dict):
        for k, v in value.items():
            _check_scalars(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_scalars(v, f"{where}[{i}]")
    elif isinstance(value, str) and value and _AMBIGUOUS.match(value):
        raise SystemExit(f"{where}: {value!r} reads differently in YAML 1.1 and 1.2")


class Builder:
    """Builds Keras layers from the YAML entries, naming them by the contract's rule."""

    def __init__(self):
        self.frozen = []  # layers to freeze once the whole model is built

    def layers(self, entries):
        counters = {}
        out = []
        for entry in entries:
            out.append(self.layer(dict(entry), counters))
        return out

    def layer(self, spec, counters):
        kind = spec.pop("type")
        name = spec.pop("name", None)
        if name is None:
            base = snake_case(kind)
            n = counters.get(base, 0)
            counters[base] = n + 1
            name = base if n == 0 else f"{base}_{n}"
        trainable = spec.pop("trainable", True)
        if kind == "Sequential":
            inner = self.layers(spec.pop("layers"))
            if spec:
                raise SystemExit(f"unsupported keys on Sequential {name}: {sorted(spec)}")
            layer = keras.Sequential(inner, name=name)
        elif kind in WRAPPERS:  # the wrapped layers, named as the contract says
            wrapped = {key: self.layer(dict(spec.pop(key)), {}) for key in WRAPPED
                       if spec.get(key) is not None}
            layer = getattr(keras.layers, kind)(name=name, **wrapped, **spec)
        else:
            kwargs = {k: (_tuples(v) if k in SHAPE_KEYS else v) for k, v in spec.items()}
            if isinstance(kwargs.get("activation"), dict):  # an activation layer
                options = dict(kwargs["activation"])
                kwargs["activation"] = getattr(keras.layers, options.pop("type"))(**options)
            layer = getattr(keras.layers, kind)(name=name, **kwargs)
        if not trainable:
            self.frozen.append(layer)
        return layer


WRAPPERS = ("Bidirectional", "TimeDistributed")
WRAPPED = ("layer", "backward_layer")


def build_model(doc):
    """The Keras model for a parsed model file, and its per-sample input shape (or None)."""
    entries = [dict(e) for e in doc["layers"]]
    input_shape = doc.get("input_shape")
    if entries and entries[0]["type"] == "Input":
        input_shape = entries.pop(0)["shape"]
    elif entries and "input_shape" in entries[0]:
        input_shape = entries[0].pop("input_shape")
    builder = Builder()
    layers = builder.layers(entries)
    stack = ([keras.Input(shape=tuple(input_shape))] if input_shape is not None else []) + layers
    model = keras.Sequential(stack, name=doc.get("name", "sequential"))
    return model, builder, input_shape


def iter_leaves(model):
    """(path, layer) for every non-Sequential layer, depth first, in order; a wrapper's
    layers as `wrapper/forward_lstm` (the keys of seqcli's weights)."""

    def parts(path, layer):
        if isinstance(layer, keras.layers.Bidirectional):
            return [(f"{path}/{part.name}", part)
                    for part in (layer.forward_layer, layer.backward_layer)]
        if isinstance(layer, keras.layers.TimeDistributed):
            return [(f"{path}/{layer.layer.name}", layer.layer)]
        return [(path, layer)]

    def walk(seq, prefix):
        for sub in seq.layers:
            path = prefix + sub.name
            if isinstance(sub, keras.Sequential):
                yield from walk(sub, path + "/")
            else:
                yield from parts(path, sub)
    yield from walk(model, "")


def weight_value(rng, layer, var, gain):
    """A deterministic, non-trivial value for one weight, scaled like the default initialisers."""
    shape = tuple(var.shape)
    name = var.name
    if name in ("kernel", "depthwise_kernel", "pointwise_kernel"):
        if isinstance(layer, keras.layers.DepthwiseConv2D) or name == "depthwise_kernel":
            fan_in = int(np.prod(shape[:-2]))          # kh * kw: one input channel per filter
        else:
            fan_in = int(np.prod(shape[:-1]))          # k... * in/groups (or `in` for Dense)
        return rng.normal(0.0, gain / np.sqrt(fan_in), shape)
    if name == "recurrent_kernel":
        return rng.normal(0.0, gain / np.sqrt(shape[0]), shape)
    if name == "embeddings":
        return rng.normal(0.0, 1.0, shape)
    if name == "bias":
        return rng.normal(0.0, 0.2, shape)
    if name == "alpha":  # PReLU's slopes below zero
        return rng.normal(0.3, 0.3, shape)
    if name == "gamma":
        return 1.0 + rng.normal(0.0, 0.2, shape)
    if name == "beta":
        return rng.normal(0.0, 0.2, shape)
    if name == "moving_mean":
        return rng.normal(0.0, 0.5, shape)
    if name == "moving_variance":
        return rng.uniform(0.5, 2.0, shape)
    if name == "mean":  # Normalization's adapted statistics
        return rng.normal(0.0, 1.0, shape)
    if name == "variance":
        return rng.uniform(0.25, 4.0, shape)
    if name == "count":
        return np.asarray(rng.integers(1, 1000), dtype="float64")
    raise SystemExit(f"no rule for weight {name} of {layer.name}")


def assign_weights(model, rng, gain):
    """Sets every weight; returns {key: float32 array} in Keras's per-layer order."""
    out = {}
    for path, layer in iter_leaves(model):
        for var in layer.weights:
            value = weight_value(rng, layer, var, gain).astype("float32")
            var.assign(value)
            out[f"{path}/{var.name}"] = value
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # it computes with copies of its weights, made here
    return out


def make_input(rng, shape, opts, doc):
    full = (BATCH, *shape)
    first = doc["layers"][0]
    if first["type"] == "Embedding":  # ids, with padding (0) at the end, start and middle
        ids = rng.integers(1, first["input_dim"], full).astype("int32")
        if len(shape) == 1 and shape[0] >= 4:
            ids[0, -3:] = 0
            ids[1, :2] = 0
            ids[2, shape[0] // 2] = 0
        return ids
    if opts.get("input") == "pixels":
        return rng.uniform(0.0, 255.0, full).astype("float32")
    x = (rng.normal(0.0, 1.0, full) * opts.get("scale", 1.0)).astype("float32")
    if first["type"] == "Masking":  # masked steps: every feature at mask_value
        value = first.get("mask_value", 0.0)
        x[0, -3:] = value
        x[1, :2] = value
        x[2, 3] = value
    return x


def n_params(weights):
    return int(sum(int(np.prod(w.shape)) for w in weights))


def dims(shape):
    return [None if d is None else int(d) for d in shape]


def summary(model, input_shape):
    rows = []
    for layer in model.layers:
        rows.append({
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": dims(layer.output.shape),
            "params": int(layer.count_params()),
            "trainable_params": n_params(layer.trainable_weights),
        })
    return {
        "name": model.name,
        "input_shape": [None, *[int(d) for d in input_shape]],
        "layers": rows,
        "total_params": n_params(model.weights),
        "trainable_params": n_params(model.trainable_weights),
        "non_trainable_params": n_params(model.non_trainable_weights),
    }


def write_npy(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array, dtype="float32"))


def first_comment(text):
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def make(stem, path):
    text = path.read_text()
    doc = yaml.safe_load(text)
    _check_scalars(doc, stem)
    if "weights" in doc:
        raise SystemExit(f"{stem}: fixture models must not name a weights file")
    opts = OPTIONS.get(stem, {})
    rng = np.random.default_rng(zlib.crc32(stem.encode()))
    keras.utils.set_random_seed(zlib.crc32(stem.encode()) % (2**31))

    model, builder, input_shape = build_model(doc)
    deferred = input_shape is None
    if deferred:
        input_shape = opts["deferred_input_shape"]
        model.build((None, *input_shape))
    for layer in builder.frozen:
        layer.trainable = False

    entry = {"stem": stem, "model": f"models/{path.name}", "description": first_comment(text),
             "input_shape": [int(d) for d in input_shape], "deferred": deferred,
             "summary_only": stem in SUMMARY_ONLY, **NOTES.get(stem, {})}
    files = {"summary": f"expected/{stem}.summary.json"}

    if stem not in SUMMARY_ONLY:
        weights = assign_weights(model, rng, opts.get("gain", 1.0))
        x = make_input(rng, input_shape, opts, doc)
        y = np.asarray(model.predict(x, batch_size=BATCH, verbose=0), dtype="float32")
        # Cross-check: calling the layers one by one in inference mode gives the same.
        z = x
        for layer in model.layers:
            z = layer(z, training=False)
        np.testing.assert_allclose(np.asarray(z), y, rtol=1e-5, atol=1e-5)
        if not np.all(np.isfinite(y)):
            raise SystemExit(f"{stem}: non-finite output")
        (HERE / "weights").mkdir(exist_ok=True)
        with open(HERE / "weights" / f"{stem}.npz", "wb") as f:
            np.savez(f, **weights)
        with open(HERE / "inputs" / f"{stem}.npy", "wb") as f:  # ids stay int32
            np.save(f, x)
        write_npy(HERE / "expected" / f"{stem}.output.npy", y)
        # The guide's feature extraction: every top-level layer's output.
        extractor = keras.Model(model.inputs, [layer.output for layer in model.layers])
        outputs = extractor.predict(x, batch_size=BATCH, verbose=0)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        with open(HERE / "expected" / f"{stem}.layers.npz", "wb") as f:
            np.savez(f, **{layer.name: np.asarray(o, dtype="float32")
                           for layer, o in zip(model.layers, outputs)})
        files.update(weights=f"weights/{stem}.npz", input=f"inputs/{stem}.npy",
                     output=f"expected/{stem}.output.npy", layers=f"expected/{stem}.layers.npz")
        entry["output_shape"] = list(y.shape)
        entry["output_range"] = [float(y.min()), float(y.max())]

    summ = summary(model, input_shape)
    (HERE / "expected").mkdir(exist_ok=True)
    (HERE / "expected" / f"{stem}.summary.json").write_text(json.dumps(summ, indent=1) + "\n")
    entry["files"] = files
    return entry


def main(argv):
    paths = sorted(MODELS.glob("*.yaml"))
    if argv:
        paths = [p for p in paths if p.stem in argv]
    entries = []
    for path in paths:
        entry = make(path.stem, path)
        print(f"{path.stem}: {entry.get('output_shape', 'summary only')}", file=sys.stderr)
        entries.append(entry)
    if argv:  # the named stems' entries replace (or join) those of the manifest
        made = {entry["stem"] for entry in entries}
        old = json.loads((HERE / "manifest.json").read_text())["models"]
        entries = sorted([e for e in old if e["stem"] not in made] + entries,
                         key=lambda entry: entry["stem"])
    import jax

    manifest = {
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "jax_version": jax.__version__,
        "numpy_version": np.__version__,
        "batch": BATCH,
        "generator": "tests/keras_reference/make_fixtures.py",
        "models": entries,
    }
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
