"""The command line a newcomer expects (issue 17): `-h`, `-V`, shell completion, help pages
with examples and value placeholders, `validate` of several files, `init -q`, `import-keras
--force`, progress on a terminal (rows for predict and extract, Keras's bar for fit), and
terminals that show only ASCII (`PYTHONIOENCODING=ascii`, `LANG=C`, `TERM=dumb`) or are
narrow (`COLUMNS`). Terminals are pseudo-terminals of real processes."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import typer

from seqcli import __version__
from seqcli.cli import app
from tests.conftest import CONFIGS, REPO
from tests.test_bad_inputs import snapshot, unchanged

COMMANDS = [typer.main.get_command_name(command.name or command.callback.__name__)
            for command in app.registered_commands]
KERAS_FILES = REPO / "tests" / "keras_files"
DENSE = "input_shape: [4]\nlayers:\n  - {type: Dense, units: 3, activation: softmax}\n"


def environment(**changes: str) -> dict[str, str]:
    """The environment of a run: a UTF-8 locale and an xterm, no COLUMNS, then `changes`."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("COLUMNS", "LINES", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING",
                           "TERM", "_SEQCLI_COMPLETE")}
    env.update(LANG="C.UTF-8", TERM="xterm")
    env.update(changes)
    return env


def run(*args, env: dict[str, str] | None = None, terminal: str = "", columns: int = 100,
        feed: list[bytes] | None = None, pause: float = 0.0, cwd=None):
    """Run `python -m seqcli ARGS` with `terminal` ("stdout", "stderr" or "both") on a
    pseudo-terminal `columns` wide; `feed`: chunks written to stdin, `pause` seconds apart. Returns (code,
    stdout, stderr) as bytes, the terminal's stream as it was shown (newlines as `\\n`)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "seqcli", *map(str, args)],
        stdin=subprocess.PIPE if feed is not None else subprocess.DEVNULL,
        stdout=follower if terminal in ("stdout", "both") else subprocess.PIPE,
        stderr=follower if terminal in ("stderr", "both") else subprocess.PIPE,
        env=env or environment(), cwd=cwd)
    shown: list[bytes] = []

    def read_terminal():
        while True:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # the other end closed
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    if feed is not None:
        for chunk in feed:
            time.sleep(pause)
            process.stdin.write(chunk)
            process.stdin.flush()
        process.stdin.close()
        process.stdin = None
    out, err = process.communicate(timeout=300)
    os.close(follower)
    reader.join(timeout=10)
    os.close(leader)
    on_terminal = b"".join(shown).replace(b"\r\n", b"\n")
    if terminal in ("stdout", "both"):
        out = on_terminal
    if terminal in ("stderr", "both"):
        err = on_terminal
    return process.returncode, out or b"", err or b""


# ------------------------------------------------------------------ help, version


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_dash_h_is_help(cli, command):
    words = [command] if command else []
    short, long = cli(*words, "-h"), cli(*words, "--help")
    assert short.code == long.code == 0, short
    assert short.out == long.out and short.err == ""
    assert short.out.startswith(f"Usage: seqcli {command or ''}".rstrip())


@pytest.mark.parametrize("command", [None, "predict", "import-keras"])
def test_help_command_is_git_like(cli, command):
    words = [command] if command else []
    assert cli("help", *words).out == cli(*words, "--help").out


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(cli, flag):
    result = cli(flag)
    assert (result.code, result.out, result.err) == (0, f"seqcli {__version__}\n", "")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_page_has_examples_and_value_placeholders(cli, command):
    page = cli(command, "-h").out
    usage = page.splitlines()[0]
    assert "{" not in usage and "<" not in usage, usage
    examples = page.split("\nExamples:\n", 1)[1].splitlines()
    assert any(line.strip().startswith(f"seqcli {command} ") for line in examples), page
    assert not re.search(r"<(str|int|float|bool|path|list|tuple|text)\b[^>]*>|list\[", page)
    for line in page.split("\nOptions:\n", 1)[1].split("\n\n")[0].splitlines():
        option = re.match(r"\s+(?:-\w, )?(--[\w-]+)(?: / --[\w-]+)?(?: (\S+))?", line)
        if option and option.group(2):  # an option's value: an upper-case name or a choice
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*(\.[\w.]+|,\.\.\.)?|\[[\w|]+\]",
                                option.group(2)), line


def test_the_command_list_is_whole(cli):
    page = cli("--help").out
    listed = page.split("\nCommands:\n", 1)[1].split("\n\n")[0]
    names = [line.split()[0] for line in listed.splitlines() if not line.startswith("    ")]
    assert names == COMMANDS
    assert "..." not in listed
    for command in app.registered_commands:  # each command's summary: its docstring's first line
        first = command.callback.__doc__.strip().splitlines()[0]
        assert " ".join(first.split()) in " ".join(listed.split()), first


def test_help_fits_a_narrow_terminal(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    page = cli("--help").out
    assert max(map(len, page.splitlines())) <= 60
    assert "..." not in page.split("\nCommands:\n", 1)[1]


# ------------------------------------------------------------------ shell completion


def _completion(shell: str, words: str, action: str = "") -> subprocess.CompletedProcess:
    """What seqcli answers `shell` (its completion script's protocol) for the command line
    `words`."""
    env = environment(_SEQCLI_COMPLETE=f"complete_{shell}", _TYPER_COMPLETE_ARGS=words)
    if shell == "bash":
        split = words.split(" ")
        env.update(COMP_WORDS=words, COMP_CWORD=str(len(split) - 1))
    if action:
        env["_TYPER_COMPLETE_FISH_ACTION"] = action
    return subprocess.run([sys.executable, "-m", "seqcli"], capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_options_and_leaves_paths_to_bash(tmp_path):
    """The script of `--show-completion`, sourced in bash, completes command names and
    options; for a file argument it suggests nothing, and bash completes the path itself
    (`complete -o default`)."""
    script = tmp_path / "seqcli"  # the command the completion script runs
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m seqcli "$@"\n')
    script.chmod(0o755)
    shell = """
source <(seqcli --show-completion)
complete -p seqcli
ask() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _seqcli_completion seqcli
        echo "${#COMPREPLY[@]}: ${COMPREPLY[*]}"; }
