"""`python -m seqcli` and the `seqcli` console script."""

import gc
import os
import sys
import types

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
    _no_plugin_loader()
    # a local Dask cluster's fork server imports Dask and the kernels meanwhile
    start_early(sys.argv[1:])
    from seqcli.cli import run as run_cli

    run_cli(gc_paused=True)


_PLUGIN_LOADER = "pydantic.plugin._loader"


def _no_plugin_loader() -> None:
    """With every pydantic plugin off (PYDANTIC_DISABLE_PLUGINS=__all__), stand in for
    pydantic's plugin loader, whose import alone costs importlib.metadata (10-15 ms at every
    command) only for `get_plugins()` to find none. Any other name asked of it loads the real
    loader."""
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") != "__all__" or _PLUGIN_LOADER in sys.modules:
        return
    loader = types.ModuleType(_PLUGIN_LOADER)
    loader.get_plugins = lambda: ()

    def real(name: str):
        if name.startswith("__"):  # what the import system asks of any module
            raise AttributeError(name)
        import importlib

        del sys.modules[_PLUGIN_LOADER]
        return getattr(importlib.import_module(_PLUGIN_LOADER), name)

    loader.__getattr__ = real
    sys.modules[_PLUGIN_LOADER] = loader


if __name__ == "__main__":
    run()
