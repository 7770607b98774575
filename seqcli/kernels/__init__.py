"""Numba kernels for seqcli's layers; import the submodule you need (each one compiles lazily).

Importing any of them first sets the C allocator up for the arrays they make
(`memory.keep_freed_memory`): whoever runs a model, the command line or the Python API. Those
that run in numba import `numba_startup`, which has numba compile with the CPU's full vector
width (`cpu.full_width_vectors`); the numpy ones (`small`) load neither numba nor LLVM."""

from seqcli.kernels.memory import keep_freed_memory

keep_freed_memory()
