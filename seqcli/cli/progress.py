"""What a command that runs a model tells the user on stderr while it runs: the progress line
(rows for predict, extract and evaluate; Keras's bar for fit), notes before the run, warnings
after it.

Progress is drawn only on a terminal (stderr), never with -q, in place (`\\r`) at most
`REDRAWS_PER_SECOND` times a second, with ASCII where the terminal shows only ASCII
(`seqcli.io.terminal`).
"""

from __future__ import annotations

import sys
import time

from seqcli.cli.app import start_up_done
from seqcli.io.terminal import StatusLine, is_terminal, unicode_glyphs

DELAY = 1.0
"""Seconds into a run before its rows are reported: a short run says nothing."""

REDRAWS_PER_SECOND = 10
"""How often at most a progress line is drawn again."""

BAR_WIDTH = 20
"""Characters of fit's bar, as Keras's."""


def duration(seconds: float) -> str:
    """Keras's way: `42s`, `3:07`, `1:02:03`."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if seconds >= 60:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds}s"


class Progress:
    """Rows done of `total`, the rate and the time left, on one line of stderr: from `DELAY`
    seconds into the run, and removed at its end. Not shown when the results themselves go to
    the terminal (`output` is `-` and stdout a terminal): it would cut their lines."""

    def __init__(self, what: str, total: int, enabled: bool = True, output: str | None = None,
                 chunks: int | None = None):
        self.what, self.total, self.done_rows = what, total, 0
        self.chunks, self.done_chunks = chunks, 0
        """Chunks of a run on a cluster, and those done; None elsewhere."""
        enabled = enabled and not (output == "-" and is_terminal(sys.stdout))
        self.line = StatusLine(sys.stderr) if enabled and is_terminal(sys.stderr) else None
        self.start = time.monotonic()
        self.drawn = 0.0

    def advance(self, rows: int, chunks: int = 0) -> None:
        """Count `rows` more rows done (and `chunks` more chunks)."""
        self.done_rows += rows
        self.done_chunks += chunks
        now = time.monotonic()
        if (self.line is None or now - self.start < DELAY
                or now - self.drawn < 1 / REDRAWS_PER_SECOND):
            return
        self.drawn = now
        rate = self.done_rows / (now - self.start)
        left = (self.total - self.done_rows) / rate if rate else 0
        percent = 100 * self.done_rows // max(self.total, 1)
        chunks = "" if self.chunks is None else f"{self.done_chunks:,}/{self.chunks:,} chunks - "
        self.line.show(f"{self.what}: {self.done_rows:,}/{self.total:,} rows ({percent}%) - "
                       f"{chunks}{rate:,.0f} rows/s - ETA {duration(left)}")

    def done(self) -> None:
        """Remove the progress line."""
        if self.line is not None:
            self.line.clear()


class FitProgress:
    """fit's report on stderr, as Keras's `verbose=1` on a terminal: `Epoch 2/5`, then a bar
    for the batches of the epoch with the time left, the time per batch and the running loss
    and metrics, ended with the epoch's time and metrics (validation too). In pipes and files,
    one line per epoch. Nothing with -q."""

    def __init__(self, epochs: int, quiet: bool):
        self.epochs = epochs
        self.quiet = quiet
        self.line = StatusLine(sys.stderr) if not quiet and is_terminal(sys.stderr) else None
        self.glyphs = unicode_glyphs(sys.stderr)
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.start = time.monotonic()
        self.first_batch_end: float | None = None
        self.drawn = 0.0
        self.batches = 0

    def begin(self, epoch: int) -> None:
        """Epoch `epoch` (from 0) starts: Keras's `Epoch N/M` line, when there are several."""
        self._new_epoch()
        if self.line is not None and self.epochs > 1:
            print(f"Epoch {epoch + 1}/{self.epochs}", file=sys.stderr, flush=True)

    def batch_end(self, done: int, total: int, results) -> None:
        """Batch `done` of `total` ended; `results()` gives the running loss and metrics."""
        now = time.monotonic()
        self.batches = total
        if done == 1:
            self.first_batch_end = now
        if self.line is None or (now - self.drawn < 1 / REDRAWS_PER_SECOND and done < total):
            return
        self.drawn = now
        step = self._step_seconds(done, now)
        self.line.show(f"{self._bar(done, total)} {duration(step * (total - done))}"
                       f"{_per_step(step)}{_metrics(results())}")

    def epoch_end(self, epoch: int, results: dict[str, float], seconds: float) -> None:
        """Epoch `epoch` (from 0) ended after `seconds`, with `results`."""
        if self.quiet:
            return
        if self.line is None:
            shown = " - ".join(f"{name}: {value:.4f}" for name, value in results.items())
            print(f"Epoch {epoch + 1}/{self.epochs} - {seconds:.1f}s - {shown}",
                  file=sys.stderr, flush=True)
            return
        step = self._step_seconds(self.batches, time.monotonic())
        self.line.finish(f"{self._bar(self.batches, self.batches)} {seconds:.0f}s"
                         f"{_per_step(step)}{_metrics(results)}")

    def _step_seconds(self, done: int, now: float) -> float:
        """Seconds per batch, as Keras estimates it: leaving the first batch (compiling,
        caches) out once there are others."""
        if done > 1 and self.first_batch_end is not None:
            return (now - self.first_batch_end) / (done - 1)
        return (now - self.start) / max(done, 1)

    def _bar(self, done: int, total: int) -> str:
        """`12/47 ━━━━━─────` (`[====>.....]` in ASCII)."""
        count = f"{done:>{len(str(total))}}/{total}"
        filled = BAR_WIDTH * done // max(total, 1)
        if self.glyphs:
            return f"{count} {'━' * filled}{'─' * (BAR_WIDTH - filled)}"
        if not filled:
            return f"{count} [{'.' * BAR_WIDTH}]"
        head = ">" if done < total else "="
        return f"{count} [{'=' * (filled - 1)}{head}{'.' * (BAR_WIDTH - filled)}]"


def _per_step(seconds: float) -> str:
    """Keras's ` 43ms/step`."""
    if seconds >= 1 or seconds == 0:
        return f" {seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f" {seconds * 1e3:.0f}ms/step"
    return f" {seconds * 1e6:.0f}us/step"


def _metrics(results: dict[str, float]) -> str:
    """` - accuracy: 0.8100 - loss: 0.5200`: sorted by name, as Keras 3 shows its logs."""
    return "".join(f" - {name}: {value:.4f}" if abs(value) > 1e-3 else
                   f" - {name}: {value:.4e}" for name, value in sorted(results.items()))


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
