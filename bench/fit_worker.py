"""One framework's `fit` in a process of its own, for `make bench`: prints one JSON line with
the seconds of each epoch (the first one compiles or loads kernels: the caller drops it) and
the last epoch's loss and accuracy.

    python bench/fit_worker.py seqcli|keras|torch MODEL X.npy Y.npy --epochs N --threads T

MODEL is the stem of a file in bench/models/ (mnist_convnet, mlp_784_256_10); Keras and
PyTorch build the same layers in code. All three train with adam (Keras's defaults) on
categorical_crossentropy over softmax outputs, batches of 128, shuffled each epoch, tracking
accuracy. Only the framework named is imported: Keras never shares seqcli's process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

MODELS = Path(__file__).resolve().parent / "models"
BATCH_SIZE = 128


def one_thread_xla() -> str:
    """XLA_FLAGS that keep JAX's CPU backend on the calling thread."""
    return "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def fit_seqcli(model: str, x, y, epochs: int, threads: int) -> tuple[list[float], dict, str]:
    """seqcli's fit on bench/models/MODEL.yaml, set up as `seqcli fit --threads T` is."""
    sys.path.insert(0, str(MODELS.parent.parent))
    import seqcli
    from seqcli.runtime.compiled import set_threads
    from seqcli.training.fit import fit
    from seqcli.training.losses import get_loss
    from seqcli.training.optimizers import get_optimizer

    set_threads(threads)
    network = seqcli.load(MODELS / f"{model}.yaml")
    network.build()
    seconds: list[float] = []
    history = fit(network.built_model, network.weight_arrays, x, y,
                  loss=get_loss("categorical_crossentropy"), optimizer=get_optimizer("adam"),
                  epochs=epochs, batch_size=BATCH_SIZE, shuffle=True, seed=0,
                  metrics=["accuracy"],
                  on_epoch_end=lambda epoch, metrics, elapsed: seconds.append(elapsed))
    return seconds, last_epoch(history.history), f"seqcli {seqcli.__version__}"


def keras_layers(model: str, keras) -> list:
    """The layers of bench/models/MODEL.yaml as Keras objects."""
    layers = keras.layers
    if model == "mnist_convnet":
        return [keras.Input((28, 28, 1)),
                layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
                layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
                layers.Flatten(), layers.Dropout(0.5), layers.Dense(10, activation="softmax")]
    if model == "mlp_784_256_10":
        return [keras.Input((784,)), layers.Dense(256, activation="relu"),
                layers.Dense(10, activation="softmax")]
    raise SystemExit(f"fit_worker: no Keras model for {model!r}")


def fit_keras(model: str, x, y, epochs: int, threads: int) -> tuple[list[float], dict, str]:
    """Keras 3 on JAX (KERAS_BACKEND=jax); one thread through XLA_FLAGS."""
    os.environ["KERAS_BACKEND"] = "jax"
    if threads == 1:
        os.environ["XLA_FLAGS"] = one_thread_xla()
    import jax
    import keras

    keras.utils.set_random_seed(0)
    network = keras.Sequential(keras_layers(model, keras))
    network.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        """Wall seconds of each epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    history = network.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True, verbose=0,
                          callbacks=[EpochTimer()])
    return (seconds, last_epoch(history.history),
            f"keras {keras.__version__}, jax {jax.__version__}")


def torch_network(model: str, torch):
    """The layers of bench/models/MODEL.yaml as a torch module (channels first), ending in
    logits: the softmax is in the loss (CrossEntropyLoss), as the same function."""
    nn = torch.nn
    if model == "mnist_convnet":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Dropout(0.5), nn.Linear(64 * 5 * 5, 10))
    if model == "mlp_784_256_10":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    raise SystemExit(f"fit_worker: no PyTorch model for {model!r}")


def fit_torch(model: str, x, y, epochs: int, threads: int) -> tuple[list[float], dict, str]:
    """PyTorch on the CPU with `threads` intra-op threads; Keras's Adam settings."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    network = torch_network(model, torch)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    loss_function = torch.nn.CrossEntropyLoss()
    inputs = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4
                              else x)
    labels = torch.from_numpy(y.argmax(axis=1))
    seconds: list[float] = []
    network.train()
    for _ in range(epochs):
        start = time.perf_counter()
        total, correct = 0.0, 0
        order = torch.randperm(len(inputs))
        for first in range(0, len(inputs), BATCH_SIZE):
            index = order[first:first + BATCH_SIZE]
            optimizer.zero_grad(set_to_none=True)
            logits = network(inputs[index])
            loss = loss_function(logits, labels[index])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
            correct += int((logits.argmax(dim=1) == labels[index]).sum())
        seconds.append(time.perf_counter() - start)
    metrics = {"loss": total / len(inputs), "accuracy": correct / len(inputs)}
    return seconds, metrics, f"torch {torch.__version__}"


def last_epoch(history: dict[str, list[float]]) -> dict[str, float]:
    """The last epoch's loss and accuracy from a Keras-style history."""
    return {name: float(history[name][-1]) for name in ("loss", "accuracy")}


FRAMEWORKS = {"seqcli": fit_seqcli, "keras": fit_keras, "torch": fit_torch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("framework", choices=sorted(FRAMEWORKS))
    parser.add_argument("model")
    parser.add_argument("x")
    parser.add_argument("y")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    x = np.load(args.x)
    y = np.load(args.y)
    seconds, metrics, version = FRAMEWORKS[args.framework](args.model, x, y, args.epochs,
                                                            args.threads)
    print(json.dumps({"framework": args.framework, "version": version,
                      "epoch_seconds": seconds, "last_epoch": metrics}))


if __name__ == "__main__":
    main()
