"""Shared helpers: load model text, run the CLI in-process or as a real process."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from seqcli.build import build
from seqcli.cli import main
from seqcli.config.load import load_model_text

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated objects out in full (model files refuse anchors and aliases)."""

    def ignore_aliases(self, data):
        return True


def to_yaml(data: dict) -> str:
    """A model file's text for `data`."""
    return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False)


def model_from(data: dict | str, base_dir: Path | None = None, source: str = "model.yaml"):
    """A LoadedModel from a dict (dumped to YAML) or YAML text."""
    text = data if isinstance(data, str) else to_yaml(data)
    return load_model_text(textwrap.dedent(text), source, base_dir or Path.cwd())


def runtime_model(layers: list, input_shape: list, seed: int = 0):
    """The built runtime model (the Python API's Sequential) of `layers`, initial weights of
    `seed`."""
    from seqcli.runtime.model import Sequential

    model = Sequential.from_loaded(model_from({"input_shape": list(input_shape), "seed": seed,
                                               "layers": layers}))
    model.build()
    return model


def built_from(data, input_shape=None, **kwargs):
    """A BuiltModel from a dict or YAML text."""
    return build(model_from(data, **kwargs), input_shape)


class Result:
    """What a CLI run produced."""

    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Result(code={self.code}, out={self.out[:200]!r}, err={self.err[:300]!r})"


@pytest.fixture
def cli(capsys):
    """Run `seqcli ARGS...` in-process; returns Result(code, stdout, stderr)."""
    def run(*args: str) -> Result:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_process(*args: str, input: bytes | None = None, cwd=None, env=None) -> subprocess.CompletedProcess:
    """Run `python -m seqcli ARGS...` as a real process (bytes in, bytes out)."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "seqcli", *map(str, args)], input=input,
                          capture_output=True, cwd=cwd, env=full_env, timeout=600)


def on_terminal(*args: str, stdin_terminal: bool = False, cwd=None) -> tuple[int, str, bytes]:
    """Run `python -m seqcli ARGS...` with stdout (or, with `stdin_terminal`, stdin) on a
    pseudo-terminal: (exit code, stderr, what the terminal showed)."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "seqcli", *map(str, args)],
                              stdin=follower if stdin_terminal else subprocess.DEVNULL,
                              stdout=subprocess.PIPE if stdin_terminal else follower,
                              stderr=subprocess.PIPE, cwd=cwd, timeout=300)
        shown = b""
        while select.select([leader], [], [], 0.1)[0]:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(follower)
        os.close(leader)
    return done.returncode, done.stderr.decode(), shown


@pytest.fixture
def numpy_small_runs(monkeypatch):
    """Small runs take the numpy path (seqcli/kernels/small.py) in this test, as in a fresh
    process, though the test process has loaded numba."""
    from seqcli.kernels import small

    monkeypatch.setattr(small, "_kernels_loaded", lambda: False)
    monkeypatch.setattr(small, "_SPENT", [0])
