"""The memory a batch needs, checked against what the machine has before the batch is made."""

from __future__ import annotations

from seqcli.build import BuiltModel
from seqcli.errors import SeqcliError
from seqcli.runtime.weights import available_memory
from seqcli.shapes import num_elements
from seqcli.summary import BYTES_PER_VALUE, readable_size


def batch_bytes(built: BuiltModel, batch: int, training: bool = False) -> int | None:
    """float32 bytes a batch of `batch` samples holds at least: at inference, the largest
    input and output of one layer together; in training, the input and every layer's output
    (kept for the backward pass). None when a dimension is unknown."""
    leaves = built.leaves()
    inputs = [num_elements(info.input_shape) for info in leaves]
    outputs = [num_elements(info.output_shape) for info in leaves]
    if not leaves or None in inputs or None in outputs:
        return None
    if training:
        values = inputs[0] + sum(outputs)
    else:
        values = max(size_in + size_out for size_in, size_out in zip(inputs, outputs))
    return values * BYTES_PER_VALUE * batch


def check_batch_memory(built: BuiltModel, batch: int, training: bool = False) -> None:
    """Refuse (exit 1, "out of memory") a batch whose activations cannot fit in the memory
    this machine has available, before anything of it is allocated."""
    needed = batch_bytes(built, batch, training)
    available = available_memory()
    if needed is not None and available is not None and needed > available:
        raise SeqcliError(
            f"out of memory: a batch of {batch:,} samples needs {readable_size(needed)} for "
            f"the model's activations, more than the {readable_size(available)} this machine "
            "has available; pass a smaller --batch-size")
