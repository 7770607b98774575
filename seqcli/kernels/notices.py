"""The notice that numba is compiling one of seqcli's kernels (its cache lacks it), asked for
before numba is even imported: numba hears of the listener only once a kernel module imports
`numba_startup` (`listen`), so a run that never needs numba (a small model, all in numpy)
never imports it for the notice's sake."""

from __future__ import annotations

import sys

_CALLBACK: list = [None]  # [the callback asked for latest, or None once called]
_LISTENER: list = []  # [numba's listener] once registered


def notify_compiling(callback) -> None:
    """Call `callback()` once, when numba next starts compiling a seqcli kernel in this process
    (a kernel its cache lacks); kernels loaded from the cache call nothing."""
    _CALLBACK[0] = callback
    if "numba" in sys.modules:
        listen()


def listen() -> None:
    """Register the listener with numba's compile events (once; `numba_startup` calls it as
    the first kernel module is imported)."""
    if _LISTENER:
        return
    from numba.core import event

    class FirstCompile(event.Listener):
        def on_start(self, ev):
            function = getattr(ev.data.get("dispatcher"), "py_func", None)
            if _CALLBACK[0] and getattr(function, "__module__", "").startswith("seqcli."):
                call, _CALLBACK[0] = _CALLBACK[0], None
                call()

        def on_end(self, ev):
            pass

    _LISTENER.append(FirstCompile())
    event.register("numba:compile", _LISTENER[0])
