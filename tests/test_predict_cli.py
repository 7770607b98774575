"""`seqcli predict` and `seqcli init`: files and pipes, conversions, refusals, weights."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

import seqcli
from tests.conftest import CONFIGS, run_process


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture
def dense_model(tmp_path):
    """A small model with a weights file, and an input."""
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [4]\nweights: m.safetensors\nlayers:\n"
                     "  - {type: Dense, units: 5, activation: tanh}\n"
                     "  - {type: Dense, units: 3, activation: softmax}\n")
    rng = np.random.default_rng(1)
    weights = {"dense/kernel": rng.normal(size=(4, 5)), "dense/bias": rng.normal(size=5),
               "dense_1/kernel": rng.normal(size=(5, 3)), "dense_1/bias": rng.normal(size=3)}
    np.savez(tmp_path / "w.npz", **weights)
    from seqcli.io.weights import write_safetensors

    write_safetensors(tmp_path / "m.safetensors", weights)
    x = rng.normal(size=(7, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return model, weights, x


def _reference(weights, x):
    """The model by hand, in float64."""
    hidden = np.tanh(x @ weights["dense/kernel"] + weights["dense/bias"])
    logits = hidden @ weights["dense_1/kernel"] + weights["dense_1/bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_predict_file_to_file(cli, dense_model, tmp_path):
    model, weights, x = dense_model
    result = cli("predict", model, tmp_path / "x.npy", "-o", tmp_path / "y.npy",
                 "--batch-size", "3")
    assert result.code == 0, result
    assert result.out == ""
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float32 and y.shape == (7, 3)
    np.testing.assert_allclose(y, _reference(weights, x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_predict_pipe_to_pipe(dense_model, tmp_path):
    model, weights, x = dense_model
    done = run_process("predict", model, input=_npy_bytes(x))
    assert done.returncode == 0, done.stderr
    y = np.load(io.BytesIO(done.stdout))
    np.testing.assert_allclose(y, _reference(weights, x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_npz_and_override_weights(cli, dense_model, tmp_path):
    model, weights, x = dense_model
    result = cli("predict", model, tmp_path / "x.npy", "--weights", tmp_path / "w.npz",
                 "-o", tmp_path / "y.npy")
    assert result.code == 0, result
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"),
                               _reference(weights, x.astype(np.float64)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("convert", [
    lambda x: x.astype(np.float64),
    lambda x: np.asfortranarray(x),
    lambda x: x.astype(">f4"),
    lambda x: (x * 10).astype(np.int64),
])
def test_inputs_are_converted(cli, dense_model, tmp_path, convert):
    model, weights, x = dense_model
    converted = convert(x)
    np.save(tmp_path / "c.npy", converted)
    assert cli("predict", model, tmp_path / "c.npy", "-o", tmp_path / "y.npy").code == 0
    expected = _reference(weights, np.asarray(converted, dtype=np.float32).astype(np.float64))
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-6)


def test_argmax_and_top_k(cli, dense_model, tmp_path):
    model, weights, x = dense_model
    expected = _reference(weights, x.astype(np.float64))
    argmax = cli("predict", model, tmp_path / "x.npy", "--argmax")
    assert argmax.out.split() == [str(i) for i in expected.argmax(axis=1)]
    top = cli("predict", model, tmp_path / "x.npy", "--top-k", "2").out.splitlines()
    assert len(top) == 7
    first = [pair.split(":") for pair in top[0].split()]
    order = np.argsort(-expected[0])[:2]
    assert [int(i) for i, _ in first] == list(order)
    assert float(first[0][1]) == pytest.approx(expected[0, order[0]], rel=1e-5)


def test_bad_inputs(cli, dense_model, tmp_path):
    model, _, _ = dense_model
    np.save(tmp_path / "wide.npy", np.zeros((2, 5), np.float32))
    wrong = cli("predict", model, tmp_path / "wide.npy", "-o", tmp_path / "y.npy")
    assert wrong.code == 65 and "(2, 5)" in wrong.err and "(None, 4)" in wrong.err
    np.save(tmp_path / "c.npy", np.zeros((2, 4), np.complex64))
    assert cli("predict", model, tmp_path / "c.npy", "-o", tmp_path / "y.npy").code == 65
    np.save(tmp_path / "o.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    assert cli("predict", model, tmp_path / "o.npy", "-o", tmp_path / "y.npy").code == 65
    assert cli("predict", model, tmp_path / "none.npy", "-o", tmp_path / "y.npy").code == 66
    assert not (tmp_path / "y.npy").exists()


def test_failed_run_keeps_existing_output(cli, dense_model, tmp_path):
    model, _, _ = dense_model
    (tmp_path / "y.npy").write_bytes(b"precious")
    np.save(tmp_path / "wide.npy", np.zeros((2, 5), np.float32))
    assert cli("predict", model, tmp_path / "wide.npy", "-o", tmp_path / "y.npy").code == 65
    assert (tmp_path / "y.npy").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["m.yaml", "m.safetensors", "w.npz", "x.npy", "wide.npy", "y.npy"])
    missing_folder = cli("predict", model, tmp_path / "x.npy", "-o", tmp_path / "no" / "y.npy")
    assert missing_folder.code == 73


def test_weights_mismatch_names_key_and_shapes(cli, dense_model, tmp_path):
    model, weights, _ = dense_model
    bad = dict(weights, **{"dense/kernel": np.zeros((3, 5))})
    np.savez(tmp_path / "bad.npz", **bad)
    result = cli("predict", model, tmp_path / "x.npy", "--weights", tmp_path / "bad.npz")
    assert result.code == 65
    assert "dense/kernel has shape (3, 5), expected (4, 5)" in result.err
    missing = {k: v for k, v in weights.items() if k != "dense_1/bias"}
    np.savez(tmp_path / "missing.npz", **missing)
    result = cli("validate", model, "--weights", tmp_path / "missing.npz")
    assert result.code == 65 and "missing tensor dense_1/bias of shape (3,)" in result.err


def test_binary_never_to_a_terminal(dense_model, tmp_path):
    model, _, _ = dense_model
    leader, follower = pty.openpty()
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "seqcli", "predict", str(model),
                           str(tmp_path / "x.npy")], stdout=follower, stderr=subprocess.PIPE,
                          timeout=300)
    os.close(follower)
    os.close(leader)
    assert done.returncode == 2
    assert b"terminal" in done.stderr


def test_deferred_build_from_the_first_input(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("seed: 3\nlayers:\n  - {type: Conv2D, filters: 2, kernel_size: 3}\n"
                     "  - {type: GlobalAveragePooling2D}\n")
    np.save(tmp_path / "x.npy", np.ones((2, 6, 5, 3), np.float32))
    result = cli("predict", model, tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert result.code == 0, result
    assert np.load(tmp_path / "y.npy").shape == (2, 2)


def test_init_then_predict_is_reproducible(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [4]\nseed: 7\nlayers:\n  - {type: Dense, units: 3}\n"
                     "  - {type: BatchNormalization}\n")
    assert cli("init", model, "-o", tmp_path / "w.safetensors").code == 0
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    assert cli("predict", model, tmp_path / "x.npy", "-o", tmp_path / "a.npy").code == 0
    assert cli("predict", model, tmp_path / "x.npy", "--weights", tmp_path / "w.safetensors",
               "-o", tmp_path / "b.npy").code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    weights = seqcli.load(model, weights=str(tmp_path / "w.safetensors")).weights
    assert list(weights) == ["dense/kernel", "dense/bias", "batch_normalization/gamma",
                             "batch_normalization/beta", "batch_normalization/moving_mean",
                             "batch_normalization/moving_variance"]
    limit = np.sqrt(6 / (4 + 3))  # glorot_uniform
    assert np.abs(weights["dense/kernel"]).max() <= limit
    assert weights["dense/kernel"].std() > limit / 4
    np.testing.assert_array_equal(weights["batch_normalization/moving_variance"], np.ones(3))


def test_init_refuses_to_replace_the_models_weights(cli, dense_model):
    model, _, _ = dense_model
    before = (model.parent / "m.safetensors").read_bytes()
    result = cli("init", model)
    assert result.code == 2 and "--force" in result.err
    assert (model.parent / "m.safetensors").read_bytes() == before


def test_transfer_learning_keeps_the_base_weights(cli, tmp_path):
    (tmp_path / "base.yaml").write_text("input_shape: [4]\nweights: base.npz\nlayers:\n"
                                        "  - {type: Dense, units: 3, activation: relu}\n")
    kernel = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    np.savez(tmp_path / "base.npz", **{"dense/kernel": kernel, "dense/bias": np.ones(3)})
    (tmp_path / "new.yaml").write_text("input_shape: [4]\nlayers:\n"
                                       "  - {type: Sequential, name: base, from: base.yaml, "
                                       "trainable: false}\n  - {type: Dense, units: 2}\n")
    model = seqcli.load(tmp_path / "new.yaml")
    np.testing.assert_array_equal(model.weights["base/dense/kernel"], kernel)
    assert model.initialised_weights == ["dense/kernel", "dense/bias"]
    x = np.ones((1, 4), np.float32)
    hidden = np.maximum(x @ kernel + 1, 0)
    expected = hidden @ model.weights["dense/kernel"] + model.weights["dense/bias"]
    np.testing.assert_allclose(model(x), expected, rtol=1e-5)


def test_python_api_mirrors_keras(tmp_path):
    from seqcli.layers import Dense

    model = seqcli.load(CONFIGS / "dense_stack.yaml")
    assert [layer.name for layer in model.layers] == ["dense", "dense_1", "dense_2"]
    assert model.get_layer("dense_1").units == 3
    model.pop()
    assert model.output_shape == (None, 3)
    model.add(Dense(units=7))
    assert [layer.name for layer in model.layers] == ["dense", "dense_1", "dense_2"]
    assert model(np.ones((2, 4))).shape == (2, 7)
    assert model.predict(np.ones((5, 4)), batch_size=2).shape == (5, 7)
    lines = []
    model.summary(print_fn=lines.append)
    assert "Total params: 10 + 9 + 28" not in lines[0] and "dense_2 (Dense)" in lines[0]


def _peak_rss_kb(*args) -> int:
    """Peak resident memory of one `seqcli` run, in KiB (via a wrapper process)."""
    import subprocess
    import sys

    code = ("import resource, subprocess, sys; "
            "subprocess.run(sys.argv[1:], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "seqcli", *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_memory_stays_bounded_whatever_the_input_size(tmp_path):
    """A 400 MB input costs no more resident memory than a tiny one (pages are released)."""
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [128, 128, 3]\nlayers:\n  - {type: MaxPooling2D, pool_size: 4}\n"
                     "  - {type: GlobalAveragePooling2D}\n")
    big = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32,
                                    shape=(2048, 128, 128, 3))
    big[:] = 1.0
    big.flush()
    del big
    np.save(tmp_path / "small.npy", np.ones((2, 128, 128, 3), np.float32))
    small_rss = _peak_rss_kb("predict", model, tmp_path / "small.npy", "-o", tmp_path / "a.npy")
    big_rss = _peak_rss_kb("predict", model, tmp_path / "big.npy", "-o", tmp_path / "b.npy")
    assert big_rss < small_rss + 100_000, (small_rss, big_rss)
    assert np.load(tmp_path / "b.npy", mmap_mode="r").shape == (2048, 3)


def test_init_weights_from_a_pretrained_file(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("input_shape: [4]\nlayers:\n  - {type: Dense, units: 3, name: base}\n"
                     "  - {type: Dense, units: 2, name: new_head}\n")
    trained = {"base/kernel": np.full((4, 3), 0.5), "base/bias": np.ones(3),
               "old_head/kernel": np.zeros((3, 7))}
    np.savez(tmp_path / "pre.npz", **trained)
    result = cli("init", model, "--weights-from", tmp_path / "pre.npz", "-o", tmp_path / "w.npz")
    assert result.code == 0, result
    assert "took 2 tensors" in result.err and "not used: old_head/kernel" in result.err
    weights = np.load(tmp_path / "w.npz")
    np.testing.assert_array_equal(weights["base/kernel"], np.full((4, 3), 0.5))
    assert weights["new_head/kernel"].std() > 0  # initialised
    np.savez(tmp_path / "bad.npz", **{"base/kernel": np.zeros((5, 3))})
    bad = cli("init", model, "--weights-from", tmp_path / "bad.npz", "-o", tmp_path / "x.npz")
    assert bad.code == 65 and "base/kernel has shape (5, 3)" in bad.err
    assert not (tmp_path / "x.npz").exists()


def test_the_garbage_collector_is_paused_for_start_up_only():
    """The console entry pauses the collector; predict and extract resume it once their first
    batch has run, freezing what start-up left alive; a collector nobody paused is left be."""
    import gc

    from seqcli.cli.app import _GC_PAUSED, start_up_done
    from seqcli.cli.progress import Progress, progressing

    progress = Progress("predict", 3, enabled=False)
    was_enabled = gc.isenabled()
    try:
        gc.disable()
        _GC_PAUSED[0] = True
        batches = progressing(iter([np.zeros(1), np.zeros(1), np.zeros(1)]), progress)
        next(batches)
        assert not gc.isenabled()  # the first batch runs with it paused
        next(batches)
        assert gc.isenabled() and gc.get_freeze_count() > 0
        gc.unfreeze()
        gc.disable()  # not paused by the entry point: start_up_done changes nothing
        start_up_done()
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        _GC_PAUSED[0] = False
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def test_the_console_entry_runs_the_cli_with_the_collector_paused(tmp_path):
    """`seqcli` and `python -m seqcli` enter through seqcli.__main__.run."""
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["seqcli"] == "seqcli.__main__:run"
    code = ("import gc, seqcli.cli as cli\n"
            "def spy(*, gc_paused=False):\n"
            "    print(gc_paused, gc.isenabled())\n"
            "cli.run = spy\n"
            "from seqcli.__main__ import run\n"
            "run()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.stdout.split() == ["True", "False"], done.stderr


def test_a_named_command_is_built_alone_with_the_same_help():
    """`seqcli NAME ...` builds NAME's click command only; its help is the whole group's."""
    import typer

    from seqcli.cli.app import _click_command, app

    every = typer.main.get_command(app)
    assert set(_click_command(["predict", "m.yaml"]).commands) == {"predict"}
    assert set(_click_command(["export-onnx"]).commands) == {"export-onnx"}
    assert set(_click_command(["predcit"]).commands) == set(every.commands)
    assert set(_click_command(["--help"]).commands) == set(every.commands)
    assert set(_click_command([]).commands) == set(every.commands)
    for name, command in every.commands.items():
        alone = _click_command([name])
        with alone.make_context("seqcli", [name], resilient_parsing=True) as group:
            with alone.commands[name].make_context(name, [], parent=group,
                                                   resilient_parsing=True) as ctx:
                help_alone = ctx.get_help()
        with every.make_context("seqcli", [name], resilient_parsing=True) as group:
            with command.make_context(name, [], parent=group, resilient_parsing=True) as ctx:
                assert ctx.get_help() == help_alone


def test_each_input_batch_is_let_go_before_the_next_is_read():
    """Only one input batch is alive at a time: the next reuses its memory."""
    import weakref

    from seqcli.config.load import load_model_text
    from seqcli.io.arrays import NonFiniteCounter

    model = seqcli.Sequential.from_loaded(load_model_text(
        "input_shape: [3]\nlayers:\n  - {type: Dense, units: 2}\n", "m.yaml", Path(".")), None)
    model.build((3,))
    alive = []

    def upstream():
        for _ in range(3):
            alive[:] = [ref for ref in alive if ref() is not None]
            assert not alive, "the previous batch is still referenced"
            batch = np.ones((4, 3), np.float32)
            alive.append(weakref.ref(batch))
            yield batch
            del batch

    outputs = list(model.predict_batches(NonFiniteCounter("x").check(upstream())))
    assert len(outputs) == 3 and outputs[0].shape == (4, 2)
