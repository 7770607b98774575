"""Record Keras 3's loss values, loss gradients and optimizer steps for seqcli's tests.

Needs Keras 3 with JAX (not run by the tests, which read the .npz it writes):

    KERAS_BACKEND=jax python tests/training_reference/make_loss_optimizer_fixtures.py
"""

from pathlib import Path

import jax
import keras
import numpy as np

HERE = Path(__file__).parent
rng = np.random.default_rng(0)
out = {}

probabilities = rng.uniform(0.01, 0.99, (4, 3)).astype("float32")
probabilities[0, 0] = 0.0  # clipped by Keras's epsilon
logits = rng.normal(size=(4, 3)).astype("float32") * 3
binary = (rng.uniform(size=(4, 3)) > 0.5).astype("float32")
onehot = np.eye(3, dtype="float32")[[0, 2, 1, 2]]
labels = np.array([0, 2, 1, 2], dtype="int64")
regression = rng.normal(size=(4, 3)).astype("float32")
rank3 = rng.normal(size=(2, 5, 3)).astype("float32")
rank3_true = rng.normal(size=(2, 5, 3)).astype("float32")

cases = {
    "mse": (keras.losses.MeanSquaredError(), regression, logits),
    "mse_rank3": (keras.losses.MeanSquaredError(), rank3_true, rank3),
    "mae": (keras.losses.MeanAbsoluteError(), regression, logits),
    "binary_crossentropy": (keras.losses.BinaryCrossentropy(), binary, probabilities),
    "binary_crossentropy_logits": (keras.losses.BinaryCrossentropy(from_logits=True), binary,
                                   logits),
    "categorical_crossentropy": (keras.losses.CategoricalCrossentropy(), onehot, probabilities),
    "categorical_crossentropy_logits": (
        keras.losses.CategoricalCrossentropy(from_logits=True), onehot, logits),
    "sparse_categorical_crossentropy": (
        keras.losses.SparseCategoricalCrossentropy(), labels, probabilities),
    "sparse_categorical_crossentropy_logits": (
        keras.losses.SparseCategoricalCrossentropy(from_logits=True), labels, logits),
}
for name, (loss, y_true, y_pred) in cases.items():
    value, grad = jax.value_and_grad(lambda p, loss=loss, y=y_true: loss(y, p))(y_pred)
    out[f"{name}/y_true"], out[f"{name}/y_pred"] = y_true, y_pred
    out[f"{name}/value"] = np.float32(value)
    out[f"{name}/gradient"] = np.asarray(grad, dtype="float32")

start = rng.normal(size=(3, 2)).astype("float32")
gradients = [rng.normal(size=(3, 2)).astype("float32") for _ in range(3)]
optimizers = {
    "sgd": keras.optimizers.SGD(),
    "sgd_momentum": keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
    "sgd_nesterov": keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
    "adam": keras.optimizers.Adam(),
    "adam_lr": keras.optimizers.Adam(learning_rate=0.05),
    "rmsprop": keras.optimizers.RMSprop(),
    "rmsprop_momentum": keras.optimizers.RMSprop(learning_rate=0.01, momentum=0.5),
}
out["optimizer/start"] = start
for i, g in enumerate(gradients):
    out[f"optimizer/gradient_{i}"] = g
for name, optimizer in optimizers.items():
    variable = keras.Variable(start.copy())
    for i, g in enumerate(gradients):
        optimizer.apply([g], [variable])
        out[f"optimizer/{name}/step_{i}"] = np.asarray(variable.value, dtype="float32")

np.savez(HERE / "losses_optimizers.npz", **out)
print(f"wrote {len(out)} arrays with Keras {keras.__version__}")
