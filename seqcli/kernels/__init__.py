"""Numba kernels for seqcli's layers; import the submodule you need (each one compiles lazily)."""
