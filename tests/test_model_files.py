"""Model files: the three input-shape spellings, names, nesting, and every bad file with
its `FILE:LINE:COL: message` and exit code."""

from __future__ import annotations

import textwrap

import pytest

from seqcli.errors import ConfigError
from tests.conftest import built_from, model_from


def test_three_input_shape_spellings_mean_the_same():
    top = built_from("input_shape: [4]\nlayers:\n  - {type: Dense, units: 2}\n")
    entry = built_from("layers:\n  - {type: Input, shape: [4]}\n  - {type: Dense, units: 2}\n")
    first = built_from("layers:\n  - {type: Dense, units: 2, input_shape: [4]}\n")
    batch = built_from("layers:\n  - {type: Input, batch_shape: [null, 4]}\n"
                       "  - {type: Dense, units: 2}\n")
    for model in (top, entry, first, batch):
        assert model.input_shape == (4,)
        assert [info.name for info in model.layers] == ["dense"]  # Input is not a layer
        assert model.total_params == 10


def test_auto_names_count_per_type_and_level():
    model = built_from({"input_shape": [8], "layers": [
        {"type": "Dense", "units": 8},
        {"type": "Dense", "units": 8, "name": "middle"},
        {"type": "Dense", "units": 8},
        {"type": "BatchNormalization"},
        {"type": "Sequential", "layers": [{"type": "Dense", "units": 4},
                                          {"type": "Dense", "units": 4}]},
        {"type": "Sequential", "layers": [{"type": "Dense", "units": 2}]},
    ]})
    assert [i.path for i in model.walk()] == [
        "dense", "middle", "dense_1", "batch_normalization", "sequential",
        "sequential/dense", "sequential/dense_1", "sequential_1", "sequential_1/dense"]


def test_frozen_parent_freezes_everything_inside():
    model = built_from({"input_shape": [4], "layers": [
        {"type": "Sequential", "trainable": False, "layers": [
            {"type": "Dense", "units": 3, "trainable": True},
            {"type": "Sequential", "layers": [{"type": "Dense", "units": 3}]}]},
        {"type": "Dense", "units": 2}]})
    assert model.trainable_params == 8
    assert model.total_params == 15 + 12 + 8
    assert all(not info.layer.trainable for info in model.layers[0].walk())


def test_nested_from_file(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\ninput_shape: [4]\nlayers:\n"
                                        "  - {type: Dense, units: 3}\n")
    model = built_from("input_shape: [4]\nlayers:\n  - {type: Sequential, from: base.yaml, "
                       "trainable: false}\n  - {type: Dense, units: 2}\n", base_dir=tmp_path)
    assert [i.path for i in model.walk()] == ["base", "base/dense", "dense"]
    assert (model.total_params, model.trainable_params) == (23, 8)


def test_nested_input_shape_must_match(tmp_path):
    (tmp_path / "base.yaml").write_text("input_shape: [5]\nlayers:\n  - {type: Dense, units: 3}\n")
    with pytest.raises(ConfigError, match="expects inputs of shape \\(None, 5\\)"):
        built_from("input_shape: [4]\nlayers:\n  - {type: Sequential, from: base.yaml}\n",
                   base_dir=tmp_path)


def test_yaml_12_scalars():
    model = model_from("input_shape: [4]\nlayers:\n"
                       "  - {type: BatchNormalization, epsilon: 1e-5, momentum: 0.9}\n")
    assert model.layers[0].epsilon == 1e-5


