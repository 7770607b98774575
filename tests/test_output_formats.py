"""Issue 17, output formats: the `-o` extension (or `--format`) chooses `.npy`, `.npz`, `.csv`
or `.jsonl` for predict and extract, and the right extension everywhere else; `--labels` and
`--threshold`; one input at most from stdin."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import on_terminal, run_process

PRECIOUS = b"an existing file that a refused run leaves as it is\n"
CLASSES = ("input_shape: [4]\nweights: w.safetensors\nlayers:\n"
           "  - {type: Dense, units: 5, activation: tanh}\n"
           "  - {type: Dense, units: 3, activation: softmax}\n")
BINARY = ("input_shape: [4]\nweights: b.safetensors\nlayers:\n"
          "  - {type: Dense, units: 1, activation: sigmoid}\n")
IMAGES = ("input_shape: [5, 5, 2]\nseed: 3\nlayers:\n"
          "  - {type: Conv2D, filters: 3, kernel_size: 2}\n"
          "  - {type: GlobalAveragePooling2D}\n  - {type: Dense, units: 2}\n")


@pytest.fixture
def work(tmp_path):
    """A 3-class model, a binary (sigmoid) one and a convnet with their weights and inputs,
    and `labels.txt`."""
    from seqcli.io.weights import write_safetensors

    rng = np.random.default_rng(17)
    write_safetensors(tmp_path / "w.safetensors", {
        "dense/kernel": rng.normal(size=(4, 5)), "dense/bias": rng.normal(size=5),
        "dense_1/kernel": rng.normal(size=(5, 3)), "dense_1/bias": rng.normal(size=3)})
    write_safetensors(tmp_path / "b.safetensors", {"dense/kernel": rng.normal(size=(4, 1)),
                                                   "dense/bias": np.zeros(1)})
    (tmp_path / "m.yaml").write_text(CLASSES)
    (tmp_path / "b.yaml").write_text(BINARY)
    (tmp_path / "conv.yaml").write_text(IMAGES)
    np.save(tmp_path / "x.npy", rng.normal(size=(7, 4)).astype(np.float32))
    np.save(tmp_path / "images.npy", rng.random((3, 5, 5, 2), dtype=np.float32))
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird, the small one\n")
    return tmp_path


def refused(result, code: int, *fragments: str) -> None:
    """One `seqcli: error:` line holding every fragment, exit `code`, nothing on stdout."""
    assert result.code == code, result
    assert result.out == "", result
    assert result.err.startswith("seqcli: error: ") and result.err.count("\n") == 1, result
    for fragment in fragments:
        assert fragment in result.err, (fragment, result.err)


def outputs(cli, work, *extra) -> np.ndarray:
    """The model's outputs on x.npy, as predict writes them in .npy."""
    assert cli("predict", work / "m.yaml", work / "x.npy", "-o", work / "ref.npy", *extra).code == 0
    return np.load(work / "ref.npy")


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """A CSV's header and its rows as float32."""
    with open(path, newline="", encoding="utf-8") as file:
        header, *rows = list(csv.reader(file))
    return header, np.array(rows, dtype=np.float64).astype(np.float32).reshape(len(rows), -1)


# --- the format follows the extension ------------------------------------------------------


def test_predict_writes_the_format_its_extension_names(cli, work):
    expected = outputs(cli, work)
    for name in ("p.npz", "p.csv", "p.jsonl", "P.CSV"):
        assert cli("predict", work / "m.yaml", work / "x.npy", "-o", work / name).code == 0
    with np.load(work / "p.npz") as archive:
        assert archive.files == ["output"]
        np.testing.assert_array_equal(archive["output"], expected)
    header, rows = read_csv(work / "p.csv")
    assert header == ["0", "1", "2"]
    np.testing.assert_array_equal(rows, expected)  # every float32 round-trips exactly
    assert (work / "P.CSV").read_bytes() == (work / "p.csv").read_bytes()
    lines = (work / "p.jsonl").read_text().splitlines()
    got = np.array([json.loads(line)["output"] for line in lines], np.float32)
    np.testing.assert_array_equal(got, expected)


def test_text_values_are_the_shortest_that_read_back(cli, work):
    expected = outputs(cli, work)
    cli("predict", work / "m.yaml", work / "x.npy", "-o", work / "p.csv")
    first = (work / "p.csv").read_text().splitlines()[1].split(",")
    assert first == [str(value) for value in expected[0]]
    assert all(len(text.lstrip("-0.").replace("e-", "")) <= 9 for text in first), first


