"""The forward plan (seqcli/runtime/model.py): a model's layers bound once to their weights
run a batch to the same bits as the layer-by-layer walk, for plain, nested and id-reading
models at every batch size, in pieces; masked models, `until` and `collect` keep the walk; a
rebuilt model or new weights get a new plan, weights changed in place are seen; running out
of memory names the layer."""

from __future__ import annotations

import numpy as np
import pytest

from seqcli.errors import SeqcliError
from seqcli.runtime import model as runtime_model
from seqcli.runtime.model import ForwardPlan, _forward

try:
    from tests.conftest import runtime_model as make_model
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    from conftest import runtime_model as make_model

DENSE_STACK = ([{"type": "Dense", "units": 7, "activation": "relu"},
                {"type": "Dropout", "rate": 0.5},
                {"type": "Dense", "units": 3, "activation": "softmax"}], [5])
NESTED_CONVNET = ([{"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
                   {"type": "Sequential", "name": "head", "layers": [
                       {"type": "MaxPooling2D"}, {"type": "Flatten"},
                       {"type": "Dense", "units": 2}]}], [9, 8, 3])
TEXT = ([{"type": "Embedding", "input_dim": 30, "output_dim": 6},
         {"type": "Conv1D", "filters": 5, "kernel_size": 3, "strides": 2, "activation": "relu"},
         {"type": "GlobalMaxPooling1D"},
         {"type": "Dense", "units": 1, "activation": "sigmoid"}], [11])
MASKED = ([{"type": "Embedding", "input_dim": 30, "output_dim": 6, "mask_zero": True},
           {"type": "LSTM", "units": 4},
           {"type": "Dense", "units": 2}], [7])


def _input(model, batch, seed=0):
    rng = np.random.default_rng(seed)
    built = model.built_model
    shape = (batch, *built.input_shape)
    if built.takes_ids:
        x = rng.integers(0, built.leaves()[0].layer.input_dim, shape)
        x[:, -2:] = 0  # padding, where a mask hides it
        return x
    return rng.standard_normal(shape, dtype=np.float32)


def _walked(model, x):
    """The output of the layer-by-layer walk (masks and all)."""
    return _forward(model.built_model.layers, model.weight_arrays,
                    runtime_model.model_input(model.built_model, x), None, None, None)[0]


@pytest.mark.parametrize("spec", [DENSE_STACK, NESTED_CONVNET, TEXT], ids=["dense", "nested",
                                                                           "ids"])
@pytest.mark.parametrize("batch", [1, 2, 13])
def test_the_plan_gives_the_walks_bits(spec, batch):
    model = make_model(*spec)
    x = _input(model, batch)
    plan = model._forward_plan()
    assert not plan.masked
    assert [info.path for info, _ in plan.steps] == [
        info.path for info in model.built_model.leaves()]
    np.testing.assert_array_equal(model(x), _walked(model, x))
    # in batches of 5, as the walk of the same batches (BLAS may round a product of 13 rows
    # and of 5 apart: OpenBLAS's SkylakeX kernels do, for a layer of 2 units)
    in_fives = np.concatenate([_walked(model, x[i:i + 5]) for i in range(0, batch, 5)])
    np.testing.assert_array_equal(model.predict(x, batch_size=5), in_fives)


def test_a_batch_in_pieces_gives_the_whole_batchs_numbers(monkeypatch):
    """Row by row the same sums (BLAS may order a product of 1 row and of 2 apart: float32
    rounding)."""
    model = make_model(*NESTED_CONVNET)
    x = _input(model, 9)
    whole = model(x)
    plan = model._forward_plan()
    monkeypatch.setattr(plan, "piece_rows", 2)  # 5 pieces, the last of one row
    np.testing.assert_allclose(model(x), whole, rtol=1e-6, atol=1e-6)


def test_a_masked_model_walks_its_masks(monkeypatch):
    model = make_model(*MASKED)
    x = _input(model, 4)
    plan = model._forward_plan()
    assert plan.masked and plan.steps == []
    monkeypatch.setattr(plan, "run", lambda x: pytest.fail("the plan ran"))
    np.testing.assert_array_equal(model(x), _walked(model, x))


def test_until_and_collect_walk_the_layers(monkeypatch):
    model = make_model(*DENSE_STACK)
    x = _input(model, 3)
    plan = model._forward_plan()
    monkeypatch.setattr(plan, "run", lambda x: pytest.fail("the plan ran"))
    seen = []
    built = model.built_model
    first = runtime_model.forward(built.layers, model.weight_arrays, x, until="dense", plan=plan)
    runtime_model.forward(built.layers, model.weight_arrays, x,
                          collect=lambda path, y: seen.append(path), plan=plan)
    assert first.shape == (3, 7) and seen == ["dense", "dropout", "dense_1"]


def test_a_new_plan_for_a_rebuilt_model_or_new_weights():
    model = make_model(*DENSE_STACK)
    x = _input(model, 2)
    model(x)
    plan = model._forward_plan()
    assert model._forward_plan() is plan
    model.build()
    assert model._forward_plan() is not plan
    plan = model._forward_plan()
    model._weights = type(model._weights)(arrays=dict(model.weight_arrays), initialised=[],
                                          seed=0)
    assert model._forward_plan() is not plan


def test_weights_changed_in_place_are_seen():
    model = make_model(*DENSE_STACK)
    x = _input(model, 2)
    before = model(x)
    model.weight_arrays["dense_1/bias"][...] += np.float32(5.0)  # as an optimizer does
    np.testing.assert_array_equal(model(x), _walked(model, x))
    assert not np.array_equal(model(x), before)


def test_running_out_of_memory_names_the_layer(monkeypatch):
    model = make_model(*DENSE_STACK)
    x = _input(model, 3)
    plan = model._forward_plan()
    info, step = plan.steps[2]

    def exhausted(y):
        raise MemoryError

    monkeypatch.setattr(plan, "steps", [*plan.steps[:2], (info, exhausted)])
    with pytest.raises(SeqcliError, match=r"out of memory in layer 'dense_1' \(Dense\)"):
        model(x)


def test_the_plan_is_made_from_the_built_model():
    model = make_model(*NESTED_CONVNET)
    plan = ForwardPlan(model.built_model, model._weights)
    assert plan.built is model.built_model and plan.weights is model._weights
    assert [info.path for info, _ in plan.steps] == ["conv2d", "head/max_pooling2d",
                                                    "head/flatten", "head/dense"]
    assert plan.piece_rows == (8 << 20) // (4 * 7 * 6 * 4)
