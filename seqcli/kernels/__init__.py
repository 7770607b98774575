"""Numba kernels for seqcli's layers; import the submodule you need (each one compiles lazily).

Importing any of them first sets the C allocator up for the arrays they make
(`memory.keep_freed_memory`) and, before numba reads its configuration, has it compile with the
CPU's full vector width (`cpu.full_width_vectors`): whoever runs a model, the command line or
the Python API."""

from seqcli.kernels.cpu import full_width_vectors
from seqcli.kernels.memory import keep_freed_memory

full_width_vectors()
keep_freed_memory()