def test_extract_one_layer_follows_the_extension(cli, work):
    args = ("extract", work / "m.yaml", work / "x.npy", "--layer", "dense")
    assert cli(*args, "-o", work / "one.npy").code == 0
    expected = np.load(work / "one.npy")
    assert expected.shape == (7, 5)
    assert cli(*args, "-o", work / "one.npz").code == 0
    with np.load(work / "one.npz") as archive:
        assert archive.files == ["dense"]
        np.testing.assert_array_equal(archive["dense"], expected)
    assert cli(*args, "-o", work / "one.csv").code == 0
    header, rows = read_csv(work / "one.csv")
    assert header == ["0", "1", "2", "3", "4"]
    np.testing.assert_array_equal(rows, expected)


def test_extract_several_layers_as_json_lines_keep_each_sample_shape(cli, work):
    assert cli("extract", work / "conv.yaml", work / "images.npy", "--all",
               "-o", work / "all.npz").code == 0
    assert cli("extract", work / "conv.yaml", work / "images.npy", "--all",
               "-o", work / "all.jsonl").code == 0
    lines = [json.loads(line) for line in (work / "all.jsonl").read_text().splitlines()]
    with np.load(work / "all.npz") as archive:
        assert [list(line) for line in lines] == [archive.files] * 3
        for name in archive.files:
            got = np.array([line[name] for line in lines], dtype=np.float32)
            assert got.shape == archive[name].shape  # (3, 4, 4, 3) for conv2d
            np.testing.assert_array_equal(got, archive[name])


def test_extract_of_a_feature_map_to_csv_is_flattened(cli, work):
    assert cli("extract", work / "conv.yaml", work / "images.npy", "--layer", "conv2d",
               "-o", work / "maps.csv").code == 0
    assert cli("extract", work / "conv.yaml", work / "images.npy", "--layer", "conv2d",
               "-o", work / "maps.npy").code == 0
    header, rows = read_csv(work / "maps.csv")
    assert header == [str(index) for index in range(4 * 4 * 3)]
    np.testing.assert_array_equal(rows, np.load(work / "maps.npy").reshape(3, -1))


WRONG_EXTENSIONS = {  # arguments ({w}: the work folder) -> what the message says
    "extract 2 layers to .npy": (
        "extract {w}/m.yaml {w}/x.npy --layer dense --layer dense_1 -o {w}/f.npy",
        ["extract writes 2 layers", "a .npy file holds one array", "-o f.npz"]),
    "extract --all to .csv": (
        "extract {w}/m.yaml {w}/x.npy --all -o {w}/all.csv",
        ["every top-level layer (--all)", "a .csv file holds one array", "-o all.npz"]),
    "extract --all --format npy": (
        "extract {w}/m.yaml {w}/x.npy --all --format npy",
        ["--format npy holds one array", "--format npz"]),
    "predict to .txt": (
        "predict {w}/m.yaml {w}/x.npy -o {w}/preds.txt",
        ["predict writes .npy, .npz, .csv, .jsonl or .zarr", "preds.npy", "--format"]),
    "predict to .safetensors": (
        "predict {w}/m.yaml {w}/x.npy -o {w}/preds.safetensors", ["preds.npy"]),
    "extension and --format disagree": (
        "predict {w}/m.yaml {w}/x.npy -o {w}/p.npy --format csv",
        ["p.npy names a .npy file but --format is csv"]),
    "unknown --format": ("predict {w}/m.yaml {w}/x.npy --format xml", ["--format", "xml"]),
    "--argmax to .csv": (
        "predict {w}/m.yaml {w}/x.npy --argmax -o {w}/r.csv",
        ["--argmax prints text lines", "r.txt"]),
    "--top-k with --format": (
        "predict {w}/m.yaml {w}/x.npy --top-k 2 --format jsonl",
        ["--format and --top-k are alternatives"]),
    "init weights to .bin": ("init {w}/m.yaml -o {w}/w.bin", [".safetensors or .npz"]),
    "fit --history to .txt": (
        "fit {w}/m.yaml {w}/x.npy {w}/y.npy -o {w}/t.safetensors --history {w}/h.txt",
        ["--history", "h.txt", "h.json"]),
    "export-onnx to .bin": ("export-onnx {w}/m.yaml -o {w}/m.bin", ["-o", "m.bin", "m.onnx"]),
}


