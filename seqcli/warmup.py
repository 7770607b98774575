"""`python -m seqcli.warmup`: compile and cache every kernel now rather than on first use
(after removing cached kernels that a change to the kernel sources left stale), by running
every registered layer type's examples forward and through a training step."""

from __future__ import annotations


def one_layer_model(type_name: str, settings: dict, input_shape: tuple):
    """A runtime model of one layer (`settings` without `type`), loaded as a model file would
    be (validated and named), with initial weights of seed 0."""
    import json
    from pathlib import Path

    from seqcli.config.load import load_model_text
    from seqcli.runtime.model import Sequential

    document = {"input_shape": list(input_shape), "seed": 0,
                "layers": [{"type": type_name, **settings}]}
    return Sequential.from_loaded(
        load_model_text(json.dumps(document), f"<{type_name} example>", Path.cwd()))


def example_models(classes=None):
    """(layer class, example, runtime model) of every example of every registered layer type
    (or of `classes`)."""
    from seqcli.layers.base import LAYER_REGISTRY

    for cls in classes or LAYER_REGISTRY.values():
        for example in cls.examples:
            yield cls, example, one_layer_model(cls.model_fields["type"].default,
                                                example.settings, example.input_shape)


def run_example(model, example, rng, train: bool = True):
    """The model's output for a random batch of the example. With `train`, then one training
    step (mean squared error, SGD) and each layer's backward pass with its input gradient too
    (the step skips it where no trainable layer comes before)."""
    import numpy as np

    x = example_input(model, example, rng)
    mask = None
    if example.masked:  # some steps of each sample masked, the first and last among them
        mask = rng.random(x.shape[:2]) < 0.7
        mask[0, 0] = mask[-1, -1] = False
        layer = model.built_model.leaves()[0]
        y = layer.layer.forward(layer.own_weights(model.weight_arrays), x, mask=mask)
    else:  # batches fed in turn take the kernels (a call `model(x)` this small runs in numpy)
        y = next(model.predict_batches(iter([x])))
    if train:
        _train_once(model, x, rng.random(y.shape, dtype=np.float32), rng)
        weights = model.weight_arrays
        for info in model.built_model.leaves():
            own = info.own_weights(weights)
            if mask is not None and info.layer.takes_mask:
                out, cache = info.layer.forward_train(own, x, rng, mask=mask)
            else:
                out, cache = info.layer.forward_train(own, x, rng)
            info.layer.backward(own, cache, np.ones_like(out), input_grad=True)
            x = out
    return y


def example_input(model, example, rng):
    """A random batch for the example, values in [-1, 1) (both sides of every activation's
    kink): integer ids for a layer that takes them."""
    import numpy as np

    model.build()
    shape = (example.batch, *example.input_shape)
    first = model.built_model.leaves()[0].layer
    if first.takes_ids:
        return rng.integers(0, first.input_dim, shape)
    return rng.random(shape, dtype=np.float32) * np.float32(2) - np.float32(1)


def warm_up() -> None:
    """Compile every kernel: run every registered layer type's examples, forward and one
    training step (their examples reach every kernel code path), and one update of every
    optimizer."""
    import numpy as np

    from seqcli.training.optimizers import OPTIMIZERS

    rng = np.random.default_rng(0)
    for _, example, model in example_models():
        run_example(model, example, rng)
    for optimizer in OPTIMIZERS.values():  # each one's update kernel
        optimizer().apply({"w": np.zeros(2, np.float32)}, {"w": np.ones(2, np.float32)})


def _train_once(network, x, y, rng) -> None:
    """One training step, which compiles the backward kernels of the network's layers."""
    from seqcli.training.fit import train_step
    from seqcli.training.losses import get_loss
    from seqcli.training.optimizers import get_optimizer

    train_step(network.built_model, network.weight_arrays, x, y, get_loss("mse"),
               get_optimizer("sgd"), rng)


def main() -> None:
    """Clear stale kernels, compile every kernel, record the sources; say so on stderr."""
    import sys
    import time

    from seqcli.runtime.compiled import clear_stale_kernels, record_kernel_sources

    start = time.perf_counter()
    if clear_stale_kernels():
        print("seqcli: cached kernels removed: the kernel sources changed since they were "
              "built", file=sys.stderr)
    warm_up()
    record_kernel_sources()
    print(f"seqcli: kernels compiled and cached in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
