"""Issue 19: predict and extract on a Dask cluster, Zarr and shard-glob inputs, Zarr outputs.

One real `distributed.LocalCluster` of two single-threaded worker processes serves the module
(`--dask tcp://...`); one test starts its own with `--dask local:2`. Every result is compared
with the same command run in one process, within 1e-6 of the output's scale.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

import dask.array as da  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402

import seqcli  # noqa: E402
import seqcli.dask  # noqa: E402
from tests.conftest import CONFIGS, REPO, run_process  # noqa: E402
from tests.test_bad_inputs import snapshot, unchanged  # noqa: E402

ROWS = 101
BASE = """\
input_shape: [12, 12, 3]
weights: base.safetensors
layers:
  - {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}
  - {type: MaxPooling2D}
"""
MODEL = """\
input_shape: [12, 12, 3]
seed: 3
layers:
  - {type: Sequential, name: base, from: base.yaml}
  - {type: Flatten}
  - {type: Dense, units: 5, activation: tanh}
"""
IDS = """\
input_shape: [6]
seed: 1
layers:
  - {type: Embedding, input_dim: 10, output_dim: 3}
  - {type: GlobalAveragePooling1D}
"""


@pytest.fixture(scope="module")
def cluster():
    """The module's cluster: (its client, `--dask` address)."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL) as local, \
            Client(local) as client:
        yield client, local.scheduler_address


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A model with a `from:` file and its weights, its input as .npy, Zarr 2 and 3 (chunked
    on other axes too), shards of one size and of mixed sizes, and its output in one
    process."""
    from seqcli.cli import main

    folder = tmp_path_factory.mktemp("dask")
    (folder / "base.yaml").write_text(BASE)
    (folder / "model.yaml").write_text(MODEL)
    assert main(["init", str(folder / "base.yaml"), "-q"]) == 0
    x = np.random.default_rng(0).normal(size=(ROWS, 12, 12, 3)).astype(np.float32)
    np.save(folder / "x.npy", x)
    zarr.create_array(folder / "x2.zarr", shape=x.shape, chunks=(17, 12, 12, 3), dtype="f4",
                      zarr_format=2)[:] = x
    zarr.create_array(folder / "x3.zarr", shape=x.shape, chunks=(20, 6, 12, 3),
                      dtype="f4")[:] = x
    (folder / "even").mkdir()
    (folder / "mixed").mkdir()
    for index, (start, stop) in enumerate([(0, 40), (40, 80), (80, ROWS)]):
        np.save(folder / "even" / f"part-{index}.npy", x[start:stop])
    for index, (start, stop) in enumerate([(0, 30), (30, 80), (80, ROWS)]):
        np.save(folder / "mixed" / f"part-{index}.npy", x[start:stop].astype(np.float64))
    assert main(["predict", str(folder / "model.yaml"), str(folder / "x.npy"),
                 "-o", str(folder / "reference.npy"), "-q"]) == 0
    return folder


def close(found: np.ndarray, expected: np.ndarray) -> None:
    """Equal within 1e-6 of the output's scale."""
    assert found.shape == expected.shape and found.dtype == np.float32
    assert np.abs(found - expected).max() <= 1e-6 * np.abs(expected).max()


def read(path: Path) -> np.ndarray:
    """A .npy file or a Zarr array's values."""
    return zarr.open_array(path, mode="r")[:] if path.suffix == ".zarr" else np.load(path)


INPUTS = {"npy": "x.npy", "zarr2": "x2.zarr", "zarr3": "x3.zarr", "even shards": "even/part-*.npy",
          "mixed shards": "mixed/part-*.npy"}


@pytest.mark.parametrize("source", INPUTS)
@pytest.mark.parametrize("suffix", [".npy", ".zarr"])
def test_predict_on_a_cluster_equals_one_process(cli, cluster, work, tmp_path, source, suffix):
    _, address = cluster
    out = tmp_path / f"y{suffix}"
    result = cli("predict", work / "model.yaml", work / INPUTS[source], "-o", out,
                 "--dask", address, "--batch-size", "8", "-q")
    assert (result.code, result.out, result.err) == (0, "", "")
    close(read(out), np.load(work / "reference.npy"))
    assert sorted(os.listdir(tmp_path)) == [out.name]  # nothing staged is left


