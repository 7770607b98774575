"""Record what Keras 3's training does to the reference models, for seqcli's `fit` tests.

For every runnable model of tests/keras_reference (with its weights and input): one
full-batch SGD step (learning rate 0.1, loss mse) via `train_on_batch`, and for a few models
a short `fit` with other losses and optimizers (no shuffling). Needs Keras 3 with JAX:

    KERAS_BACKEND=jax python tests/training_reference/make_fit_fixtures.py

With `--evaluate` it records only what Keras's `evaluate` gives (evaluate.json, evaluate.npz):
the loss and compiled metrics of the models those fits trained (weights, data and losses from
fit.npz) and of a masked sequence tagger, with batch sizes that do not divide the rows.
"""

import json
import sys
import zlib
from pathlib import Path

import keras
import numpy as np
import yaml

HERE = Path(__file__).parent
REFERENCE = HERE.parent / "keras_reference"
sys.path.insert(0, str(REFERENCE))
from make_fixtures import build_model, iter_leaves  # noqa: E402

# (model, loss, optimizer config, epochs, batch size, target kind); models in ./models
FITS = [
    ("convnet_softmax", "categorical_crossentropy",
     {"class_name": "sgd", "config": {"learning_rate": 0.05, "momentum": 0.9}}, 2, 4, "onehot"),
    ("convnet_softmax", "sparse_categorical_crossentropy",
     {"class_name": "rmsprop", "config": {}}, 2, 3, "labels"),
    ("transfer", "sparse_categorical_crossentropy",
     {"class_name": "adam", "config": {"learning_rate": 0.01}}, 3, 4, "labels_logits"),
    ("transfer", "mae", {"class_name": "sgd", "config": {"learning_rate": 0.1,
                                                         "nesterov": True, "momentum": 0.5}},
     2, 5, "regression"),
    ("mlp_binary", "binary_crossentropy",
     {"class_name": "rmsprop", "config": {"momentum": 0.5}}, 3, 4, "binary"),
    ("sequence", "mse", {"class_name": "adam", "config": {}}, 2, 3, "regression"),
    ("recurrent", "mse", {"class_name": "adam", "config": {"learning_rate": 0.01}}, 3, 4,
     "regression"),
    ("bidirectional", "sparse_categorical_crossentropy",
     {"class_name": "rmsprop", "config": {"learning_rate": 0.01}}, 2, 3, "labels"),
    ("activity_regression", "mse", {"class_name": "sgd", "config": {"learning_rate": 0.05}},
     3, 4, "regression"),
]
ROWS = 10


def load_local(name, seed):
    """A model of ./models with Keras's default initial weights (seeded) and an input."""
    doc = yaml.safe_load((HERE / "models" / f"{name}.yaml").read_text())
    keras.utils.set_random_seed(seed)
    model, builder, input_shape = build_model(doc)
    for layer in builder.frozen:
        layer.trainable = False
    # non-trivial BatchNormalization statistics, so inference mode is visible
    rng = np.random.default_rng(seed)
    for _, layer in iter_leaves(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape) * 0.2)
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape))
    x = rng.normal(size=(ROWS, *input_shape)).astype("float32")
    return model, x


def load(stem):
    manifest = json.loads((REFERENCE / "manifest.json").read_text())
    entry = next(m for m in manifest["models"] if m["stem"] == stem)
    doc = yaml.safe_load((REFERENCE / entry["model"]).read_text())
    model, builder, input_shape = build_model(doc)
    if input_shape is None:
        model.build((None, *entry["input_shape"]))
    for layer in builder.frozen:
        layer.trainable = False
    weights = np.load(REFERENCE / entry["files"]["weights"])
    for path, layer in iter_leaves(model):
        for variable in layer.weights:
            variable.assign(weights[f"{path}/{variable.name}"])
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # it computes with copies of its weights, made here
    x = np.load(REFERENCE / entry["files"]["input"])
    return entry, doc, model, x


def state(model):
    return {f"{path}/{v.name}": np.asarray(v.value, dtype="float32")
            for path, layer in iter_leaves(model) for v in layer.weights}


