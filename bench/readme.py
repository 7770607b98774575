"""The README's figures, rewritten by a full `make bench` run: each table sits between two
markers, `<!-- make bench: NAME -->` and `<!-- /make bench: NAME -->`, and only what lies
between them is replaced; the prose around them is the README's own."""

from __future__ import annotations

import re
from pathlib import Path

DESCRIPTIONS = {
    "guide_convnet": "Keras guide convnet (396 MFLOP/image)",
    "mlp": "MLP 784-512-512-10",
    "mobilenet_style": "MobileNet-style stack",
    "conv1d_text": "Conv1D text classifier (Embedding 20000→128, 2 × Conv1D 128 k7 s3; "
                   "500 ids)",
    "lstm_text": "LSTM text classifier (Embedding 20000→128, LSTM 128, Dense 1; 200 ids)",
    "gru_series": "GRU forecaster (120 steps × 14, GRU 64 → GRU 64 → Dense 1)",
    "dcgan_generator": "DCGAN generator (Dense 128→7·7·128, Conv2DTranspose ×3 to 28×28)",
}
"""What the README calls each benchmark model."""


def marker(name: str, end: bool = False) -> str:
    """The opening (or closing) marker of the block called `name`."""
    return f"<!-- {'/' if end else ''}make bench: {name} -->"


def replace_block(text: str, name: str, lines: list[str]) -> str:
    """`text` with the lines between the markers of block `name` replaced by `lines`, set apart
    by blank lines (so that Markdown ends a table before the closing marker); KeyError when
    the block is not there (or its markers are out of order)."""
    pattern = re.compile(re.escape(marker(name)) + r"\n.*?" + re.escape(marker(name, True)),
                         re.DOTALL)
    if not pattern.search(text):
        raise KeyError(f"no block {marker(name)} ... {marker(name, True)}")
    body = "\n".join([marker(name), "", *lines, "", marker(name, True)])
    return pattern.sub(lambda _: body, text, count=1)


def throughput_lines(rows: list[dict]) -> list[str]:
    """The README's throughput table: samples/s and the ratios, one line per measured row."""
    lines = ["| model | batch | threads | seqcli samples/s | vs onnxruntime | vs numpy |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        ratios = [format(row[key], ".2f") if key in row else ""
                  for key in ("onnxruntime_ratio", "numpy_ratio")]
        lines.append(f"| {DESCRIPTIONS.get(row['model'], row['model'])} | {row['batch']} | "
                     f"{row['threads']} | {row['seqcli_ips']:,.0f} | {' | '.join(ratios)} |")
    return lines


def update_readme(path: Path, blocks: dict[str, list[str]]) -> list[str]:
    """Rewrite each block of the README that is there; the names of those that are not."""
    text = path.read_text()
    missing = []
    for name, lines in blocks.items():
        try:
            text = replace_block(text, name, lines)
        except KeyError:
            missing.append(name)
    path.write_text(text)
    return missing
