"""`seqcli bench` runs and prints well-formed reports (no timing is asserted: benchmarks are
not tests)."""

from __future__ import annotations

import json

from tests.conftest import CONFIGS

TINY_CONVNET = """\
input_shape: [9, 8, 2]
seed: 1
layers:
  - {type: Conv2D, filters: 16, kernel_size: 3, padding: same, activation: relu}
  - {type: MaxPooling2D}
  - {type: GlobalMaxPooling2D}
  - {type: Dense, units: 3, activation: softmax}
"""


def test_bench_json_document(cli):
    result = cli("bench", CONFIGS / "dense_stack.yaml", "--batch-size", "4", "--seconds", "0.05",
                 "--json", "--per-layer", "--threads", "1")
    assert result.code == 0, result
    document = json.loads(result.out)
    assert document["input_shape"] == [None, 4]
    assert document["batch_size"] == 4 and document["threads"] == 1
    assert document["macs_per_sample"] == 4 * 2 + 2 * 3 + 3 * 4
    assert document["runs"] >= 5 and document["images_per_s"] > 0
    latency = document["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert document["gemm_gflops"] > 0 and document["gflops"] > 0
    assert document["first_run_s"] > 0 and document["compiled"] >= 0
    assert [row["path"] for row in document["layers"]] == ["dense", "dense_1", "dense_2"]
    assert abs(sum(row["time_share"] for row in document["layers"]) - 1) < 1e-6


def test_bench_text_report_per_layer(cli, tmp_path):
    model = tmp_path / "tiny.yaml"
    model.write_text(TINY_CONVNET)
    result = cli("bench", model, "--batch-size", "3", "--seconds", "0.05", "--per-layer")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert [line.split()[0] for line in lines[:5]] == ["model", "load", "first", "steady",
                                                        "compute"]
    assert "images/s" in lines[3] and "p99" in lines[3] and "% of this machine's" in lines[4]
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["layer", "type", "MFLOP/img", "ms/batch", "GFLOP/s", "%GEMM",
                                "%time"]
    assert [row.split()[0] for row in table[1:]] == [
        "conv2d", "max_pooling2d", "global_max_pooling2d", "dense"]


def test_bench_deferred_model_needs_an_input_shape(cli, tmp_path):
    model = tmp_path / "deferred.yaml"
    model.write_text("layers:\n  - {type: Dense, units: 2}\n")
    result = cli("bench", model, "--seconds", "0.01")
    assert result.code == 2 and "--input-shape" in result.err
    result = cli("bench", model, "--seconds", "0.01", "--input-shape", "5", "--json")
    assert result.code == 0 and json.loads(result.out)["input_shape"] == [None, 5]


def test_bench_refuses_a_zero_batch(cli):
    result = cli("bench", CONFIGS / "dense_stack.yaml", "--batch-size", "0")
    assert result.code == 2
