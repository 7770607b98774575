"""`seqcli summary` and `seqcli validate`: the guide's published numbers, the table, the JSON
document, exit codes."""

from __future__ import annotations

import json

from tests.conftest import CONFIGS, run_process


def test_guide_dense_stack(cli):
    result = cli("summary", CONFIGS / "dense_stack.yaml", "--json")
    assert result.code == 0, result
    doc = json.loads(result.out)
    assert [(r["name"], r["output_shape"], r["params"]) for r in doc["layers"]] == [
        ("dense", [None, 2], 10), ("dense_1", [None, 3], 9), ("dense_2", [None, 4], 16)]
    assert (doc["total_params"], doc["trainable_params"], doc["non_trainable_params"]) == (35, 35, 0)
    assert doc["input_shape"] == [None, 4]
    assert result.err == ""


def test_guide_convnet(cli):
    doc = json.loads(cli("summary", CONFIGS / "guide_convnet.yaml", "--json").out)
    rows = [(r["name"], r["type"], tuple(r["output_shape"]), r["params"]) for r in doc["layers"]]
    assert rows == [
        ("conv2d", "Conv2D", (None, 123, 123, 32), 2432),
        ("conv2d_1", "Conv2D", (None, 121, 121, 32), 9248),
        ("max_pooling2d", "MaxPooling2D", (None, 40, 40, 32), 0),
        ("conv2d_2", "Conv2D", (None, 38, 38, 32), 9248),
        ("conv2d_3", "Conv2D", (None, 36, 36, 32), 9248),
        ("max_pooling2d_1", "MaxPooling2D", (None, 12, 12, 32), 0),
        ("conv2d_4", "Conv2D", (None, 10, 10, 32), 9248),
        ("conv2d_5", "Conv2D", (None, 8, 8, 32), 9248),
        ("max_pooling2d_2", "MaxPooling2D", (None, 4, 4, 32), 0),
        ("global_max_pooling2d", "GlobalMaxPooling2D", (None, 32), 0),
        ("dense", "Dense", (None, 10), 330),
    ]
    # the guide's conv stack is 48,672 parameters
    assert sum(r[3] for r in rows[:9]) == 48672
    # 396 MFLOP per image, i.e. 198 M multiply-accumulates
    assert doc["total_macs"] == 198_004_640


def test_transfer_learning_stack(cli):
    doc = json.loads(cli("summary", CONFIGS / "transfer_learning.yaml", "--json").out)
    base = doc["layers"][0]
    assert (base["name"], base["type"], base["trainable_params"]) == ("base", "Sequential", 0)
    assert doc["trainable_params"] == 330
    assert doc["non_trainable_params"] == base["params"]


def test_summary_text_matches_keras_layout(cli):
    out = cli("summary", CONFIGS / "dense_stack.yaml").out
    lines = out.splitlines()
    assert lines[0] == 'Model: "sequential"'
    assert lines[1].split() == ["Layer", "(type)", "Output", "Shape", "Param", "#", "MACs"]
    assert lines[3].split() == ["dense", "(Dense)", "(None,", "2)", "10", "8"]
    assert " Total params: 35 (140.00 B)" in lines
    assert " Trainable params: 35 (140.00 B)" in lines
    assert " Non-trainable params: 0 (0.00 B)" in lines
    assert not any(ch in out for ch in "┏━│└")  # no box drawing outside a terminal


def test_summary_sizes_in_kilobytes(cli):
    out = cli("summary", CONFIGS / "guide_convnet.yaml").out
    assert " Total params: 49,002 (191.41 KB)" in out.splitlines()


def test_show_trainable_and_expand_nested(cli):
    out = cli("summary", CONFIGS / "transfer_learning.yaml", "--show-trainable",
              "--expand-nested").out
    rows = {line.split()[0] if not line.startswith("   └") else line.split()[1]: line
            for line in out.splitlines()[3:-6]}
    assert rows["base"].rstrip().endswith("N")
    assert rows["batch_normalization"].rstrip().endswith("N")
    assert rows["dropout"].rstrip().endswith("-")
    assert rows["dense"].rstrip().endswith("Y")
    assert "   └ conv2d (Conv2D)" in out


def test_expand_nested_json_rows(cli):
    doc = json.loads(cli("summary", CONFIGS / "transfer_learning.yaml", "--json",
                         "--expand-nested").out)
    nested = [r for r in doc["layers"] if r.get("depth")]
    assert nested[0]["name"] == "base/rescaling"
    assert sum(r["params"] for r in nested) == doc["layers"][0]["params"]