BAD_FILES = [
    # (text, line, column, message part)
    ("layers:\n  - type: Dense\n    unit: 3\n", 3, 5, "unknown key 'unit' for Dense. Did you mean 'units'?"),
    ("layers:\n  - type: Dense\n    unit: 3\n", 2, 5, "Dense needs 'units'"),
    ("layers:\n  - type: Dens\n    units: 3\n", 2, 5, "unknown layer type 'Dens'. Did you mean 'Dense'?"),
    ("layers:\n  - type: conv2d\n    filters: 3\n", 2, 5, "Did you mean 'Conv2D'?"),
    ("layers:\n  - {type: Dense, units: 0}\n", 2, 26, "units=0"),
    ("layers:\n  - {type: Dense, units: 3, activation: rleu}\n", 2, 41, "Did you mean 'relu'?"),
    ("layers:\n  - {type: Dropout, rate: 1.5}\n", 2, 27, "between 0 and 1"),
    ("layers:\n  - {type: Conv2D, filters: 2, kernel_size: -1}\n", 2, 45, "must be positive"),
    ("layers:\n  - {type: Conv2D, filters: 2, kernel_size: [3, 3, 3]}\n", 2, 45, "list of 2 ints"),
    ("layers:\n  - {type: Dense, units: ten}\n", 2, 26, "valid integer"),
    ("layers:\n  - {type: Dense, units: 3, use_bias: yes}\n", 2, 39, "valid boolean"),
    ("layers:\n  - {type: Dense, units: 2, name: a}\n  - {type: Dense, units: 2, name: a}\n",
     3, 5, "duplicate layer name 'a'"),
    ("layers:\n  - {type: Dense, units: 2}\n  - {type: Dense, units: 2, name: dense}\n",
     3, 5, "duplicate layer name 'dense'"),
    ("layers:\n  - {type: Conv2D, filters: 2, kernel_size: 3, data_format: channels_first}\n",
     2, 61, "channels_last"),
    ("layers:\n  - {type: Conv2D, filters: 2, kernel_size: 3, strides: 2, dilation_rate: 2}\n",
     2, 5, "dilation_rate > 1"),
    ("layers:\n  - {type: Conv2D, filters: 3, kernel_size: 3, groups: 2}\n", 2, 5, "divisible"),
    ("layers:\n  - {type: Dense, units: 2}\n  - {type: Dense, units: 2, input_shape: [2]}\n",
     3, 29, "only allowed on the first layer"),
    ("input_shape: [4]\nlayers:\n  - {type: Input, shape: [4]}\n  - {type: Dense, units: 2}\n",
     3, 5, "given twice"),
    ("layers:\n  - {type: Dense, units: 2}\n  - {type: Input, shape: [4]}\n", 3, 5,
     "must come first"),
    ("layers:\n  - {type: Input, shape: [4]}\n", 2, 3, "at least one layer"),
    ("layers: []\n", 1, 9, "at least one layer"),
    ("layers:\n  - {type: Dense, units: 2}\nfoo: 1\n", 3, 1, "unknown key 'foo' for model file"),
    ("layer:\n  - {type: Dense, units: 2}\n", 1, 1, "Did you mean 'layers'?"),
    ("layers:\n  - Dense\n", 2, 5, "expected a mapping"),
    ("layers:\n  - {units: 2}\n", 2, 5, "needs 'type'"),
    ("layers: {type: Dense}\n", 1, 9, "expected a list"),
    ("", 1, 1, "this one is empty"),
    ("- a\n- b\n", 1, 1, "this one is a list"),
    ("layers: [\n", 2, 1, "invalid YAML"),
    ("layers:\n  - {type: Dense, units: 2}\nlayers:\n  - {type: Dense, units: 3}\n", 3, 1,
     "duplicate key 'layers'"),
    ("a: &x [1]\nlayers:\n  - {type: Dense, units: 2}\n", 1, 4, "anchors are not allowed"),
    ("layers:\n  - !!python/object/apply:os.system [ls]\n", 2, 5, "tags are not allowed"),
    ("layers:\n  - {type: Dense, units: !!int 3}\n", 2, 26, "tags are not allowed (!!int)"),
    ("layers:\n  - {type: UpSampling2D, interpolation: area}\n", 2, 41, "TensorFlow backend"),
    ("layers:\n  - {type: Reshape, target_shape: [-1, -1]}\n", 2, 35, "at most one -1"),
    ("layers:\n  - {type: Sequential}\n", 2, 5, "exactly one of 'layers' or 'from'"),
    ("layers:\n  - {type: Dense, units: 2, kernel_initializer: glorot}\n", 2, 49,
     "unknown initializer"),
    ("layers:\n  - {type: LayerNormalization, axis: [1, 1]}\n", 2, 38, "distinct axes"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), BAD_FILES,
                         ids=[m for *_, m in BAD_FILES])
def test_bad_model_file(text, line, column, message):
    with pytest.raises(ConfigError) as caught:
        model_from(text, source="bad.yaml")
    lines = caught.value.messages
    assert any(f"bad.yaml:{line}:{column}: " in m and message in m for m in lines), lines
    assert caught.value.exit_code == 65


