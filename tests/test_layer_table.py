"""The layer table (tests/layer_table.py) against the layer registry: every registered layer
type has a complete row, the row's kernels are exactly those the layer calls, its Keras
fixtures hold it, its cases run in onnxruntime as in seqcli, and its examples (warm-up and
smoke test) run and reach every kernel."""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import seqcli.kernels
from seqcli.interop.onnx_export import EXPORTERS, to_onnx
from seqcli.layers import LAYER_CLASSES, LAYER_TYPES
from seqcli.layers.base import LAYER_REGISTRY, layer_modules
from seqcli.warmup import example_models, one_layer_model, run_example
from tests.conftest import REPO
from tests.layer_table import ROWS, Row

REFERENCE = Path(__file__).parent / "keras_reference"
MANIFEST = {m["stem"]: m for m in json.loads((REFERENCE / "manifest.json").read_text())["models"]}
TYPES = list(LAYER_REGISTRY)


def test_every_registered_layer_type_has_a_complete_row():
    assert list(LAYER_CLASSES) == list(LAYER_REGISTRY.values())
    assert set(LAYER_TYPES) == set(LAYER_REGISTRY) | {"Input"}
    missing = [name for name in LAYER_REGISTRY if name not in ROWS]
    assert not missing, f"layer types without a row in tests/layer_table.py: {missing}"
    stale = [name for name in ROWS if name not in LAYER_REGISTRY]
    assert not stale, f"rows of tests/layer_table.py for no registered layer type: {stale}"
    for name, row in ROWS.items():
        assert isinstance(row, Row)
        assert row.cases, f"{name}: no shape cases"
        assert row.keras, f"{name}: no Keras fixture"
        assert isinstance(row.kernels, dict) and isinstance(row.grads, dict), name
        assert LAYER_REGISTRY[name].examples, f"{name}: the layer class has no examples"


def test_every_layer_type_is_found_in_its_module_before_it_is_imported():
    defined = {name: cls.__module__.removeprefix("seqcli.layers.")
               for name, cls in LAYER_REGISTRY.items()}
    assert layer_modules() == defined


# Kernel modules no layer calls: the optimizers' updates (fit's optimizer step runs them) and
# the allocator's setting.
NOT_LAYER_KERNELS = ("updates", "memory")


def _public_kernels():
    """(module, name, function) of every public function of seqcli.kernels that layers may
    call (the modules of NOT_LAYER_KERNELS left out)."""
    found = []
    for info in pkgutil.iter_modules(seqcli.kernels.__path__):
        if info.name in NOT_LAYER_KERNELS:
            continue
        module = importlib.import_module(f"seqcli.kernels.{info.name}")
        for name, obj in vars(module).items():
            func = getattr(obj, "py_func", obj)
            if not name.startswith("_") and name != "small_run" and inspect.isfunction(func) \
                    and func.__module__ == module.__name__:  # small_run: a switch, no kernel
                found.append((module, name, obj))
    return found


@pytest.fixture
def kernel_calls(monkeypatch):
    """The public kernels that layer code calls (not those kernels call), as they are called."""
    calls: list = []
    depth = [0]
    for module, name, kernel in _public_kernels():
        def recorder(*args, _kernel=kernel, **kwargs):
            outer = depth[0] == 0
            depth[0] += 1
            try:
                result = _kernel(*args, **kwargs)
            finally:
                depth[0] -= 1
            # a small-work numpy path that declines (None: the kernel runs instead) computed
            # nothing
            declined = result is None and _kernel.__name__.startswith("small_")
            if outer and not declined:
                calls.append(_kernel)
            return result

        monkeypatch.setattr(module, name, functools.wraps(getattr(kernel, "py_func", kernel))(
            recorder))
    return calls


