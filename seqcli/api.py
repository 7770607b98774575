"""The Python API: Keras's `Sequential` workflow over seqcli model files, command for command.

    model = seqcli.load("model.yaml")           # or seqcli.load_keras("classifier.keras")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=5, validation_split=0.2)
    loss, accuracy = model.evaluate(x_test, y_test)
    features = model.extract(x, "base")
    model.save("trained.yaml")                  # and trained.safetensors beside it
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from seqcli.errors import InputDataError, UsageError
from seqcli.runtime import model as runtime
from seqcli.training.fit import History
from seqcli.training.losses import Loss, get_loss
from seqcli.training.optimizers import Optimizer, get_optimizer

DEFAULT_LOSS = "mse"
DEFAULT_OPTIMIZER = "rmsprop"
"""What `fit` and `evaluate` use before `compile`: the command line's defaults."""


class Sequential(runtime.Sequential):
    """A Keras-style Sequential model: `layers`, `add`, `pop`, `get_layer`, `summary`,
    `weights`, `predict`, and `compile`, `fit`, `evaluate`, `extract`, `save`."""

    _loss: Loss | None = None
    _optimizer: Optimizer | None = None
    _metrics: list[str] | None = None

    def compile(self, optimizer: str | Optimizer = DEFAULT_OPTIMIZER, loss: str = DEFAULT_LOSS,
                metrics: list[str] | None = None, *, from_logits: bool = False,
                learning_rate: float | None = None, momentum: float = 0.0,
                nesterov: bool = False) -> None:
        """Configures the model for training, as Keras's `compile`.

        Args:
            optimizer: "sgd", "adam" or "rmsprop" (with Keras's defaults, changed by
                `learning_rate`, `momentum` and `nesterov`), or an optimizer from
                `seqcli.training.optimizers`.
            loss: "mse", "mae", "binary_crossentropy", "categorical_crossentropy" or
                "sparse_categorical_crossentropy"; `from_logits` for the cross-entropies.
            metrics: Keras metric names, such as ["accuracy"], that `fit` reports for each
                epoch and `evaluate` returns. Default: accuracy for the cross-entropies.
        """
        from seqcli.training.metrics import canonical_name

        self._loss = get_loss(loss, from_logits)
        if isinstance(optimizer, Optimizer):
            self._optimizer = optimizer
        else:
            self._optimizer = get_optimizer(optimizer, learning_rate, momentum, nesterov)
        for name in metrics or []:
            canonical_name(name)
        self._metrics = None if metrics is None else list(metrics)

    def _compiled(self) -> tuple[Loss, Optimizer]:
        """The compiled loss and optimizer; the command line's defaults until `compile`."""
        if self._loss is None:
            self.compile()
        return self._loss, self._optimizer

    def fit(self, x, y, batch_size: int | None = None, epochs: int = 1,
            verbose: int | str = "auto",
            validation_split: float = 0.0, validation_data: tuple | None = None,
            shuffle: bool = True, seed: int = 0) -> History:
        """Trains the model for a fixed number of epochs, as Keras's `fit` (what `seqcli fit`
        does): the trainable layers learn, frozen layers stay bit-identical.

        Args:
            x: Input data, a numpy array (batch first).
            y: Target data: shaped like the model's output, or class labels for
                sparse_categorical_crossentropy.
            batch_size: Number of samples per gradient update (default 32).
            epochs: Number of passes over the data.
            verbose: 0 is silent; otherwise one line per epoch on stderr.
            validation_split: Fraction of the data (its last rows, as Keras) held out to
                evaluate the loss and metrics on at the end of each epoch.
            validation_data: (x_val, y_val) to evaluate on at the end of each epoch instead.
            shuffle: Whether to shuffle the training data before each epoch.
            seed: Seeds the shuffling, Dropout and the other random layers.

        Returns:
            A `History` whose `history` holds the loss and metrics of each epoch
            (`val_` ones too with validation data).
        """
        from seqcli.training.data import split_validation
        from seqcli.training.fit import fit as run_fit

        if validation_split and validation_data is not None:
            raise UsageError("validation_split and validation_data are alternatives; pass one")
        loss, optimizer = self._compiled()
        x, y = self._labelled(x, y, "fit")
        validation = None
        if validation_data is not None:
            validation = self._labelled(*validation_data, "fit")
        elif validation_split:
            x, y, validation = split_validation(x, y, validation_split)

        def report(epoch: int, metrics: dict[str, float], seconds: float) -> None:
            shown = " - ".join(f"{name}: {value:.4f}" for name, value in metrics.items())
            print(f"Epoch {epoch + 1}/{epochs} - {seconds:.1f}s - {shown}", file=sys.stderr)

        return run_fit(self.built_model, self.weight_arrays, x, y, loss=loss,
                       optimizer=optimizer, epochs=epochs, batch_size=batch_size or 32,
                       shuffle=shuffle, seed=seed, validation=validation, metrics=self._metrics,
                       on_epoch_end=report if verbose != 0 else None)

    def evaluate(self, x, y, batch_size: int | None = None, return_dict: bool = False):
        """Returns the loss value and metrics values for the model in test mode, as Keras's
        `evaluate` (what `seqcli evaluate` prints).

        Args:
            x: Input data, a numpy array (batch first).
            y: Target data, as for `fit`.
            batch_size: Number of samples per batch of computation (default 32).
            return_dict: Return {"loss": ..., metric name: ...} rather than a list.

        Returns:
            The scalar loss when the model has no metrics, else [loss, *metrics] in the
            order they were compiled, or a dict with `return_dict`.
        """
        from seqcli.training.fit import evaluate as run_evaluate

        loss, _ = self._compiled()
        x, y = self._labelled(x, y, "evaluate")
        with np.errstate(all="ignore"):
            results = run_evaluate(self.built_model, self.weight_arrays, x, y, loss,
                                   batch_size or 32, self._metrics)
        if return_dict:
            return results
        values = list(results.values())
        return values[0] if len(values) == 1 else values

    def _labelled(self, x, y, command: str) -> tuple[np.ndarray, np.ndarray]:
        """`x` and `y` as arrays of the same number of rows, at least one, `x` fitting the
        model (built from it if need be), `y` its loss's targets, both free of NaN and Inf:
        what `command` (fit or evaluate) takes, as the command line checks it."""
        from seqcli.training.data import check_finite, check_targets, output_shape_for

        x, y = self._checked(x), np.asarray(y)
        if y.ndim == 0 or len(x) != len(y):
            raise InputDataError(f"x has {len(x)} rows but y has "
                                 f"{len(y) if y.ndim else 'none (a single number)'}; they "
                                 "must match")
        if not len(x):
            raise InputDataError(f"x has no rows to {'train on' if command == 'fit' else command}")
        loss, _ = self._compiled()
        y = check_targets(y, len(x), output_shape_for(self.built_model, x.shape[1:]), loss, "y")
        check_finite(x, "x", command)
        check_finite(y, "y", command)
        return x, y

    def extract(self, x, layers: str | list[str], batch_size: int = 32):
        """The outputs of inner layers, as Keras's
        `keras.Model(model.inputs, [model.get_layer(name).output ...]).predict(x)` (what
        `seqcli extract` writes).

        Args:
            x: Input data, a numpy array (batch first).
            layers: A layer name or nested path ("base/conv2d"), or a list of them.
            batch_size: Number of samples per batch of computation.

        Returns:
            That layer's outputs for a name; {path: outputs} for a list.
        """
        from seqcli.kernels.small import small_run
        from seqcli.runtime.extract import choose_layers, extract_batches

        x = self._checked(x)
        built = self.built_model
        paths = choose_layers(built, [layers] if isinstance(layers, str) else list(layers),
                              every_top_level=False)
        batches = (x[start:start + batch_size] for start in range(0, len(x), batch_size))
        found: dict[str, list[np.ndarray]] = {path: [] for path in paths}
        with np.errstate(all="ignore"), small_run(built, len(x)):
            for outputs in extract_batches(built, self.weight_arrays, paths, batches):
                for path, output in outputs.items():
                    found[path].append(output)
        shapes = {**{info.path: info.output_shape for info in built.walk()},
                  **built.part_shapes()}
        arrays = {path: np.concatenate(parts) if parts else
                  np.empty((0, *shapes[path]), np.float32) for path, parts in found.items()}
        return arrays[paths[0]] if isinstance(layers, str) else arrays

    def save(self, filepath: str | Path) -> None:
        """Saves the model, as Keras's `save`, in seqcli's format: the model file `filepath`
        (.yaml) and its weights beside it (`<stem>.safetensors`), both or neither. Nested
        `from:` models are written inline; `seqcli.load(filepath)` gives this model back."""
        from seqcli.interop.saving import save_model

        save_model(self.built_model, self.weight_arrays, Path(filepath))

    def _set_weights(self, arrays: dict[str, np.ndarray]) -> None:
        """Give a built model these weights (every key, as `weights` lists them)."""
        from seqcli.runtime.weights import ModelWeights

        self._weights = ModelWeights(arrays={key: arrays[key] for key in
                                             self.built_model.weight_shapes},
                                     initialised=[], seed=0)


def load(path: str | Path, weights: str | None = None, *,
         allow_outside: bool = False) -> Sequential:
    """Load a model file (YAML) as a `Sequential`, its weights from its `weights:` file (or
    `weights`), as `seqcli predict` does."""
    from seqcli.config.load import load_model

    return Sequential.from_loaded(load_model(str(path), allow_outside=allow_outside), weights)


def load_keras(path: str | Path) -> Sequential:
    """Load a Keras 3 `.keras` file (a Sequential model, or a Functional one that is a single
    chain) as a `Sequential` with its weights, as `seqcli import-keras` reads it; no code
    from the file is run."""
    from seqcli.config.load import load_model_text
    from seqcli.interop.keras_import import model_yaml, read_keras_file

    imported = read_keras_file(Path(path))
    loaded = load_model_text(model_yaml(imported.document), str(path), Path(path).parent)
    model = Sequential.from_loaded(loaded)
    if imported.weights is not None:
        model.build()
        model._set_weights(imported.weights)
    return model


__all__ = ["Sequential", "load", "load_keras"]