ask seqcli pre
ask seqcli predict --bat
ask seqcli summary con
"""
    env = environment(PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", shell], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "complete -o default -F _seqcli_completion seqcli",
        "1: predict",
        "1: --batch-size",
        "0: ",
    ], done.stdout + done.stderr


def test_bash_protocol_lists_every_command():
    done = _completion("bash", "seqcli ")
    assert done.returncode == 0
    assert set(COMMANDS) <= set(done.stdout.split())


def test_zsh_suggestions_are_one_line_each():
    done = _completion("zsh", "seqcli fit --l")
    assert done.returncode == 0 and done.stdout.startswith("_arguments '*: :((")
    suggestions = done.stdout.strip()[len("_arguments '*: :(("):-len("))'")].splitlines()
    assert sorted(line.split(":")[0] for line in suggestions) == ['"--learning-rate"',
                                                                  '"--loss"']
    assert all(line.startswith('"--') and line.endswith('"') for line in suggestions)
    assert _completion("zsh", "seqcli summary con").stdout.strip() == "_files"


def test_fish_suggestions_are_one_line_each_and_files_otherwise():
    done = _completion("fish", "seqcli ex", action="get-args")
    lines = done.stdout.strip().splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == sorted(
        name for name in COMMANDS if name.startswith("ex"))
    assert all(line.count("\t") == 1 for line in lines)
    assert _completion("fish", "seqcli predict --thr", action="is-args").returncode == 0
    assert _completion("fish", "seqcli summary con", action="is-args").returncode == 1


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_install_completion_in_bash(tmp_path):
    env = environment(HOME=str(tmp_path), SHELL="/bin/bash")
    done = subprocess.run(["bash", "--norc", "-c", f'"{sys.executable}" -m seqcli '
                           '--install-completion; echo "exit $?"'],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip().endswith("exit 0"), done.stdout + done.stderr
    installed = tmp_path / ".bash_completions" / "seqcli.sh"
    assert "_SEQCLI_COMPLETE=complete_bash" in installed.read_text()
    assert f"source '{installed}'" in (tmp_path / ".bashrc").read_text()


# ------------------------------------------------------------------ validate, init, import


@pytest.fixture
def files(tmp_path):
    """A valid model, an invalid one, and a path that does not exist."""
    good = tmp_path / "good.yaml"
    good.write_text(DENSE)
    bad = tmp_path / "bad.yaml"
    bad.write_text("input_shape: [4]\nlayers:\n  - type: Dens\n    units: 2\n")
    return good, bad, tmp_path / "missing.yaml"


def test_validate_takes_several_files(cli, files):
    good, bad, missing = files
    every_config = sorted(CONFIGS.glob("*.yaml"))
    result = cli("validate", *every_config)
    assert result.code == 0 and result.err == ""
    assert [line.split(": ")[1] for line in result.out.splitlines()] == list(map(str,
                                                                               every_config))
    result = cli("validate", good, bad, good)
    assert result.code == 65
    assert result.out.splitlines() == [result.out.splitlines()[0]] * 2
    assert result.out.startswith(f"OK: {good}: 1 layer, 15 params, input [4], output [3]\n")
    assert result.err == f"{bad}:3:5: unknown layer type 'Dens'. Did you mean 'Dense'?\n"


def test_validate_exit_code_is_66_when_a_file_cannot_be_read(cli, files):
    good, bad, missing = files
    for order in ([missing, bad, good], [bad, missing], [good, missing]):
        result = cli("validate", *order)
        assert result.code == 66, result
        assert result.out.count("OK: ") == order.count(good)
        assert len(result.err.splitlines()) == len(order) - order.count(good)
        assert f"seqcli: error: {missing}" in result.err


def test_validate_weights_belong_to_one_model(cli, files):
    good, _, _ = files
    result = cli("validate", good, good, "--weights", "w.safetensors")
    assert result.code == 2 and result.out == ""
    assert "--weights belongs to one model" in result.err


def test_init_is_quiet_with_q(cli, tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text(DENSE)
    loud = cli("init", model, "-o", tmp_path / "a.safetensors")
    assert loud.code == 0 and loud.err.startswith("seqcli: wrote 2 tensors")
    quiet = cli("init", model, "-o", tmp_path / "b.safetensors", "-q")
    assert (quiet.code, quiet.out, quiet.err) == (0, "", "")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_commands_that_note_things_take_q(cli, tmp_path):
    """Every command that says things on stderr besides warnings and errors takes -q."""
    for command in ("predict", "extract", "init", "freeze", "fit", "evaluate", "import-keras",
                    "export-keras", "export-onnx"):
        assert "\n  -q, --quiet " in cli(command, "-h").out, command
    model = tmp_path / "m.yaml"
    model.write_text(DENSE)
    frozen = cli("freeze", model, "--layer", "dense", "-q")
    assert frozen.code == 0 and frozen.err == "" and "trainable: false" in frozen.out


def test_import_keras_replaces_files_only_with_force(cli, tmp_path):
    source = KERAS_FILES / "functional_chain.keras"
    model, weights = tmp_path / "m.yaml", tmp_path / "m.safetensors"
    assert cli("import-keras", source, "-o", model, "-q").code == 0
    model.write_text("# mine\n")
    before = snapshot(tmp_path)
    again = cli("import-keras", source, "-o", model)
    assert again.code == 2 and again.out == ""
    assert again.err == (f"seqcli: error: {model} and {weights} exist; pass --force to replace "
                         "them, or -o to write elsewhere\n")
    unchanged(tmp_path, before)
    model.unlink()  # the weights beside it are refused too, and the model file not written
    before = snapshot(tmp_path)
    again = cli("import-keras", source, "-o", model)
    assert again.code == 2 and f"{weights} exists; pass --force" in again.err
    unchanged(tmp_path, before)
    forced = cli("import-keras", source, "-o", model, "--force", "-q")
    assert forced.code == 0 and model.read_text().startswith("# Imported from")


def test_import_keras_weights_only_replaces_only_with_force(cli, tmp_path):
    model = REPO / "tests" / "keras_reference" / "models" / "nested_frozen.yaml"
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"precious")
    args = ["import-keras", model, "--weights-only",
            KERAS_FILES / "ref_nested_frozen.weights.h5", "-o", out]
    refused = cli(*args)
    assert refused.code == 2 and "pass --force" in refused.err
    assert out.read_bytes() == b"precious"
    assert cli(*args, "--force", "-q").code == 0 and out.read_bytes() != b"precious"


# ------------------------------------------------------------------ progress on a terminal


@pytest.fixture
def rows(tmp_path):
    """A model, and 24 rows of its input as a .npy header and one chunk per row."""
    model = tmp_path / "m.yaml"
    model.write_text(DENSE)
    buffer = io.BytesIO()
    np.save(buffer, np.arange(24 * 4, dtype=np.float32).reshape(24, 4))
    data = buffer.getvalue()
    start = len(data) - 24 * 16
    return model, [data[:start]] + [data[start + 16 * i:start + 16 * (i + 1)] for i in range(24)]


def _slow_run(command: str, model: Path, chunks, out: Path, *options: str, terminal="stderr"):
    """`command` on rows arriving one by one over about 3 s (stdin), batch size 1."""
    args = [command, model, "-", "-o", out, "--batch-size", "1", *options]
    if command == "extract":
        args += ["--layer", "dense"]
    return run(*args, terminal=terminal, feed=chunks, pause=0.12)


@pytest.mark.parametrize("command", ["predict", "extract"])
def test_rows_progress_on_a_terminal(tmp_path, rows, command):
    model, chunks = rows
    code, _, shown = _slow_run(command, model, chunks, tmp_path / "y.npy")
    assert code == 0, shown
    text = shown.decode()
    updates = re.findall(rf"\r{command}: (\d+)/24 rows \((\d+)%\) - [\d,]+ rows/s - ETA \d+s",
                         text)
    assert updates, text
    assert all(int(done) <= 24 and int(percent) == 100 * int(done) // 24
               for done, percent in updates), updates
    assert len(updates) <= 3 * 10 + 2  # at most ten a second
    assert text.endswith("\r") and text.rsplit("\r", 2)[1].strip() == ""  # removed at the end
    assert np.load(tmp_path / "y.npy").shape[0] == 24


@pytest.mark.parametrize("command", ["predict", "extract"])
def test_no_rows_progress_with_q_or_off_a_terminal(tmp_path, rows, command):
    model, chunks = rows
    code, _, shown = _slow_run(command, model, chunks, tmp_path / "a.npy", "-q")
    assert (code, shown) == (0, b"")
    code, _, err = _slow_run(command, model, chunks, tmp_path / "b.npy", terminal="")
    assert code == 0 and b"rows/s" not in err and b"\r" not in err


def test_no_rows_progress_when_the_results_go_to_the_terminal(tmp_path, rows):
    """Lines of results on the terminal are not cut by a progress line."""
    model, chunks = rows
    code, shown, _ = run("predict", model, "-", "--argmax", "--batch-size", "1",
                         terminal="both", feed=chunks, pause=0.12)
    assert code == 0 and b"rows/s" not in shown and b"\r" not in shown
    classes = shown.decode().split("\n", 1)[1].splitlines()  # after the note
    assert len(classes) == 24 and set(classes) <= {"0", "1", "2"}, shown


@pytest.fixture
def training(tmp_path):
    """A classifier, 256 samples of 4 values and their labels."""
    model = tmp_path / "m.yaml"
    model.write_text(DENSE)
    generator = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", generator.normal(size=(256, 4)).astype(np.float32))
    np.save(tmp_path / "y.npy", generator.integers(0, 3, 256))
    return [model, tmp_path / "x.npy", tmp_path / "y.npy", "-o", tmp_path / "w.safetensors",
            "--loss", "sparse_categorical_crossentropy", "--epochs", "2", "--batch-size", "8",
            "--validation-split", "0.25"]


BAR = r" ?(\d+)/24 ([━─]{20}) (\d+s|\d+:\d\d) \d+(?:us|ms|s)/step - accuracy: [\d.e+-]+ - " \
      r"loss: [\d.e+-]+"


def test_fit_shows_keras_bar_on_a_terminal(training):
    code, _, shown = run("fit", *training, terminal="stderr")
    assert code == 0, shown
    text = shown.decode()
    epochs = text.split("Epoch 2/2\n")
    assert len(epochs) == 2 and epochs[0].startswith("Epoch 1/2\n"), text
    for epoch in epochs:
        lines = epoch.split("\n")
        final = lines[-2].rsplit("\r", 1)[1]  # what stays on the screen
        assert re.fullmatch(BAR + r" - val_accuracy: [\d.e+-]+ - val_loss: [\d.e+-]+", final)
        assert final.split()[1] == "━" * 20 and final.startswith("24/24 ")
        updates = [re.match(BAR, update) for update in lines[-2].split("\r")[1:-1]]
        assert updates and all(updates), lines[-2]
        done = [int(update.group(1)) for update in updates]
        assert done == sorted(done) and done[0] == 1  # the first batch, then at most 10/s
        for update in updates:  # the bar fills with the batches done
            filled = update.group(2).count("━")
            assert filled == 20 * int(update.group(1)) // 24


def test_fit_keeps_one_line_per_epoch_elsewhere_and_nothing_with_q(training):
    code, _, err = run("fit", *training)
    lines = err.decode().splitlines()
    assert code == 0 and len(lines) == 2 and "\r" not in err.decode()
    for epoch, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"Epoch {epoch}/2 - [\d.]+s - loss: [\d.]+ - accuracy: [\d.]+ - "
                            r"val_loss: [\d.]+ - val_accuracy: [\d.]+", line), line
    code, _, shown = run("fit", *training, "-q", terminal="stderr")
    assert (code, shown) == (0, b"")


@pytest.mark.parametrize("setting", [{"PYTHONIOENCODING": "ascii"}, {"LANG": "C"},
                                     {"TERM": "dumb"}])
def test_fit_bar_in_ascii(training, setting):
    code, _, shown = run("fit", *training, terminal="stderr", env=environment(**setting))
    assert code == 0 and shown.isascii(), shown
    assert re.search(rb"\r24/24 \[={20}\] \d+s \d+\w+/step - accuracy", shown), shown
    assert re.search(rb"\r 1/24 \[\.{20}\] ", shown), shown


def test_an_error_clears_the_progress_line(tmp_path, rows):
    """A message during a run starts on a clean line."""
    model, chunks = rows
    broken = chunks[:24] + [b"\x00" * 8]  # the input ends in the middle of its last row
    code, _, shown = _slow_run("predict", model, broken, tmp_path / "y.npy")
    text = shown.decode()
    assert code == 65 and "rows/s" in text, text
    before, message = text.rsplit("\r", 1)
    assert message.startswith("seqcli: error: ") and before.rsplit("\r", 1)[1].strip() == ""


# ------------------------------------------------------------------ ASCII and narrow terminals


ASCII_SETTINGS = [{"PYTHONIOENCODING": "ascii"}, {"LANG": "C"}, {"LC_ALL": "C"},
                  {"LANG": "C.UTF-8", "LC_ALL": "POSIX"}, {"TERM": "dumb"}]


@pytest.mark.parametrize("setting", ASCII_SETTINGS)
def test_summary_on_an_ascii_terminal_is_the_plain_table(setting):
    code, shown, err = run("summary", CONFIGS / "transfer_learning.yaml", "--expand-nested",
                           terminal="stdout", env=environment(**setting))
    assert code == 0 and err == b"", err
    assert shown.isascii(), shown
    text = shown.decode()
    assert "\n   `- conv2d (Conv2D) " in text and "\n=====" in text
    assert " Total params: 21,386 (83.54 KB)\n" in text


def test_summary_on_a_unicode_terminal_draws_boxes():
    code, shown, _ = run("summary", CONFIGS / "dense_stack.yaml", terminal="stdout")
    assert code == 0 and shown.decode().splitlines()[1].startswith("┏━━")


@pytest.mark.parametrize("setting", [{"PYTHONIOENCODING": "ascii"}, {"LANG": "C"}])
def test_plain_table_in_a_pipe_keeps_utf8_unless_the_charset_is_ascii(setting):
    done = run("summary", CONFIGS / "transfer_learning.yaml", "--expand-nested",
               env=environment(**setting))
    assert done[0] == 0 and done[1].isascii() and b"   `- conv2d" in done[1]
    utf8 = run("summary", CONFIGS / "transfer_learning.yaml", "--expand-nested")
    assert "   └ conv2d (Conv2D)".encode() in utf8[1]


def _table(text: str) -> list[str]:
    """The table's lines: from the header to the last rule."""
    lines = text.splitlines()
    return lines[1:next(i for i in range(len(lines) - 1, 0, -1) if lines[i][:1] in "└=") + 1]