def test_images_on_a_cluster_equal_one_process(cli, cluster, tmp_path):
    """An image folder, read by the workers (by absolute path) and resized there as in one
    process, to an in-place .npy and to ranked lines that start with each file's path."""
    _, address = cluster
    images = Path(__file__).parent / "image_reference" / "images"
    model = images.parent / "model.yaml"
    alone, spread = tmp_path / "alone.npy", tmp_path / "spread.npy"
    assert cli("predict", model, images, "-o", alone, "-q").code == 0
    result = cli("predict", model, images, "-o", spread, "--dask", address, "--batch-size", "4",
                 "-q")
    assert (result.code, result.out, result.err) == (0, "", "")
    close(np.load(spread), np.load(alone))
    ranked = cli("predict", model, images, "--top-k", "1", "--dask", address, "-q")
    assert ranked.code == 0, ranked
    lines = ranked.out.splitlines()
    assert len(lines) == len(np.load(alone)) and lines[0].startswith(f"{images / 'loose.png'}\t")
    assert [int(line.split("\t")[1].split(":")[0]) for line in lines] == \
        np.load(alone).argmax(1).tolist()


@pytest.mark.parametrize("source", INPUTS)
def test_one_process_reads_the_same_inputs_and_writes_zarr(cli, work, tmp_path, source):
    out = tmp_path / "y.zarr"
    result = cli("predict", work / "model.yaml", work / INPUTS[source], "-o", out,
                 "--batch-size", "8", "-q")
    assert result.code == 0, result
    close(read(out), np.load(work / "reference.npy"))


@pytest.mark.parametrize(("source", "chunks", "zarr_format"), [
    ("x2.zarr", 17, 2), ("x3.zarr", 20, 3), ("even/part-*.npy", 40, 3)])
def test_a_zarr_output_is_chunked_on_rows_like_the_input(cli, cluster, work, tmp_path, source,
                                                          chunks, zarr_format):
    out = tmp_path / "y.zarr"
    assert cli("predict", work / "model.yaml", work / source, "-o", out, "--dask",
               cluster[1], "-q").code == 0
    stored = zarr.open_array(out, mode="r")
    assert stored.chunks == (chunks, 5) and stored.metadata.zarr_format == zarr_format


