"""seqcli: Keras-style Sequential models in YAML, inspected and run from the shell.

    import seqcli
    model = seqcli.load("configs/dense_stack.yaml")    # or seqcli.load_keras("model.keras")
    model.summary()
    y = model.predict(x, batch_size=64)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=5)
    model.evaluate(x, y)
    model.extract(x, "dense_1")
    model.save("trained.yaml")
"""

__version__ = "0.1.0"
__all__ = ["Sequential", "layers", "load", "load_keras"]

_API = ("Sequential", "load", "load_keras")


def __getattr__(name):
    # imported on use, so that `import seqcli` and `seqcli summary` do not pay for numpy
    if name in _API:
        from seqcli import api

        return getattr(api, name)
    if name == "layers":
        import importlib

        return importlib.import_module("seqcli.layers")
    raise AttributeError(f"module 'seqcli' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
