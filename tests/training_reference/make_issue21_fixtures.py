"""Record one Keras 3 `train_on_batch` step (SGD) on the models of issue 21, for seqcli's
tests: models whose input has a variable-length axis, and models with Keras's regularizers
and constraints. Needs Keras 3 with JAX:

    KERAS_BACKEND=jax python tests/training_reference/make_issue21_fixtures.py

Writes issue21.npz (per case: x, y, the weights before and after the step, the loss) and
issue21.json (the cases).
"""

import json
import sys
from pathlib import Path

import keras
import numpy as np
import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "keras_reference"))
from make_fixtures import build_model, iter_leaves  # noqa: E402

# (model in ./models, loss, learning rate, input kind, rows, steps of the variable axis)
CASES = [
    ("wavenet_variable", "mse", 0.1, "normal", 4, 11),
    ("embedding_lstm_variable", "sparse_categorical_crossentropy", 0.5, "ids", 3, 7),
    ("dense_regularized", "mse", 0.2, "normal", 6, None),
    ("conv_regularized", "mse", 0.2, "normal", 5, None),
    ("embedding_lstm_regularized", "sparse_categorical_crossentropy", 0.5, "ids", 4, None),
    ("dense_constrained", "mse", 0.3, "normal", 6, None),
    ("conv_gru_constrained", "mse", 0.3, "normal", 5, None),
]

REGULARIZERS = {("l1",): "L1", ("l2",): "L2", ("l1", "l2"): "L1L2"}


def keras_object(key, value):
    """A model file's regularizer or constraint mapping (or constraint name) as the Keras
    object: `{l2: 0.01}`, `{type: L1L2, l1: .., l2: ..}`, `NonNeg`,
    `{type: MaxNorm, max_value: 2}`."""
    if isinstance(value, str):
        return getattr(keras.constraints, value)()
    options = dict(value)
    kind = options.pop("type", None)
    if key.endswith("_regularizer"):
        return getattr(keras.regularizers, kind or REGULARIZERS[tuple(sorted(options))])(
            **options)
    return getattr(keras.constraints, kind)(**options)


def with_keras_objects(doc):
    """The model file with each layer's regularizers and constraints as Keras objects."""
    layers = [{key: keras_object(key, value)
               if key.endswith(("_regularizer", "_constraint")) and value is not None else value
               for key, value in entry.items()} for entry in doc["layers"]]
    return {**doc, "layers": layers}


def state(model):
    return {f"{path}/{v.name}": np.asarray(v.value, dtype="float32")
            for path, layer in iter_leaves(model) for v in layer.weights}


def main():
    out, cases = {}, []
    for index, (name, loss, rate, kind, rows, steps) in enumerate(CASES):
        doc = yaml.safe_load((HERE / "models" / f"{name}.yaml").read_text())
        keras.utils.set_random_seed(index)
        model, builder, input_shape = build_model(with_keras_objects(doc))
        for layer in builder.frozen:
            layer.trainable = False
        shape = tuple(steps if d is None else d for d in input_shape)
        rng = np.random.default_rng(200 + index)
        if kind == "ids":
            x = rng.integers(0, model.layers[0].input_dim, (rows, *shape)).astype("int64")
        else:
            x = rng.normal(size=(rows, *shape)).astype("float32")
        output_shape = model.compute_output_shape((rows, *shape))
        if loss == "sparse_categorical_crossentropy":
            y = rng.integers(0, output_shape[-1], output_shape[:-1]).astype("int64")
        else:
            y = rng.normal(size=output_shape).astype("float32")
        key = f"step{index}"
        out[f"{key}/x"], out[f"{key}/y"] = x, y
        for weight, value in state(model).items():
            out[f"{key}/before/{weight}"] = value
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=rate), loss=loss)
        out[f"{key}/loss"] = np.float32(model.train_on_batch(x, y))
        for weight, value in state(model).items():
            out[f"{key}/after/{weight}"] = value
        cases.append({"key": key, "model": f"models/{name}.yaml", "loss": loss,
                      "learning_rate": rate})
    np.savez(HERE / "issue21.npz", **out)
    (HERE / "issue21.json").write_text(json.dumps({"keras_version": keras.__version__,
                                                   "steps": cases}, indent=1) + "\n")
    print(f"{len(cases)} steps")


if __name__ == "__main__":
    main()