@pytest.mark.parametrize("type_name", TYPES)
def test_row_kernels_are_those_the_layer_calls(type_name, kernel_calls):
    """Inference and one training step on the layer's examples and cases call exactly the
    row's kernels: forward modules' in `kernels`, grad_ modules' in `grads`."""
    row, cls = ROWS[type_name], LAYER_REGISTRY[type_name]
    rng = np.random.default_rng(0)
    for _, example, model in example_models([cls]):
        run_example(model, example, rng)
    called = set(kernel_calls)
    kernels, grads = dict(row.kernels), dict(row.grads)
    if type_name == "Sequential":  # computes nothing itself: its layers call their kernels
        for example in cls.examples:
            for entry in example.settings["layers"]:
                kernels.update(ROWS[entry["type"]].kernels)
                grads.update(ROWS[entry["type"]].grads)
    is_grad = {k: getattr(k, "py_func", k).__module__.rsplit(".", 1)[1].startswith("grad_")
               for k in called | set(kernels) | set(grads)}
    names = {k: getattr(k, "__name__", str(k)) for k in is_grad}
    assert {names[k] for k in called if not is_grad[k]} == {names[k] for k in kernels}
    assert {names[k] for k in called if is_grad[k]} == {names[k] for k in grads}


def _types_in(layers) -> set[str]:
    found = set()
    for layer in layers:
        found.add(layer["type"])
        found |= _types_in(layer.get("layers", []))
    return found


@pytest.mark.parametrize("type_name", TYPES)
def test_row_keras_fixtures_hold_the_layer(type_name):
    for stem in ROWS[type_name].keras:
        assert stem in MANIFEST, f"{type_name}: no Keras fixture '{stem}'"
        config = json.loads((REFERENCE / MANIFEST[stem]["files"]["summary"]).read_text())
        model = (REFERENCE / MANIFEST[stem]["model"]).read_text()
        assert type_name in _types_in(config["layers"]) or f"type: {type_name}" in model, \
            f"Keras fixture '{stem}' has no {type_name}"


def test_every_layer_type_but_sequential_has_an_onnx_exporter():
    exported = {cls for cls in LAYER_REGISTRY.values() if cls in EXPORTERS}
    assert set(LAYER_REGISTRY.values()) - exported == {LAYER_REGISTRY["Sequential"]}
    assert set(EXPORTERS) <= set(LAYER_REGISTRY.values())


def _onnx_cases():
    return [pytest.param(name, index, id=f"{name}-{index}")
            for name, row in ROWS.items() for index in range(len(row.cases))]


@pytest.mark.parametrize(("type_name", "index"), _onnx_cases())
def test_row_cases_run_in_onnxruntime_as_in_seqcli(type_name, index):
    ort = pytest.importorskip("onnxruntime")
    settings, input_shape, *_ = ROWS[type_name].cases[index]
    model = one_layer_model(type_name, settings, input_shape)
    model.build()
    rng = np.random.default_rng(index)

    def fan_in(shape):  # weights at the scale of Keras's initialisers (a long recurrence with
        return np.prod(shape[:-1]) if len(shape) > 1 else 1  # larger ones is chaotic)

    weights = {key: (np.abs(array) + 0.5 if key.endswith("variance") else
                     rng.normal(size=array.shape) / np.sqrt(fan_in(array.shape)))
               .astype(np.float32) for key, array in model.weight_arrays.items()}
    model.weight_arrays.update(weights)
    proto = to_onnx(model.built_model, model.weight_arrays)
    if model.built_model.takes_ids:  # ids, padding (0) among them
        x = rng.integers(0, model.built_model.leaves()[0].layer.input_dim, (3, *input_shape))
    else:
        x = rng.normal(size=(3, *input_shape)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x})[0]
    expected = model(x)
    assert got.shape == expected.shape
    scale = max(float(np.abs(expected).max()), 1e-6)
    assert float(np.abs(got - expected).max()) <= 2e-5 * scale