def test_zarr_through_an_fsspec_url_and_to_stdout(cluster, work):
    done = subprocess.run([sys.executable, "-m", "seqcli", "predict", work / "model.yaml",
                           f"file://{work / 'x3.zarr'}", "--dask", cluster[1], "-q"],
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    close(np.load(__import__("io").BytesIO(done.stdout)), np.load(work / "reference.npy"))


def test_local_cluster_of_two_workers(cli, work, tmp_path):
    result = cli("predict", work / "model.yaml", work / "x2.zarr", "-o", tmp_path / "y.npy",
                 "--dask", "local:2", "-q")
    assert result.code == 0, result
    close(np.load(tmp_path / "y.npy"), np.load(work / "reference.npy"))


def test_a_local_cluster_from_the_console_script(work, tmp_path):
    """`python -m seqcli` starts the fork server before the command line is read (here from
    the option's `=` form)."""
    done = subprocess.run([sys.executable, "-m", "seqcli", "predict", work / "model.yaml",
                           work / "x2.zarr", "-o", tmp_path / "y.npy", "--dask=local:2", "-q"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    close(np.load(tmp_path / "y.npy"), np.load(work / "reference.npy"))


def test_a_cluster_run_of_files_imports_distributed_but_not_dask_array(work, tmp_path):
    code = ("import sys\nfrom seqcli.cli import main\n"
            f"assert main(['predict', {str(work / 'model.yaml')!r}, {str(work / 'x.npy')!r}, "
            f"'-o', {str(tmp_path / 'y.npy')!r}, '--dask', 'local:1', '-q']) == 0\n"
            "print('distributed' in sys.modules, 'dask.array' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "True False"
    close(np.load(tmp_path / "y.npy"), np.load(work / "reference.npy"))


@pytest.mark.parametrize("argv, started", [
    (["predict", "m.yaml", "x.npy", "--dask", "local:2"], ["local:2"]),
    (["extract", "--dask=local", "m.yaml", "x.npy", "--layer", "d"], ["local"]),
    (["predict", "m.yaml", "x.npy", "--", "--dask", "local"], []),
    (["summary", "--dask", "local"], []),
    (["predict", "m.yaml", "x.npy", "--dask"], []),
])
def test_the_fork_server_starts_early_only_for_a_local_cluster(monkeypatch, argv, started):
    import seqcli.forkserver as forkserver

    seen = []
    monkeypatch.setattr(forkserver, "start_fork_server", seen.append)
    forkserver.start_early(argv)
    assert seen == started


def test_a_model_of_many_weights_runs_without_dasks_large_graph_warning(cluster, tmp_path):
    """The model travels in the graph once, on purpose: a model over Dask's 10 MB warning
    threshold (an Embedding of 11.5 MB) prints nothing on a cluster run, and gives the
    one-process outputs."""
    model = tmp_path / "wide.yaml"
    model.write_text("input_shape: [8]\nseed: 0\nlayers:\n"
                     "  - {type: Embedding, input_dim: 30000, output_dim: 96}\n"
                     "  - {type: GlobalAveragePooling1D}\n")
    np.save(tmp_path / "ids.npy", np.random.default_rng(0).integers(0, 30000, (40, 8)))
    one = run_process("predict", model, tmp_path / "ids.npy", "-o", tmp_path / "one.npy", "-q")
    assert one.returncode == 0, one.stderr
    done = run_process("predict", model, tmp_path / "ids.npy", "-o", tmp_path / "out.npy", "-q",
                       "--dask", cluster[1])
    assert (done.returncode, done.stderr) == (0, b"")
    close(np.load(tmp_path / "out.npy"), np.load(tmp_path / "one.npy"))


def test_the_fork_servers_preload_readies_numba_without_a_thread():
    """What the fork server imports before it forks workers: numba's runtime and the thread
    pool's spin loops loaded, the common kernels imported, and still one thread (a fork copies
    only the thread that forks)."""
    from seqcli.forkserver import FORK_SERVER_PRELOAD

    assert "seqcli.dask.preload" in FORK_SERVER_PRELOAD
    code = ("import sys, threading, seqcli.dask.preload\n"
            "from numba.core.runtime import rtsys\n"
            "from seqcli.kernels import threads\n"
            "print(threading.active_count(), bool(rtsys._init), len(threads._POOL.workers),\n"
            "      all(f'seqcli.kernels.{name}' in sys.modules for name in\n"
            "          ('conv', 'conv_direct', 'winograd', 'dense', 'pooling', 'activations')),\n"
            "      threads._await_post.signatures != [])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "True", "0", "True", "True"]


def test_a_failing_preload_leaves_the_fork_server_running(monkeypatch):
    """An error while preloading is the worker's to report: the fork server's import of
    seqcli.dask.preload never raises (the fork server would stop, and no worker start)."""
    import importlib

    import seqcli.dask.preload as preload
    from seqcli.kernels import numba_startup

    def broken():
        raise RuntimeError("no cache")

    monkeypatch.setattr(numba_startup, "numba_ready", broken)
    importlib.reload(preload)


@pytest.mark.parametrize("suffix", [".zarr", ".npz"])
def test_extract_on_a_cluster_equals_one_process(cli, cluster, work, tmp_path, suffix):
    layers = ["--layer", "base/conv2d", "--layer", "dense"]
    expected = tmp_path / "expected.npz"
    assert cli("extract", work / "model.yaml", work / "x.npy", *layers, "-o", expected,
               "-q").code == 0
    out = tmp_path / f"maps{suffix}"
    result = cli("extract", work / "model.yaml", work / "x3.zarr", *layers, "-o", out,
                 "--dask", cluster[1], "-q")
    assert (result.code, result.err) == (0, ""), result
    with np.load(expected) as reference:
        if suffix == ".zarr":
            group = zarr.open_group(out, mode="r")
            found = {path: group[path][:] for path in ("base/conv2d", "dense")}
        else:
            with np.load(out) as written:
                found = dict(written)
        for path in ("base/conv2d", "dense"):
            close(found[path], reference[path])


def test_extract_one_layer_to_npy_in_place(cli, cluster, work, tmp_path):
    assert cli("extract", work / "model.yaml", work / "x.npy", "--layer", "base",
               "-o", tmp_path / "one.npy", "-q").code == 0
    result = cli("extract", work / "model.yaml", work / "mixed/part-*.npy", "--layer", "base",
                 "-o", tmp_path / "many.npy", "--dask", cluster[1], "-q")
    assert result.code == 0, result
    close(np.load(tmp_path / "many.npy"), np.load(tmp_path / "one.npy"))


class KillOnce(WorkerPlugin):
    """Kills the worker process it runs in (SIGKILL) as its `after`-th chunk starts, once in
    the whole cluster (the `marker` file says it happened)."""

    name = "seqcli-test-kill-once"

    def __init__(self, marker: str, after: int):
        self.marker, self.after, self.started = marker, after, 0

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and str(key).startswith("seqcli-chunk-"):
            self.started += 1
            if self.started >= self.after and not os.path.exists(self.marker):
                Path(self.marker).touch()
                os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("suffix", [".zarr", ".npy"])
def test_a_worker_killed_mid_run_has_its_chunks_run_again(cli, cluster, work, tmp_path,
                                                          suffix):
    client, address = cluster
    before = set(client.run(os.getpid).values())
    marker = tmp_path / "killed"
    client.register_plugin(KillOnce(str(marker), after=2))
    try:
        result = cli("predict", work / "model.yaml", work / "x2.zarr", "-o",
                     tmp_path / f"y{suffix}", "--dask", address, "-q")
    finally:
        client.unregister_worker_plugin(KillOnce.name)
    assert marker.exists()  # a worker died while it ran a chunk
    assert (result.code, result.err) == (0, ""), result
    close(read(tmp_path / f"y{suffix}"), np.load(work / "reference.npy"))
    client.wait_for_workers(2, timeout=60)  # the nanny starts a new one
    assert set(client.run(os.getpid).values()) != before


def _corrupt_chunk(folder: Path, source: Path) -> Path:
    """A copy of the Zarr 2 array `source` whose chunk of rows 68:85 is garbage."""
    import shutil

    copy = folder / "bad.zarr"
    shutil.copytree(source, copy)
    (copy / "4.0.0.0").write_bytes(b"not a chunk")
    return copy


@pytest.mark.parametrize("suffix", [".npy", ".zarr"])
def test_a_failed_run_leaves_an_existing_output_as_it_was(cli, cluster, work, tmp_path,
                                                          suffix):
    inputs = tmp_path / "in"
    inputs.mkdir()
    bad = _corrupt_chunk(inputs, work / "x2.zarr")
    outputs = tmp_path / "out"
    outputs.mkdir()
    out = outputs / f"y{suffix}"
    assert cli("predict", work / "model.yaml", work / "x.npy", "-o", out, "-q").code == 0
    before = snapshot(outputs)
    result = cli("predict", work / "model.yaml", bad, "-o", out, "--dask", cluster[1], "-q")
    assert result.code == 65, result
    assert "bad.zarr: cannot read rows 68:85" in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    unchanged(outputs, before)


def test_a_model_error_on_the_workers_names_the_row(cli, cluster, tmp_path):
    (tmp_path / "ids.yaml").write_text(IDS)
    ids = np.random.default_rng(2).integers(0, 10, (50, 6))
    ids[43, 2] = 12
    zarr.create_array(tmp_path / "ids.zarr", shape=ids.shape, chunks=(10, 6),
                      dtype="i8")[:] = ids
    out = tmp_path / "y.zarr"
    zarr.create_array(out, shape=(1,), dtype="f4")[:] = 7
    before = snapshot(out)
    result = cli("predict", tmp_path / "ids.yaml", tmp_path / "ids.zarr", "-o", out,
                 "--dask", cluster[1], "-q")
    assert result.code == 65, result
    assert "input sample 43, position (2): id 12 is outside [0, 10)" in result.err
    unchanged(out, before)
    assert sorted(os.listdir(tmp_path)) == ["ids.yaml", "ids.zarr", "y.zarr"]


def test_strict_and_non_finite_warnings_on_a_cluster(cli, cluster, work, tmp_path):
    x = np.load(work / "x.npy")
    x[37, 1, 2, 0] = np.nan
    np.save(tmp_path / "nan.npy", x)
    args = ["predict", work / "model.yaml", tmp_path / "nan.npy", "--batch-size", "8"]
    one = cli(*args, "-o", tmp_path / "a.npy", "-q")
    many = cli(*args, "-o", tmp_path / "b.npy", "-q", "--dask", cluster[1])
    assert (one.code, many.code) == (0, 0)
    assert many.err == one.err.replace("a.npy", "b.npy") and "1 NaN and 0 Inf values" in one.err
    strict = cli(*args, "-o", tmp_path / "c.npy", "-q", "--strict", "--dask", cluster[1])
    assert strict.code == 65 and "row 37 holds NaN or Inf values" in strict.err


def test_an_unreachable_scheduler_is_exit_1_quickly(cli, work, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once it is closed
    started = time.monotonic()
    result = cli("predict", work / "model.yaml", work / "x.npy", "-o", tmp_path / "y.npy",
                 "--dask", f"tcp://127.0.0.1:{port}")
    assert result.code == 1
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in result.err
    assert time.monotonic() - started < 20
    assert not (tmp_path / "y.npy").exists()


def test_a_scheduler_without_workers_is_exit_1_not_a_hang(cli, work, tmp_path):
    with LocalCluster(n_workers=0, processes=True, dashboard_address="127.0.0.1:0",
                      silence_logs=logging.CRITICAL) as empty:
        started = time.monotonic()
        result = cli("predict", work / "model.yaml", work / "x.npy", "-o", tmp_path / "y.npy",
                     "--dask", empty.scheduler_address)
    assert result.code == 1 and "has no worker; start some with `dask worker" in result.err
    assert time.monotonic() - started < 20


def test_a_zarr_group_cannot_hold_a_layer_and_its_inner_layer(cli, work, tmp_path):
    result = cli("extract", work / "model.yaml", work / "x.npy", "--layer", "base",
                 "--layer", "base/conv2d", "-o", tmp_path / "maps.zarr")
    assert result.code == 2 and "cannot hold 'base' both as an array and as the group" \
        in result.err
    assert os.listdir(tmp_path) == []


def _set_version(version: str) -> str:
    import seqcli as package

    before, package.__version__ = package.__version__, version
    return before


def test_a_worker_of_another_version_is_refused(cli, cluster, work, tmp_path):
    client, address = cluster
    client.run(_set_version, "0.0.1")
    try:
        result = cli("predict", work / "model.yaml", work / "x.npy", "-o",
                     tmp_path / "y.npy", "--dask", address, "-q")
        assert result.code == 1
        assert "runs seqcli 0.0.1, and the client seqcli " + seqcli.__version__ in result.err
        lazy = seqcli.dask.predict(work / "model.yaml", da.from_array(
            np.load(work / "x.npy"), chunks=50))
        with pytest.raises(seqcli.errors.SeqcliError, match="0.0.1.*" + seqcli.__version__):
            client.compute(lazy).result()  # each chunk checks too (a worker that joins late)
    finally:
        client.run(_set_version, seqcli.__version__)
    assert not (tmp_path / "y.npy").exists()


def test_python_api_is_lazy_and_composes_with_to_zarr(cluster, work, tmp_path):
    client, _ = cluster
    x = da.from_zarr(str(work / "x3.zarr"))
    scores = seqcli.dask.predict(work / "model.yaml", x, batch_size=8)
    assert isinstance(scores, da.Array) and scores.shape == (ROWS, 5)
    assert scores.chunks[0] == x.chunks[0]
    scores.to_zarr(str(tmp_path / "scores.zarr"))  # computed on the cluster (the client)
    close(zarr.open_array(tmp_path / "scores.zarr", mode="r")[:],
          np.load(work / "reference.npy"))
    model = seqcli.load(work / "model.yaml")
    maps = seqcli.dask.extract(model, x, ["base", "dense"])
    expected = model.extract(np.load(work / "x.npy"), ["base", "dense"])
    for path, lazy in maps.items():
        assert lazy.shape == expected[path].shape
        close(client.compute(lazy).result(), expected[path])
    one = seqcli.dask.extract(model, x, "base/conv2d").compute(scheduler="threads")
    close(one, model.extract(np.load(work / "x.npy"), "base/conv2d"))


def test_the_model_travels_as_data(work, tmp_path):
    """The package holds the layers and weights, so no file is read once it is packed."""
    import shutil

    from seqcli.dask.package import pack, run_rows, unpack

    folder = tmp_path / "model"
    shutil.copytree(work, folder, ignore=shutil.ignore_patterns("*.zarr", "even", "mixed"))
    model = seqcli.load(folder / "model.yaml")
    model.build()
    package = pickle.loads(pickle.dumps(pack(model)))
    shutil.rmtree(folder)
    found = run_rows(unpack(package), np.load(work / "x.npy"), 0, paths=None, batch_size=8)
    close(found["output"], np.load(work / "reference.npy"))
    assert unpack(package) is unpack(package)  # built once per process, by content hash


@pytest.mark.parametrize(("spec", "code"), [("foo", 2), ("local:0", 2), ("local:x", 2),
                                            ("tcp://host", 2), ("host:99999", 2)])
def test_a_bad_spec_is_a_usage_error(cli, work, spec, code):
    result = cli("predict", work / "model.yaml", work / "x.npy", "--dask", spec)
    assert result.code == code and "--dask takes local, local:N" in result.err


def test_outputs_refused_before_any_work(cli, work, tmp_path):
    (tmp_path / "folder.zarr").mkdir()
    (tmp_path / "folder.zarr" / "keep.txt").write_text("mine")
    (tmp_path / "file.zarr").write_text("not a store")
    before = snapshot(tmp_path)
    model, x = work / "model.yaml", work / "x.npy"
    for args, code, words in [
        (["-o", tmp_path / "folder.zarr"], 73, "holds no Zarr store"),
        (["-o", tmp_path / "file.zarr"], 73, "it is a file, not a Zarr store"),
        (["-o", tmp_path / "missing" / "y.zarr"], 73, "does not exist"),
        (["--format", "zarr"], 2, "a Zarr store is a folder"),
        (["-o", "s3://bucket/y.zarr"], 2, "not to a URL"),
    ]:
        result = cli("predict", model, x, *args)
        assert result.code == code and words in result.err, (args, result)
    result = cli("predict", model, "-", "-o", tmp_path / "y.npy", "--dask", "local")
    assert result.code == 2 and "not stdin" in result.err
    unchanged(tmp_path, before)


def test_inputs_refused_with_their_exit_codes(cli, work, tmp_path):
    model = work / "model.yaml"
    group = zarr.open_group(tmp_path / "group.zarr", mode="w")
    group.create_array("images", shape=(3, 12, 12, 3), dtype="f4")
    np.save(tmp_path / "a-1.npy", np.zeros((2, 12, 12, 3), np.float32))
    np.save(tmp_path / "a-2.npy", np.zeros((2, 12, 12, 4), np.float32))
    zarr.create_array(tmp_path / "complex.zarr", shape=(2,), dtype="c8")
    for source, code, words in [
        (tmp_path / "nothing.zarr", 66, "no Zarr array there"),
        (tmp_path / "none-*.npy", 66, "no file matches this pattern"),
        (tmp_path / "group.zarr", 65, "is a Zarr group, not an array"),
        (tmp_path / "a-*.npy", 65, "shards are concatenated on the batch axis"),
        (tmp_path / "complex.zarr", 65, "of dtype complex64, which is not supported"),
    ]:
        result = cli("predict", model, source, "-o", tmp_path / "y.npy")
        assert result.code == code and words in result.err, (source, result)
        assert result.err.count("\n") == 1
    assert "group.zarr/NAME (it holds: images)" in cli(
        "predict", model, tmp_path / "group.zarr").err


def test_chunks_on_the_progress_line(monkeypatch):
    from seqcli.cli import progress as module

    shown = []

    class Line:
        def show(self, text):
            shown.append(text)

    monkeypatch.setattr(module, "is_terminal", lambda stream: True)
    monkeypatch.setattr(module, "StatusLine", lambda stream: Line())
    progress = module.Progress("predict", 1000, chunks=10)
    progress.start -= 2
    progress.advance(300, chunks=3)
    assert shown and shown[-1].startswith("predict: 300/1,000 rows (30%) - 3/10 chunks - ")
    assert shown[-1].endswith("rows/s - ETA 4s")


def test_plain_commands_never_import_dask_zarr_or_pillow(work):
    code = ("import sys\nfrom seqcli.cli import main\n"
            f"assert main(['summary', {str(CONFIGS / 'guide_convnet.yaml')!r}]) == 0\n"
            f"assert main(['predict', {str(work / 'model.yaml')!r}, {str(work / 'x.npy')!r}, "
            f"'-o', {str(work / 'plain.npy')!r}, '-q']) == 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed', 'zarr', 'fsspec', 'PIL') or m == 'seqcli.io.images'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_dask_bench_reads_chunk_costs_from_task_records():
    sys.path.insert(0, str(REPO))
    from bench.dask_bench import chunk_costs, dask_markdown

    def record(worker, start, stop):
        return {"key": "seqcli-chunk-x", "worker": worker,
                "startstops": [{"action": "transfer", "start": start - 1, "stop": start},
                               {"action": "compute", "start": start, "stop": stop}]}

    costs = chunk_costs([record("a", 0.0, 0.1), record("a", 0.102, 0.2), record("b", 0.0, 0.12),
                         record("b", 0.124, 0.22), record("b", 0.226, 0.33)])
    assert costs["chunks"] == 5 and costs["work"] == pytest.approx(0.1)
    assert costs["gap"] == pytest.approx(0.004)
    figures = {"images": 64, "rounds": 3, "workers": 2, "identical": True, "goal": 1.1,
               "holds": False, "seconds": {"one process, --threads 2": 1.0,
                                           "--dask local:2": 1.5},
               "ratios": {"one process, --threads 2": 1.0, "--dask local:2": 1.5},
               "chunks": 5, "chunk_rows": 32, "chunk_work": 0.1, "chunk_gap": 0.004,
               "task_overhead": 0.001, "input_bytes_per_chunk": 1 << 20,
               "output_bytes_per_chunk": 1280, "task_message_bytes": 500,
               "model_package_bytes": 2048}
    text = dask_markdown(figures)
    assert "| `seqcli predict … --dask local:2` | 1.50 | 43 | 1.50 |" in text
    assert "1.50×, **misses**" in text and "100 ms" in text and "4.0 ms" in text