@pytest.mark.parametrize("columns, terminal, widest, whole_words", [
    ("60", 100, 60, False), ("75", 100, 75, True), ("", 70, 70, True), ("200", 100, 113, True)])
def test_terminal_table_fits_columns(columns, terminal, widest, whole_words):
    """COLUMNS (else the terminal's width) narrows the table, words kept whole where they
    fit; the table is never widened beyond its text."""
    env = environment(COLUMNS=columns) if columns else environment()
    code, shown, _ = run("summary", CONFIGS / "transfer_learning.yaml", "--expand-nested",
                         terminal="stdout", columns=terminal, env=env)
    text = shown.decode()
    assert code == 0
    table = _table(text)
    assert max(map(len, table)) == widest, text
    assert all(len(line) <= widest for line in text.splitlines())
    words = ["21,056", "184,548,960", "(None,", "Total params: 21,386"]
    if whole_words:
        words += ["global_average_pooling2d", "(GlobalAveragePooling2D)", "batch_normalization"]
    for word in words:
        assert word in text, word


def test_plain_table_in_a_pipe_ignores_columns():
    wide = run("summary", CONFIGS / "transfer_learning.yaml", "--expand-nested")[1]
    narrow = run("summary", CONFIGS / "transfer_learning.yaml", "--expand-nested",
                 env=environment(COLUMNS="40"))[1]
    assert wide == narrow