@pytest.mark.parametrize("case", WRONG_EXTENSIONS)
def test_an_extension_that_does_not_fit_is_a_usage_error(cli, work, case):
    """Refused before any work, naming what fits; existing files stay as they were."""
    args, fragments = WRONG_EXTENSIONS[case]
    np.save(work / "y.npy", np.zeros((7, 3), np.float32))
    existing = ("f.npy", "all.csv", "preds.txt", "p.npy", "r.csv", "w.bin", "h.txt", "m.bin",
                "t.safetensors")
    for name in existing:
        (work / name).write_bytes(PRECIOUS)
    before = sorted(os.listdir(work))
    refused(cli(*args.format(w=work).split()), 2, *fragments)
    assert sorted(os.listdir(work)) == before
    assert all((work / name).read_bytes() == PRECIOUS for name in existing)


def test_format_chooses_where_the_name_says_nothing(cli, work):
    expected = outputs(cli, work)
    assert cli("predict", work / "m.yaml", work / "x.npy", "--format", "csv",
               "-o", work / "preds.txt").code == 0
    np.testing.assert_array_equal(read_csv(work / "preds.txt")[1], expected)
    assert cli("predict", work / "m.yaml", work / "x.npy", "-o", os.devnull).code == 0
    assert cli("predict", work / "m.yaml", work / "x.npy", "-o", work / "preds").code == 0
    np.testing.assert_array_equal(np.load(work / "preds"), expected)
    assert cli("predict", work / "m.yaml", work / "x.npy", "--format", "jsonl",
               "-o", work / "preds").code == 0
    assert (work / "preds").read_text().startswith('{"output":[')
    assert cli("predict", work / "m.yaml", work / "x.npy", "--argmax",
               "-o", work / "ranks.txt").code == 0
    assert (work / "ranks.txt").read_text().split() == [str(i) for i in expected.argmax(1)]


def test_history_and_onnx_take_their_extensions(cli, work):
    np.save(work / "y.npy", np.eye(3, dtype=np.float32)[np.arange(7) % 3])
    assert cli("fit", work / "m.yaml", work / "x.npy", work / "y.npy", "-q", "-o",
               work / "t.safetensors", "--history", work / "h.json").code == 0
    assert list(json.loads((work / "h.json").read_text())) == ["loss"]


# --- stdin and stdout ----------------------------------------------------------------------


def test_text_formats_to_stdout_with_format(work):
    expected = np.load(io.BytesIO(run_process("predict", work / "m.yaml", work / "x.npy",
                                              "-q").stdout))
    done = run_process("predict", work / "m.yaml", "--format", "csv", "-q",
                       input=(work / "x.npy").read_bytes())
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.decode().splitlines()
    assert header == "0,1,2"
    np.testing.assert_array_equal(np.array([row.split(",") for row in rows], np.float32),
                                  expected)
    done = run_process("extract", work / "m.yaml", work / "x.npy", "--all", "-q")
    with np.load(io.BytesIO(done.stdout)) as archive:  # several layers: .npz, as before
        assert archive.files == ["dense", "dense_1"]
    done = run_process("extract", work / "m.yaml", work / "x.npy", "--all", "--format", "jsonl",
                       "-q")
    assert [sorted(json.loads(line)) for line in done.stdout.splitlines()] == [
        ["dense", "dense_1"]] * 7


def test_text_formats_may_go_to_a_terminal_binary_ones_never(work):
    code, err, shown = on_terminal("predict", work / "m.yaml", work / "x.npy",
                                    "--format", "jsonl", "-q")
    assert code == 0, err
    lines = shown.decode().splitlines()
    assert len(lines) == 7 and all(list(json.loads(line)) == ["output"] for line in lines)
    for fmt in ("npy", "npz"):
        code, err, shown = on_terminal("predict", work / "m.yaml", work / "x.npy",
                                        "--format", fmt)
        assert (code, shown) == (2, b""), err
        assert err.startswith("seqcli: error: refusing to write binary") and err.count("\n") == 1


