"""Record one Keras 3 `train_on_batch` step (SGD) on the models of issue 21, for seqcli's
tests: models whose input has a variable-length axis. Needs Keras 3 with JAX:

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
]


def state(model):
    return {f"{path}/{v.name}": np.asarray(v.value, dtype="float32")
            for path, layer in iter_leaves(model) for v in layer.weights}


def main():
    out, cases = {}, []
    for index, (name, loss, rate, kind, rows, steps) in enumerate(CASES):
        doc = yaml.safe_load((HERE / "models" / f"{name}.yaml").read_text())
        keras.utils.set_random_seed(index)
        model, _, input_shape = build_model(doc)
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
