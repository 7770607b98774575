"""File I/O: atomic outputs, model-relative paths, weights files and streamed `.npy` arrays.

Everything here reads files from strangers: sizes are checked before anything is
allocated, and every failure is a `seqcli.errors` exception with a one-line message.
"""