@pytest.mark.parametrize(("args", "names"), [
    (["predict", "-", "-"], "MODEL and INPUT"),
    (["predict", "-"], "MODEL and INPUT"),  # an omitted INPUT is stdin
    (["extract", "-", "-", "--all"], "MODEL and INPUT"),
    (["predict", "{m}", "{x}", "--weights", "-", "--labels", "-"], "--weights and --labels"),
    (["predict", "--weights", "-", "-", "{x}"], "MODEL and --weights"),
    (["fit", "{m}", "-", "-", "-o", "{out}"], "X and Y"),
    (["fit", "{m}", "{x}", "{x}", "--validation-data", "-", "-", "-o", "{out}"],
     "--validation-data value 1 and --validation-data value 2"),
    (["summary", "-", "--weights", "-"], "MODEL and --weights"),
    (["init", "-", "--weights-from", "-", "-o", "{out}"], "MODEL and --weights-from"),
    (["export-keras", "-", "--weights", "-", "-o", "{keras}"], "MODEL and --weights"),
])
def test_two_inputs_from_stdin_are_a_usage_error(work, args, names):
    """`cat x.npy | seqcli predict - -` and the like: exit 2 before anything is read."""
    paths = {"m": work / "m.yaml", "x": work / "x.npy", "out": work / "o.safetensors",
             "keras": work / "o.keras"}
    done = run_process(*[arg.format(**paths) for arg in args],
                       input=(work / "x.npy").read_bytes())
    err = done.stderr.decode()
    assert (done.returncode, done.stdout) == (2, b""), err
    assert err.startswith(f"seqcli: error: {names} would both be read from stdin"), err
    assert err.count("\n") == 1 and "not UTF-8" not in err
    assert not (work / "o.safetensors").exists() and not (work / "o.keras").exists()


def test_one_input_from_stdin_still_works(work):
    done = run_process("predict", "-", work / "x.npy", "--argmax", input=CLASSES.encode(),
                       cwd=work)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 7


# --- labels and thresholds -----------------------------------------------------------------


def test_labels_name_the_argmax_and_top_k_lines(cli, work):
    expected = outputs(cli, work)
    names = ["cat", "dog", "bird, the small one"]
    result = cli("predict", work / "m.yaml", work / "x.npy", "--argmax",
                 "--labels", work / "labels.txt")
    assert result.code == 0, result
    assert result.out.splitlines() == [names[i] for i in expected.argmax(1)]
    result = cli("predict", work / "m.yaml", work / "x.npy", "--top-k", "2",
                 "--labels", work / "labels.txt")
    order = np.argsort(-expected, axis=1)[:, :2]
    assert result.out.splitlines() == [" ".join(f"{names[i]}:{row[i]:.6g}" for i in top)
                                       for row, top in zip(expected, order)]


def test_labels_head_the_csv_and_key_the_json_lines(cli, work):
    expected = outputs(cli, work)
    for name in ("p.csv", "p.jsonl"):
        assert cli("predict", work / "m.yaml", work / "x.npy", "--labels", work / "labels.txt",
                   "-o", work / name).code == 0
    header, rows = read_csv(work / "p.csv")
    assert header == ["cat", "dog", "bird, the small one"]  # quoted in the file
    assert '"bird, the small one"' in (work / "p.csv").read_text().splitlines()[0]
    np.testing.assert_array_equal(rows, expected)
    lines = [json.loads(line) for line in (work / "p.jsonl").read_text().splitlines()]
    assert [list(line) for line in lines] == [header] * 7
    got = np.array([list(line.values()) for line in lines], np.float32)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("content", "code", "fragments"), [
    (b"cat\ndog\n", 65, ["holds 2 names but the model outputs 3 values per sample"]),
    (b"cat\n\ndog\nbird\n", 65, ["labels.txt:2: an empty line"]),
    (b"cat\ndog\ncat\n", 65, ["labels.txt:3: 'cat' is also on line 1"]),
    (b"cat\n\xff\xfedog\nbird\n", 65, ["not UTF-8"]),
    (b"", 65, ["no class names"]),
    (None, 66, ["no such file", "--labels"]),
])
def test_a_labels_file_that_does_not_fit_is_refused(cli, work, content, code, fragments):
    labels = work / "labels.txt"
    labels.unlink()
    if content is not None:
        labels.write_bytes(content)
    (work / "ranks.txt").write_bytes(PRECIOUS)
    refused(cli("predict", work / "m.yaml", work / "x.npy", "--argmax", "--labels", labels,
                "-o", work / "ranks.txt"), code, *fragments)
    assert (work / "ranks.txt").read_bytes() == PRECIOUS


def test_labels_accept_windows_line_ends_and_a_byte_order_mark(cli, work):
    (work / "labels.txt").write_bytes("\ufeffcat\r\nd\u00f6g \r\nbird\r\n\r\n".encode())
    expected = outputs(cli, work)
    result = cli("predict", work / "m.yaml", work / "x.npy", "--argmax",
                 "--labels", work / "labels.txt")
    assert result.out.splitlines() == [["cat", "d\u00f6g", "bird"][i] for i in expected.argmax(1)]


