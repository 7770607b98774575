"""seqcli: Keras-style Sequential models in YAML, inspected and run from the shell.

    import seqcli
    model = seqcli.load("configs/dense_stack.yaml")
    model.summary()
    y = model.predict(x, batch_size=64)
"""

__version__ = "0.1.0"
__all__ = ["Sequential", "layers", "load"]


def __getattr__(name):
    # imported on use, so that `seqcli summary` does not pay for numpy
    if name in ("Sequential", "load"):
        from seqcli.runtime import model

        return getattr(model, name)
    raise AttributeError(f"module 'seqcli' has no attribute {name!r}")
