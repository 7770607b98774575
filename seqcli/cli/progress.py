"""What a command that runs a model tells the user on stderr while it runs: the progress line,
notes before the run, warnings after it."""

from __future__ import annotations

import sys

from seqcli.cli.app import start_up_done


class Progress:
    """A progress line on stderr, only on a terminal and only for runs longer than ~2 s."""

    def __init__(self, what: str, total: int, enabled: bool = True):
        import time

        self.what, self.total, self.done_rows = what, total, 0
        self.enabled = enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self.shown = False

    def advance(self, rows: int) -> None:
        """Count `rows` more rows done."""
        import time

        self.done_rows += rows
        elapsed = time.monotonic() - self.start
        if self.enabled and elapsed > 2:
            rate = self.done_rows / elapsed
            print(f"\r{self.what}: {self.done_rows}/{self.total} rows "
                  f"({100 * self.done_rows // max(self.total, 1)}%, {rate:.0f} rows/s)",
                  end="", file=sys.stderr, flush=True)
            self.shown = True

    def done(self) -> None:
        """End the progress line."""
        if self.shown:
            print(file=sys.stderr)


def progressing(batches, progress: Progress):
    """`batches` unchanged, counted on `progress`; start-up is over once the first has run."""
    for index, batch in enumerate(batches):
        if index == 1:  # asked for the second batch: the first has run
            start_up_done()
        progress.advance(len(batch))
        yield batch


def announce(runner, quiet: bool) -> None:
    """Say on stderr what the user may not expect: initial weights, a compile ahead."""
    from seqcli.runtime.compiled import notify_compiling

    if quiet:
        return
    note = runner.initial_weights_note()
    if note is not None:
        print(f"seqcli: note: {note}", file=sys.stderr)
    # said when numba starts compiling (a kernel its cache lacks)
    notify_compiling(lambda: print("seqcli: compiling kernels (first run only; cached "
                                   "afterwards)...", file=sys.stderr, flush=True))


def warn_non_finite(inputs, outputs=None) -> None:
    """One warning line for NaN/Inf in the input or, failing that, in the outputs (each a
    `NonFiniteCounter`)."""
    if inputs.summary():
        print(f"seqcli: warning: {inputs.source}: the input holds {inputs.summary()} (Inf also "
              "stands for values beyond float32's range); the run went on (--strict refuses "
              "such inputs)", file=sys.stderr)
    elif outputs is not None and outputs.summary():
        print(f"seqcli: warning: the outputs hold {outputs.summary()}, from finite inputs",
              file=sys.stderr)