def test_labels_need_a_text_output_and_a_vector(cli, work):
    refused(cli("predict", work / "m.yaml", work / "x.npy", "--labels", work / "labels.txt",
                "-o", work / "p.npy"), 2, ".npy has no names", "-o FILE.csv")
    refused(cli("extract", work / "conv.yaml", work / "images.npy", "--layer", "conv2d",
                "--labels", work / "labels.txt"), 2, "No such option")
    (work / "maps.yaml").write_text("input_shape: [5, 5, 2]\nlayers:\n"
                                    "  - {type: Conv2D, filters: 3, kernel_size: 2}\n")
    refused(cli("predict", work / "maps.yaml", work / "images.npy", "--format", "csv",
                "--labels", work / "labels.txt"), 2, "output vector", "(4, 4, 3)")


def test_a_single_unit_output_is_a_binary_score(cli, work):
    for option in (["--argmax"], ["--top-k", "3"]):
        refused(cli("predict", work / "b.yaml", work / "x.npy", *option), 2,
                "one value per sample, a binary score", "--threshold T")
    assert cli("predict", work / "b.yaml", work / "x.npy", "-o", work / "s.npy").code == 0
    scores = np.load(work / "s.npy")[:, 0]
    for threshold in ("0.5", "0", "1", str(np.median(scores))):
        result = cli("predict", work / "b.yaml", work / "x.npy", "--threshold", threshold)
        assert result.code == 0, result
        assert result.out.split() == [str(int(s > np.float32(threshold))) for s in scores]
    assert 0 < (scores > np.median(scores)).sum() < len(scores)  # both classes appear
    (work / "two.txt").write_text("negative\npositive\n")
    result = cli("predict", work / "b.yaml", work / "x.npy", "--threshold", "0.5",
                 "--labels", work / "two.txt")
    assert result.out.split() == [("negative", "positive")[int(s > 0.5)] for s in scores]


@pytest.mark.parametrize(("model", "args", "code", "fragments"), [
    ("m.yaml", ["--threshold", "0.5"], 2, ["single-unit (binary) output", "3 values",
                                            "--argmax"]),
    ("b.yaml", ["--threshold", "1.5"], 2, ["--threshold", "between 0 and 1"]),
    ("b.yaml", ["--threshold", "nan"], 2, ["--threshold", "finite"]),
    ("b.yaml", ["--threshold", "0.5", "--argmax"], 2, ["--argmax and --threshold are "
                                                        "alternatives"]),
    ("b.yaml", ["--threshold", "0.5", "-o", "t.npy"], 2, ["--threshold prints text lines"]),
    ("b.yaml", ["--threshold", "0.5", "--labels", "labels.txt"], 65,
     ["holds 3 names", "the two classes, 0 then 1"]),
])
def test_threshold_refusals(cli, work, model, args, code, fragments):
    refused(cli("predict", work / model, work / "x.npy",
                *[str(work / arg) if arg.endswith((".txt", ".npy")) else arg for arg in args]),
            code, *fragments)


# --- streaming and atomic writes -----------------------------------------------------------


@pytest.mark.parametrize("name", ["p.csv", "p.jsonl"])
def test_text_is_streamed_by_batch_and_written_all_or_nothing(cli, work, name):
    assert cli("predict", work / "m.yaml", work / "x.npy", "-o", work / name).code == 0
    whole = (work / name).read_bytes()
    assert cli("predict", work / "m.yaml", work / "x.npy", "-o", work / name,
               "--batch-size", "2").code == 0
    assert (work / name).read_bytes() == whole
    bad = np.load(work / "x.npy")
    bad[5, 1] = np.nan  # in the third batch of two: refused after two were written
    np.save(work / "bad.npy", bad)
    (work / name).write_bytes(PRECIOUS)
    refused(cli("predict", work / "m.yaml", work / "bad.npy", "-o", work / name,
                "--batch-size", "2", "--strict"), 65, "row 5 holds NaN")
    assert (work / name).read_bytes() == PRECIOUS
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []


def test_zero_rows_and_non_finite_outputs(cli, work):
    np.save(work / "none.npy", np.zeros((0, 4), np.float32))
    for name, text in (("z.csv", "0,1,2\n"), ("z.jsonl", "")):
        assert cli("predict", work / "m.yaml", work / "none.npy", "-o", work / name).code == 0
        assert (work / name).read_text() == text
    x = np.load(work / "x.npy")
    x[2] = np.nan
    np.save(work / "nan.npy", x)
    for name in ("n.csv", "n.jsonl"):
        assert cli("predict", work / "m.yaml", work / "nan.npy", "-o", work / name,
                   "-q").code == 0
    assert (work / "n.csv").read_text().splitlines()[3] == "nan,nan,nan"
    assert json.loads((work / "n.jsonl").read_text().splitlines()[2]) == {
        "output": [None, None, None]}  # JSON has no NaN