@pytest.mark.parametrize("type_name", TYPES)
def test_examples_run_forward_and_train(type_name):
    """The smoke test: each example gives finite outputs of the built shape, and one training
    step leaves frozen weights as they were and moves trainable ones."""
    rng = np.random.default_rng(1)
    for _, example, model in example_models([LAYER_REGISTRY[type_name]]):
        model.build()
        before = {key: array.copy() for key, array in model.weight_arrays.items()}
        y = run_example(model, example, rng)
        assert y.shape == (example.batch, *model.built_model.output_shape)
        assert np.isfinite(y).all()
        trainable = model.built_model.trainable_keys
        for key, array in model.weight_arrays.items():
            if key not in trainable and not key.endswith(("moving_mean", "moving_variance")):
                assert np.array_equal(array, before[key]), key
        if trainable:
            assert any(not np.array_equal(model.weight_arrays[k], before[k]) for k in trainable)


# Kernels only CPUs with AVX-512 reach: the direct and Winograd convolutions and their
# helpers, the recurrent product's micro-kernel (elsewhere both go through BLAS), the
# register-blocked depthwise convolution, the direct kernel gradient of Conv2D.
AVX512_ONLY = {"_conv_direct", "_conv_row_blocks", "_fill_band", "_conv_winograd",
               "_fill_band_channels", "_tiles_gemm", "_winograd_block", "_bias_act_rows",
               "_rows_product", "_depthwise_rows", "_depthwise_row", "_repeat_rows",
               "_conv_kernel_grad", "_kernel_grad_run"}
# Kernels only CPUs without AVX-512 reach: the depthwise convolution's direct loop.
OTHER_CPUS_ONLY = {"_depthwise_loop"}

_COVERAGE = """
import importlib, json, pkgutil, sys
from numba.core.dispatcher import Dispatcher
import seqcli.kernels
from seqcli.warmup import warm_up
warm_up()
unreached = []
for info in pkgutil.iter_modules(seqcli.kernels.__path__):
    module = importlib.import_module('seqcli.kernels.' + info.name)
    for name, obj in vars(module).items():
        if isinstance(obj, Dispatcher) and obj.py_func.__module__ == module.__name__ \\
                and not obj.overloads:
            unreached.append(info.name + '.' + name)
from seqcli.kernels.cpu import wide_vectors
print(json.dumps({'unreached': unreached, 'wide': wide_vectors()}))
"""

_NO_COMPILE = """
import sys
import numpy as np
from seqcli.runtime.compiled import notify_compiling
from seqcli.warmup import example_models, run_example
from seqcli.runtime.model import load
compiled = []
notify_compiling(lambda: compiled.append(True))
rng = np.random.default_rng(5)
for _, example, model in example_models():
    run_example(model, example, rng)
for path in sys.argv[1:]:
    model = load(path)
    model.build()
    for batch in (1, 17):
        shape = (batch, *model.built_model.input_shape)
        if model.built_model.takes_ids:  # word ids, some of them padding
            model(rng.integers(0, model.built_model.leaves()[0].layer.input_dim, shape))
        else:
            model(rng.random(shape, dtype=np.float32))
print('compiled' if compiled else 'nothing compiled')
"""


def test_warm_up_reaches_every_kernel_and_then_nothing_compiles(tmp_path):
    """From an empty cache, the warm-up (every layer's examples) compiles every kernel this
    machine can run; a fresh process then runs every example and every shipped model
    (configs/, bench/models/) without compiling anything."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", _COVERAGE], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    elsewhere = OTHER_CPUS_ONLY if report["wide"] else AVX512_ONLY
    unreached = [name for name in report["unreached"] if name.split(".")[-1] not in elsewhere]
    assert unreached == [], f"kernels no layer example reaches: {unreached}"
    models = sorted(str(p) for p in [*REPO.glob("configs/*.yaml"), *REPO.glob("bench/models/*.yaml")])
    done = subprocess.run([sys.executable, "-c", _NO_COMPILE, *models], env=env,
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[-2] == "nothing compiled"