@pytest.mark.parametrize("setting", [{"PYTHONIOENCODING": "ascii"}, {"LANG": "C"}])
def test_messages_on_an_ascii_terminal(tmp_path, setting):
    missing = tmp_path / "modèle×2.yaml"
    code, out, shown = run("summary", missing, terminal="stderr", env=environment(**setting))
    assert code == 66 and out == b""
    assert shown.isascii() and shown.count(b"\n") == 1, shown
    assert shown.startswith(b"seqcli: error: ") and b"mod?lex2.yaml" in shown
    code, _, shown = run("summary", missing, terminal="stderr")
    assert code == 66 and "modèle×2.yaml".encode() in shown


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_on_an_ascii_terminal(command):
    code, shown, err = run(*([command] if command else []), "--help", terminal="stdout",
                           env=environment(PYTHONIOENCODING="ascii"))
    assert code == 0 and err == b"" and shown.isascii() and shown.startswith(b"Usage: seqcli")


def test_data_on_stdout_stays_utf8_whatever_the_charset(tmp_path):
    """freeze writes the model file, comments and all, as UTF-8 even to an ASCII stdout."""
    model = tmp_path / "m.yaml"
    model.write_text("# 250×250 images, café\n" + DENSE, encoding="utf-8")
    done = run("freeze", model, "--layer", "dense", env=environment(PYTHONIOENCODING="ascii"))
    assert done[0] == 0, done
    assert done[1].decode("utf-8").startswith("# 250×250 images, café\n")


def test_summary_json_is_unchanged_on_an_ascii_terminal():
    code, shown, _ = run("summary", CONFIGS / "dense_stack.yaml", "--json", terminal="stdout",
                         env=environment(LANG="C"))
    assert code == 0 and json.loads(shown)["total_params"] == 35