def test_activation_memory_scales_with_batch(cli):
    one = json.loads(cli("summary", CONFIGS / "dense_stack.yaml", "--json").out)
    many = json.loads(cli("summary", CONFIGS / "dense_stack.yaml", "--json",
                          "--batch-size", "8").out)
    assert one["activation_bytes"] == (2 + 3 + 4) * 4
    assert many["activation_bytes"] == 8 * one["activation_bytes"]


def test_deferred_build_needs_a_shape(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("layers:\n  - {type: Dense, units: 2}\n")
    result = cli("summary", model)
    assert result.code == 2 and result.out == ""
    assert "no input shape" in result.err and "--input-shape" in result.err
    doc = json.loads(cli("summary", model, "--json", "--input-shape", "3").out)
    assert doc["total_params"] == 8
    assert cli("validate", model).code == 0


def test_input_shape_option(cli):
    assert cli("summary", CONFIGS / "dense_stack.yaml", "--input-shape", "4").code == 0
    differs = cli("summary", CONFIGS / "dense_stack.yaml", "--input-shape", "5")
    assert differs.code == 2 and "differs" in differs.err
    bad = cli("summary", CONFIGS / "dense_stack.yaml", "--input-shape", "a,b")
    assert bad.code == 2 and "positive integers" in bad.err


def test_validate_ok_and_errors(cli, tmp_path):
    ok = cli("validate", CONFIGS / "guide_convnet.yaml")
    assert ok.code == 0 and ok.out.startswith("OK:")
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers:\n  - {type: Dense, units: 0}\n  - {type: Dens}\n")
    result = cli("validate", bad)
    assert result.code == 65 and result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{bad}:") for line in lines)


def test_exit_codes(cli, tmp_path):
    assert cli("summary", tmp_path / "missing.yaml").code == 66
    assert cli("summary", tmp_path).code == 66
    assert cli("summary").code == 2
    assert cli("summary", CONFIGS / "dense_stack.yaml", "--no-such-option").code == 2


def test_every_config_summarises(cli):
    for path in sorted(CONFIGS.glob("*.yaml")):
        result = cli("summary", path)
        assert result.code == 0, (path, result)


def test_real_process_stdin_and_streams():
    text = (CONFIGS / "dense_stack.yaml").read_bytes()
    done = run_process("summary", "-", "--json", input=text)
    assert done.returncode == 0 and json.loads(done.stdout)["total_params"] == 35
    assert done.stderr == b""
    broken = run_process("summary", "-", input=b"layers: [\n")
    assert broken.returncode == 65 and broken.stdout == b""
    assert broken.stderr.decode().startswith("<stdin>:2:1: invalid YAML")
    assert b"Traceback" not in broken.stderr


def test_no_numba_for_summary():
    code = ("import sys; from seqcli.cli import main; main(['summary', "
            f"'{CONFIGS / 'guide_convnet.yaml'}']); "
            "assert 'numba' not in sys.modules and 'numpy' not in sys.modules")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert done.returncode == 0, done.stderr


def test_summary_does_not_search_package_metadata_for_pydantic_plugins():
    """The command line turns pydantic's plugins off and stands in for their loader, whose
    import would cost importlib.metadata; any other name asked of the loader is the real
    one's."""
    code = ("import os, sys; os.environ['PYDANTIC_DISABLE_PLUGINS'] = '__all__'\n"
            "from seqcli.__main__ import _no_plugin_loader; _no_plugin_loader()\n"
            "from seqcli.cli import main\n"
            f"assert main(['summary', '{CONFIGS / 'guide_convnet.yaml'}']) == 0\n"
            "assert 'importlib.metadata' not in sys.modules, 'importlib.metadata imported'\n"
            "from pydantic.plugin._loader import PYDANTIC_ENTRY_POINT_GROUP, get_plugins\n"
            "assert PYDANTIC_ENTRY_POINT_GROUP == 'pydantic' and list(get_plugins()) == []\n")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_summary_imports_only_the_layer_modules_it_uses():
    code = ("import sys; from seqcli.cli import main; main(['summary', "
            f"'{CONFIGS / 'guide_convnet.yaml'}']); "
            "print(sorted(m for m in sys.modules if m.startswith('seqcli.layers.')))")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str([f"seqcli.layers.{name}" for name in (
        "base", "conv", "core", "pooling", "regularizers", "sequential")])
