"""`python -m seqcli` and the `seqcli` console script."""

import gc
import os
import sys

from seqcli.forkserver import start_early


def run() -> None:
    """Run the command line and exit with its code.

    Start-up (typer, pydantic, numpy, numba, the model and its kernels) leaves some 85,000
    objects that live until exit; the cyclic garbage collector would walk them again and again
    as they come (some 30-40 ms), to find a few hundred to free. It is off until the command's
    work begins (`seqcli.cli.app.start_up_done`); short commands finish without it."""
    gc.disable()
    # pydantic looks for plugins in every installed package's metadata before it validates
    # anything: the command line uses none, and skips the search
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    # a local Dask cluster's fork server imports Dask and the kernels meanwhile
    start_early(sys.argv[1:])
    from seqcli.cli import run as run_cli

    run_cli(gc_paused=True)


if __name__ == "__main__":
    run()