RANDOM_LAYERS = ("Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                 "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D")
RANDOM_LAYERS += ("RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                  "RandomContrast", "RandomBrightness")  # random draws per image in training


def has_dropout(doc):
    """Dropout (and noise) draws differ between Keras and seqcli: such models are left out."""
    def walk(value):
        if isinstance(value, dict):
            if value.get("type") in RANDOM_LAYERS or value.get("dropout") or \
                    value.get("recurrent_dropout"):
                return True
            return any(walk(v) for v in value.values())
        return isinstance(value, list) and any(walk(v) for v in value)
    return walk(doc)


def main():
    manifest = json.loads((REFERENCE / "manifest.json").read_text())
    steps = []
    out = {}
    for entry in manifest["models"]:
        stem = entry["stem"]
        if entry["summary_only"]:
            continue
        _, doc, model, x = load(stem)
        if has_dropout(doc):
            continue
        rng = np.random.default_rng(zlib.crc32(stem.encode()))
        y = rng.normal(size=model.output_shape[:0] + (len(x),) + tuple(model.output_shape[1:]))
        y = y.astype("float32")
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
        loss = model.train_on_batch(x, y)
        out[f"sgd/{stem}/y"] = y
        out[f"sgd/{stem}/loss"] = np.float32(loss)
        for key, value in state(model).items():
            out[f"sgd/{stem}/after/{key}"] = value
        steps.append(stem)
    fits = []
    for index, (name, loss, optimizer, epochs, batch, kind) in enumerate(FITS):
        model, x = load_local(name, index)
        rng = np.random.default_rng(100 + index)
        classes = model.output_shape[-1]
        shape = (len(x),) + tuple(model.output_shape[1:])
        if kind == "regression":
            y = rng.normal(size=shape).astype("float32")
        elif kind == "onehot":
            y = np.eye(classes, dtype="float32")[rng.integers(0, classes, len(x))]
        elif kind.startswith("labels"):
            y = rng.integers(0, classes, len(x)).astype("int64")
        else:
            y = (rng.uniform(size=shape) > 0.5).astype("float32")
        key = f"fit{index}"
        out[f"{key}/x"], out[f"{key}/y"] = x, y
        for weight, value in state(model).items():
            out[f"{key}/before/{weight}"] = value
        loss_object = loss
        if kind == "labels_logits":
            loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=keras.optimizers.get(optimizer), loss=loss_object,
                      metrics=["accuracy"] if "crossentropy" in loss else None)
        history = model.fit(x, y, epochs=epochs, batch_size=batch, shuffle=False, verbose=0)
        for weight, value in state(model).items():
            out[f"{key}/after/{weight}"] = value
        for metric, values in history.history.items():
            out[f"{key}/history/{metric}"] = np.asarray(values, dtype="float32")
        fits.append({"key": key, "model": f"models/{name}.yaml", "loss": loss,
                     "from_logits": kind == "labels_logits", "optimizer": optimizer,
                     "epochs": epochs, "batch_size": batch})
    np.savez(HERE / "fit.npz", **out)
    (HERE / "fit.json").write_text(json.dumps({"keras_version": keras.__version__,
                                               "sgd_steps": steps, "fits": fits},
                                              indent=1) + "\n")
    print(f"{len(steps)} SGD steps, {len(fits)} fits")


# (fit fixture whose trained model and data are evaluated, metrics, batch size)
EVALUATIONS = [
    ("fit0", ["accuracy", "categorical_accuracy", "top_k_categorical_accuracy",
              "categorical_crossentropy", "kl_divergence", "categorical_hinge", "precision",
              "recall", "mse"], 4),
    ("fit1", ["accuracy", "sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy",
              "sparse_categorical_crossentropy"], 3),
    ("fit2", ["acc", "sparse_categorical_crossentropy"], 4),
    ("fit3", ["mse", "mae", "mape", "msle", "root_mean_squared_error", "log_cosh_error",
              "cosine_similarity", "hinge", "squared_hinge"], 3),
    ("fit3", ["mean_squared_error", "mean_absolute_error"], 32),
    ("fit4", ["accuracy", "binary_accuracy", "binary_crossentropy", "bce", "precision",
              "recall", "hinge", "squared_hinge", "poisson", "kl_divergence"], 4),
    ("fit6", ["mae", "root_mean_squared_error"], 4),
    ("fit7", ["accuracy"], 3),
    ("fit8", ["mse"], 3),
]
TAGGER = "sequence_tagger"


def tagger_data(model):
    """Ten padded sentences of ids for the tagger (id 0 pads; every sentence has two words at
    least) and a label per step."""
    rng = np.random.default_rng(17)
    steps = model.input_shape[1]
    ids = rng.integers(1, 30, (ROWS, steps))
    for row, length in enumerate(rng.integers(2, steps + 1, ROWS)):
        ids[row, length:] = 0
    return ids.astype("int64"), rng.integers(0, model.output_shape[-1], (ROWS, steps))


def keras_evaluate(model, loss, metrics, x, y, batch_size):
    """Keras's `evaluate` of a compiled model, as {name: float}."""
    model.compile(optimizer="sgd", loss=loss, metrics=metrics)
    results = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    return {name: float(value) for name, value in results.items()}


def record_evaluations():
    fitted = np.load(HERE / "fit.npz")
    plan = {case["key"]: case for case in json.loads((HERE / "fit.json").read_text())["fits"]}
    cases = []
    for index, (key, metrics, batch_size) in enumerate(EVALUATIONS):
        case = plan[key]
        name = Path(case["model"]).stem
        model, _ = load_local(name, int(key[3:]))
        for path, layer in iter_leaves(model):
            for variable in layer.weights:
                variable.assign(fitted[f"{key}/after/{path}/{variable.name}"])
        loss = case["loss"]
        if case["from_logits"]:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        results = keras_evaluate(model, loss, metrics, fitted[f"{key}/x"], fitted[f"{key}/y"],
                                 batch_size)
        cases.append({"key": f"evaluate{index}", "model": case["model"], "data": key,
                      "weights": f"{key}/after", "loss": case["loss"],
                      "from_logits": case["from_logits"], "metrics": metrics,
                      "batch_size": batch_size, "keras": results})
    entry, _, model, _ = load(TAGGER)
    x, y = tagger_data(model)
    metrics = ["accuracy", "sparse_categorical_crossentropy", "sparse_top_k_categorical_accuracy"]
    results = keras_evaluate(model, "sparse_categorical_crossentropy", metrics, x, y, 4)
    cases.append({"key": "tagger", "model": f"../keras_reference/{entry['model']}",
                  "data": "tagger", "weights": f"../keras_reference/{entry['files']['weights']}",
                  "loss": "sparse_categorical_crossentropy", "from_logits": False,
                  "metrics": metrics, "batch_size": 4, "keras": results})
    np.savez(HERE / "evaluate.npz", **{"tagger/x": x, "tagger/y": y})
    (HERE / "evaluate.json").write_text(json.dumps({"keras_version": keras.__version__,
                                                    "evaluations": cases}, indent=1) + "\n")
    print(f"{len(cases)} evaluations")


if __name__ == "__main__":
    if sys.argv[1:] == ["--evaluate"]:
        record_evaluations()
    else:
        main()
