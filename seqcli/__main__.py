"""`python -m seqcli`."""

from seqcli.cli import run

run()
