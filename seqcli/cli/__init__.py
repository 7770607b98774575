"""The `seqcli` command line: thin commands that delegate; errors turned into exit codes in
`seqcli.cli.app`. Each command module registers its commands on `app` when imported, so they
are imported in the order `seqcli --help` lists them."""

from seqcli.cli.app import app, main, run

# isort: off
from seqcli.cli import summary, predict, init, extract, freeze  # noqa: F401
from seqcli.cli import bench, fit, evaluate, keras, onnx  # noqa: F401
from seqcli.cli import plot, report  # noqa: F401
# isort: on

__all__ = ["app", "main", "run"]
