"""Sequence models end to end: integer ids in, masks through the stack, recurrent layers and
their wrappers in every command, and the bad inputs they meet (each one line, its exit
code, no output file left behind)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seqcli.layers import GRU, LSTM, Bidirectional, Dense, Embedding
from seqcli.runtime.model import Sequential

TEXT_MODEL = """\
input_shape: [6]
seed: 3
layers:
  - type: Embedding
    input_dim: 20
    output_dim: 4
    mask_zero: true
  - type: Bidirectional
    layer: {type: LSTM, units: 3, return_sequences: true}
  - type: GlobalAveragePooling1D
  - type: Dense
    units: 1
    activation: sigmoid
"""

IDS = np.array([[1, 2, 3, 0, 0, 0], [5, 6, 7, 8, 9, 19], [0, 0, 4, 4, 4, 4]], dtype=np.int32)


@pytest.fixture
def text_model(tmp_path):
    path = tmp_path / "text.yaml"
    path.write_text(TEXT_MODEL)
    return path


def _predict(cli, model, ids, tmp_path, name="out.npy"):
    source, out = tmp_path / "ids.npy", tmp_path / name
    np.save(source, ids)
    return cli("predict", model, source, "-o", out), out


@pytest.mark.parametrize("dtype", ["int8", "uint16", "int32", "int64", "float32", "float64"])
def test_ids_of_any_integer_dtype_and_whole_floats_give_the_same_scores(cli, text_model,
                                                                       tmp_path, dtype):
    reference, reference_out = _predict(cli, text_model, IDS, tmp_path, "reference.npy")
    result, out = _predict(cli, text_model, IDS.astype(dtype), tmp_path)
    assert reference.code == 0 and result.code == 0, result
    assert np.array_equal(np.load(out), np.load(reference_out))


@pytest.mark.parametrize(("ids", "words"), [
    (np.array([[1, 2, 3, 0, 0, 0], [5, 6, 7, 8, 20, 19]]),
     ["sample 1, position (4)", "id 20 is outside [0, 20)", "'embedding'"]),
    (np.array([[1, -1, 3, 0, 0, 0]]), ["sample 0, position (1)", "id -1"]),
    (np.array([[1, 2, 3, 0, 0, 0], [1, 2, 3.5, 0, 0, 0]]),
     ["sample 1, position (2)", "3.5 is not an integer id"]),
    (np.array([[1, 2, np.nan, 0, 0, 0]]), ["sample 0, position (2)", "not an integer id"]),
    (np.array([[2**40, 2, 3, 0, 0, 0]], dtype=np.int64), ["id 1099511627776 is outside"]),
])
def test_bad_ids_are_bad_data_naming_the_first_offender(cli, text_model, tmp_path, ids, words):
    result, out = _predict(cli, text_model, ids, tmp_path)
    assert result.code == 65, result
    message = result.err.strip().splitlines()[-1]
    assert message.startswith("seqcli: error:") and "Traceback" not in result.err
    for word in words:
        assert word in message
    assert not out.exists()


def test_bad_ids_through_the_python_api_too(text_model):
    from seqcli.errors import InputDataError
    from seqcli.runtime.model import load

    model = load(text_model)
    with pytest.raises(InputDataError, match="sample 4, position"):
        model.predict(np.concatenate([IDS, IDS[:1], IDS[:1] * 0 + 21]), batch_size=2)


@pytest.mark.parametrize(("shape", "layers", "words"), [
    ([5], [{"type": "Embedding", "input_dim": 9, "output_dim": 2, "mask_zero": True},
           {"type": "Flatten"}, {"type": "Dense", "units": 1}],
     ["layer 'flatten' (Flatten)", "cannot take the mask", "'embedding'"]),
    ([5, 3], [{"type": "Masking"}, {"type": "Conv1D", "filters": 2, "kernel_size": 2}],
     ["layer 'conv1d' (Conv1D)", "cannot take the mask", "'masking'"]),
    ([5], [{"type": "Embedding", "input_dim": 9, "output_dim": 2, "mask_zero": True},
           {"type": "Dense", "units": 3}, {"type": "GlobalMaxPooling1D"}],
     ["global_max_pooling1d", "cannot take the mask"]),
    ([5], [{"type": "LSTM", "units": 2}], ["LSTM expects sequences of shape (steps, features)"]),
    ([5, 3], [{"type": "GRU", "units": 2}, {"type": "GRU", "units": 2}],
     ["layer 'gru_1' (GRU)", "GRU expects sequences"]),
    ([5, 3, 2], [{"type": "SimpleRNN", "units": 2}], ["SimpleRNN expects sequences"]),
    ([5, 3], [{"type": "LSTM", "units": 2, "return_state": True}], ["return_state"]),
    ([5, 3], [{"type": "GRU", "units": 2, "stateful": True}], ["stateful"]),
    ([5, 3], [{"type": "Bidirectional", "layer": {"type": "LSTM", "units": 2},
               "merge_mode": None}], ["merge_mode=None"]),
    ([5, 3], [{"type": "Bidirectional", "layer": {"type": "Dense", "units": 2}}],
     ["must be a recurrent layer"]),
    ([5, 3], [{"type": "Bidirectional", "layer": {"type": "LSTM", "units": 2},
               "backward_layer": {"type": "LSTM", "units": 2}}], ["different go_backwards"]),
    ([5, 3], [{"type": "Bidirectional", "layer": {"type": "LSTM", "units": 2},
               "merge_mode": "sum",
               "backward_layer": {"type": "GRU", "units": 3, "go_backwards": True}}],
     ["the same units"]),
    ([5], [{"type": "TimeDistributed", "layer": {"type": "Dense", "units": 2}}],
     ["TimeDistributed expects inputs of shape (steps, ...)"]),
    ([5, 3], [{"type": "LSTM", "units": 2, "activation": "softmax"}], ["act on each value"]),
    ([5, 3], [{"type": "LSTM", "units": 2, "dropout": 1.5}], ["between 0 and 1"]),
])
def test_bad_sequence_models_are_one_line_errors(cli, tmp_path, shape, layers, words):
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"input_shape": shape, "layers": layers}))
    result = cli("summary", path)
    assert result.code == 65, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    for word in words:
        assert word in lines[0]


def test_masked_steps_change_nothing_downstream(text_model):
    """Whatever id sits where the mask is 0 is invisible: the LSTMs keep their state there
    and the mean leaves it out; without the mask the same padding changes the score."""
    from seqcli.runtime.model import load

    model = load(text_model)
    padded = np.array([[1, 2, 3, 0, 0, 0], [0, 0, 7, 8, 0, 9]])
    assert np.isfinite(model(padded)).all()
    short = text_model.with_name("short.yaml")  # the same seed and weight shapes, 3 steps
    short.write_text(TEXT_MODEL.replace("input_shape: [6]", "input_shape: [3]"))
    trimmed = load(short)
    assert np.allclose(model(padded[:1]), trimmed(padded[:1, :3]), atol=1e-6)
    assert np.allclose(model(padded[1:]), trimmed(np.array([[7, 8, 9]])), atol=1e-6)
    unmasked = text_model.with_name("unmasked.yaml")
    unmasked.write_text(TEXT_MODEL.replace("mask_zero: true", "mask_zero: false"))
    assert not np.allclose(load(unmasked)(padded[:1]), trimmed(padded[:1, :3]), atol=1e-6)


def test_python_api_builds_a_text_classifier():
    model = Sequential([Embedding(input_dim=30, output_dim=5, mask_zero=True),
                        Bidirectional(layer=LSTM(units=4)),
                        Dense(units=2, activation="softmax")], input_shape=(7,), seed=1)
    assert model.output_shape == (None, 2)
    weights = model.weights
    assert list(weights) == ["embedding/embeddings",
                             "bidirectional/forward_lstm/kernel",
                             "bidirectional/forward_lstm/recurrent_kernel",
                             "bidirectional/forward_lstm/bias",
                             "bidirectional/backward_lstm/kernel",
                             "bidirectional/backward_lstm/recurrent_kernel",
                             "bidirectional/backward_lstm/bias",
                             "dense/kernel", "dense/bias"]
    scores = model.predict(np.random.default_rng(0).integers(0, 30, (5, 7)))
    assert scores.shape == (5, 2) and np.allclose(scores.sum(axis=1), 1, atol=1e-6)


def test_initial_weights_follow_keras_initialisers():
    model = Sequential([LSTM(units=4, return_sequences=True), GRU(units=3, reset_after=False)],
                       input_shape=(5, 2),
                       seed=0)
    w = model.weights
    recurrent = w["lstm/recurrent_kernel"].astype(np.float64)  # (4, 16): orthonormal rows
    assert np.allclose(recurrent @ recurrent.T, np.eye(4), atol=1e-5)
    bias = w["lstm/bias"]  # unit_forget_bias: the forget gate's quarter starts at 1
    assert np.array_equal(bias, np.r_[np.zeros(4), np.ones(4), np.zeros(8)].astype(np.float32))
    assert w["gru/bias"].shape == (9,) and not w["gru/bias"].any()
    embeddings = Sequential([Embedding(input_dim=50, output_dim=8)], input_shape=(3,),
                            seed=0).weights["embedding/embeddings"]
    assert np.abs(embeddings).max() <= 0.05 and embeddings.std() > 0.02


def test_extract_reaches_into_wrappers(cli, text_model, tmp_path):
    np.save(tmp_path / "ids.npy", IDS)
    out = tmp_path / "f.npz"
    result = cli("extract", text_model, tmp_path / "ids.npy", "--layer", "bidirectional",
                 "--layer", "bidirectional/forward_lstm", "--layer",
                 "bidirectional/backward_lstm", "-o", out)
    assert result.code == 0, result
    found = np.load(out)
    merged = found["bidirectional"]
    assert merged.shape == (3, 6, 6)
    assert np.array_equal(merged[..., :3], found["bidirectional/forward_lstm"])
    # the backward layer's own output runs last step first; the merge turns it back
    assert np.array_equal(merged[..., 3:], found["bidirectional/backward_lstm"][:, ::-1])
    # masked steps output zeros in a Bidirectional that returns sequences (as Keras)
    assert not merged[0, 3:].any() and not merged[2, :2].any()


def test_freeze_then_fit_keeps_frozen_recurrent_weights(cli, text_model, tmp_path):
    frozen = tmp_path / "frozen.yaml"
    assert cli("freeze", text_model, "--layer", "bidirectional", "-o", frozen).code == 0
    summary = json.loads(cli("summary", frozen, "--json").out)
    assert [row["trainable_params"] for row in summary["layers"]] == [80, 0, 0, 7]
    x = np.random.default_rng(1).integers(0, 20, (16, 6))
    y = (x.sum(axis=1, keepdims=True) > 60).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    weights = tmp_path / "w.safetensors"
    assert cli("init", frozen, "-o", tmp_path / "before.safetensors").code == 0
    result = cli("fit", frozen, tmp_path / "x.npy", tmp_path / "y.npy", "--loss",
                 "binary_crossentropy", "--epochs", "2", "-o", weights)
    assert result.code == 0, result
    from seqcli.io.weights import read_weights

    before, after = read_weights(tmp_path / "before.safetensors"), read_weights(weights)
    for key in before:
        if key.startswith("bidirectional/"):
            assert np.array_equal(before[key], after[key]), key
        else:
            assert not np.array_equal(before[key], after[key]), key


def test_recurrent_dropout_trains_and_is_the_identity_at_inference(tmp_path):
    from seqcli.training.fit import train_step
    from seqcli.training.losses import get_loss
    from seqcli.training.optimizers import get_optimizer

    with_dropout = Sequential([GRU(units=4, dropout=0.5, recurrent_dropout=0.5),
                               Dense(units=1)], input_shape=(6, 3), seed=2)
    plain = Sequential([GRU(units=4), Dense(units=1)], input_shape=(6, 3), seed=2)
    x = np.random.default_rng(0).normal(size=(8, 6, 3)).astype(np.float32)
    assert np.array_equal(with_dropout(x), plain(x))
    y = np.zeros((8, 1), np.float32)
    rng = np.random.default_rng(0)
    losses = [train_step(with_dropout.built_model, with_dropout.weight_arrays, x, y,
                         get_loss("mse"), get_optimizer("sgd"), rng)[0] for _ in range(2)]
    plain_loss = train_step(plain.built_model, plain.weight_arrays, x, y, get_loss("mse"),
                            get_optimizer("sgd"), np.random.default_rng(0))[0]
    assert np.isfinite(losses).all() and losses[0] != plain_loss  # dropout was active


def test_masked_loss_leaves_padded_steps_out(tmp_path):
    """A tagger's output keeps the mask: changing the targets of padded steps changes
    neither the loss nor the gradients (Keras's masked mean)."""
    from seqcli.layers import TimeDistributed
    from seqcli.training.fit import train_step
    from seqcli.training.losses import get_loss
    from seqcli.training.optimizers import get_optimizer

    def model():
        return Sequential([Embedding(input_dim=10, output_dim=3, mask_zero=True),
                           GRU(units=2, return_sequences=True),
                           TimeDistributed(layer=Dense(units=2))], input_shape=(4,), seed=5)

    x = np.array([[1, 2, 0, 0], [3, 0, 4, 5]])
    y = np.random.default_rng(0).normal(size=(2, 4, 2)).astype(np.float32)
    y_other = y.copy()
    y_other[0, 2:] += 10
    y_other[1, 1] -= 10
    a, b = model(), model()
    loss_a = train_step(a.built_model, a.weight_arrays, x, y, get_loss("mse"),
                        get_optimizer("sgd"), np.random.default_rng(0))[0]
    loss_b = train_step(b.built_model, b.weight_arrays, x, y_other, get_loss("mse"),
                        get_optimizer("sgd"), np.random.default_rng(0))[0]
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    for key in a.weights:
        assert np.array_equal(a.weights[key], b.weights[key]), key
