"""Pillow, the optional extra `seqcli[images]`, imported only where an image is read or painted.

Standard library only: a command checks for Pillow before its work begins without loading
anything else.
"""

from __future__ import annotations

from seqcli.errors import SeqcliError

PILLOW_INSTALL = "pip install 'seqcli[images]'"


def require_pillow(purpose: str, instead: str | None = None):
    """The `PIL.Image` module, or a SeqcliError (exit 1) saying that `purpose` (such as "a .png
    diagram") needs Pillow, how to install it and, when given, what works `instead`."""
    try:
        import PIL.Image
    except ImportError as error:
        alternative = f" ({instead})" if instead else ""
        raise SeqcliError(f"{purpose} needs the 'Pillow' package, which is not installed: "
                          f"{PILLOW_INSTALL}{alternative}") from error
    return PIL.Image