SHAPE_ERRORS = [
    ("input_shape: [8, 8, 1]\nlayers:\n  - {type: Conv2D, filters: 2, kernel_size: 5}\n"
     "  - {type: Conv2D, filters: 2, kernel_size: 5}\n", 4, 5, "zero or negative"),
    ("input_shape: [4]\nlayers:\n  - {type: Reshape, target_shape: [3, -1]}\n", 3, 5,
     "size of the new array must be unchanged"),
    ("input_shape: [4]\nlayers:\n  - {type: Conv2D, filters: 2, kernel_size: 3}\n", 3, 5,
     "(height, width, channels)"),
    ("input_shape: [3, 3, 1]\nlayers:\n  - {type: MaxPooling2D, pool_size: 4}\n", 3, 5,
     "does not fit"),
    ("input_shape: [4, 4, 3]\nlayers:\n  - {type: Conv2D, filters: 4, kernel_size: 1, "
     "groups: 2}\n", 3, 5, "input channels must be evenly divisible"),
    ("input_shape: [4]\nlayers:\n  - {type: BatchNormalization, axis: 2}\n", 3, 5,
     "out of range"),
    ("input_shape: [4, 3]\nlayers:\n  - {type: BatchNormalization, axis: 0}\n", 3, 5,
     "batch axis"),
    ("input_shape: [null]\nlayers:\n  - {type: Dense, units: 2}\n", 3, 5, "must be defined"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), SHAPE_ERRORS,
                         ids=[m for *_, m in SHAPE_ERRORS])
def test_impossible_shapes(text, line, column, message):
    with pytest.raises(ConfigError) as caught:
        built_from(text, source="bad.yaml")
    (only,) = caught.value.messages
    assert only.startswith(f"bad.yaml:{line}:{column}: layer ")
    assert message in only


def test_all_errors_reported_at_once():
    text = textwrap.dedent("""\
        layers:
          - {type: Dense, units: 0}
          - {type: Dropout, rate: 2}
          - {type: Dens}
        seeed: 3
        """)
    with pytest.raises(ConfigError) as caught:
        model_from(text, source="m.yaml")
    assert len(caught.value.messages) == 4


def test_from_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("layers:\n  - {type: Sequential, from: b.yaml}\n")
    (tmp_path / "b.yaml").write_text("layers:\n  - {type: Sequential, from: a.yaml}\n")
    from seqcli.config.load import load_model

    with pytest.raises(ConfigError, match="cycle between model files: a.yaml -> b.yaml -> a.yaml"):
        load_model(str(tmp_path / "a.yaml"))


def test_from_self_inline_nesting_and_missing(tmp_path):
    (tmp_path / "self.yaml").write_text("layers:\n  - {type: Sequential, from: self.yaml}\n")
    from seqcli.config.load import load_model

    with pytest.raises(ConfigError, match="cycle"):
        load_model(str(tmp_path / "self.yaml"))
    (tmp_path / "m.yaml").write_text("layers:\n  - {type: Sequential, from: nope.yaml}\n")
    with pytest.raises(ConfigError, match=r"m.yaml:2:30: 'from: nope.yaml'.*no such model file"):
        load_model(str(tmp_path / "m.yaml"))


def test_paths_may_not_leave_the_folder(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "outside.yaml").write_text("layers:\n  - {type: Dense, units: 2}\n")
    (inner / "m.yaml").write_text("layers:\n  - {type: Sequential, from: ../outside.yaml}\n")
    (inner / "link.yaml").symlink_to(tmp_path / "outside.yaml")
    (inner / "l.yaml").write_text("layers:\n  - {type: Sequential, from: link.yaml}\n")
    from seqcli.config.load import load_model

    for name in ("m.yaml", "l.yaml"):
        with pytest.raises(ConfigError, match="--allow-outside"):
            load_model(str(inner / name))
        assert load_model(str(inner / name), allow_outside=True).layers[0].sublayers


def test_huge_file_refused(tmp_path):
    from seqcli.config.load import load_model

    big = tmp_path / "big.yaml"
    big.write_text("layers:\n" + "  - {type: Dense, units: 2}\n" * 200_000)
    with pytest.raises(ConfigError, match="larger than"):
        load_model(str(big))


def test_billion_laughs_refused_at_first_anchor():
    text = 'a: &a ["lol","lol"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b]\n'
    with pytest.raises(ConfigError, match="1:4: YAML anchors are not allowed"):
        model_from(text, source="x.yaml")


def test_a_first_nested_model_gives_the_input_shape(tmp_path):
    (tmp_path / "base.yaml").write_text("input_shape: [6]\nlayers:\n  - {type: Dense, units: 3}\n")
    model = built_from("layers:\n  - {type: Sequential, name: base, from: base.yaml}\n"
                       "  - {type: Dense, units: 2}\n", base_dir=tmp_path)
    assert model.input_shape == (6,)
    inline = built_from("layers:\n  - type: Sequential\n    layers:\n"
                        "      - {type: Input, shape: [5]}\n      - {type: Dense, units: 2}\n")
    assert inline.input_shape == (5,)
