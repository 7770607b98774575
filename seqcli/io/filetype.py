"""What a file is, told by its first bytes (never by its name): the messages for a file given
where seqcli expects another kind name what it was given and how to convert it.

Standard library only: the model-file reader uses it, and `seqcli summary` loads no numpy.
"""

from __future__ import annotations

import shlex
import zipfile

HEAD_SIZE = 512
"""Bytes of a file's start that `file_kind` looks at."""

_IMAGES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_MAX_NAMES_SHOWN = 4


def file_kind(head: bytes) -> str | None:
    """What the bytes `head`, a file's first `HEAD_SIZE` (or all of a shorter file), are:
    "npy", "zip", "image:PNG", "safetensors", "hdf5", "gzip", "pickle", "csv", "text", or
    None when they are none of these."""
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image:WebP"
    for magic, name in _IMAGES:
        if head.startswith(magic) and (name != "BMP" or head[6:10] == b"\0\0\0\0"):
            return f"image:{name}"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    return _text_kind(head)


def _text_kind(head: bytes) -> str | None:
    """"csv" for text whose first line holds commas, "text" for other text, else None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:  # a character cut at the end of `head` is still text
        if error.start < len(head) - 3:
            return None
        text = head[:error.start].decode("utf-8")
    if not text or any(ord(c) < 32 and c not in "\t\r\n" for c in text):
        return None
    fields = [field for line in text.splitlines()[:5] if "," in line
              for field in line.split(",")]
    return "csv" if any(_is_number(field) for field in fields) else "text"


def _is_number(text: str) -> bool:
    """True when `text` reads as a float (`1`, ` -2.5e3 `, `nan`)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def zip_members(path: str) -> list[str] | None:
    """The member names of the ZIP file at `path` (from its central directory; nothing is
    decompressed), or None when it cannot be read as one."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, NotImplementedError):
        return None


def first_zip_member(head: bytes) -> str | None:
    """The name of a ZIP file's first member, read from its local header in `head` (for a
    stream, whose central directory at the end cannot be reached)."""
    if not head.startswith(b"PK\x03\x04") or len(head) < 30:
        return None
    length = int.from_bytes(head[26:28], "little")
    name = head[30:30 + length]
    return name.decode("utf-8", "replace") if len(name) == length else None


def not_an_array(source: str, head: bytes, members: list[str] | None = None) -> str | None:
    """`SOURCE: this is ..., not a .npy array; ...how to make one`, for a file given where a `.npy`
    array is expected, whose first bytes are `head`; `members`: a ZIP file's member names,
    when they could be listed. None when the bytes are not recognised."""
    kind = file_kind(head)
    stream = source.startswith("<")  # <stdin>: the examples name a file instead

    def shown(placeholder: str) -> str:
        return repr(placeholder if stream else source)

    if kind == "zip":
        return _zip_message(source, shown("x.npz"), members if members is not None
                            else [name for name in [first_zip_member(head)] if name])
    if kind is not None and kind.startswith("image:"):
        named = "pass the file" if stream else "name the file with its image extension"
        return (f"{source}: this is a {kind[6:]} image, not a .npy array; INPUT and X read "
                f"images themselves ({named}, or a folder or glob of images), or decode it, as "
                f"np.asarray(PIL.Image.open({shown('image.png')}), 'float32')[None], and save "
                "the pixels with np.save")
    if kind == "safetensors":
        return (f"{source}: this is a safetensors file (weights), not a .npy array; weights go to "
                "--weights, inputs are one array saved with np.save")
    if kind == "csv":
        header = ", skiprows=1" if _has_header(head) else ""
        return (f"{source}: this is CSV text, not a .npy array; read it with "
                f"np.loadtxt({shown('x.csv')}, delimiter=','{header}, dtype='float32', "
                "ndmin=2) and save that with np.save")
    if kind == "text" and b"layers:" in head:
        return (f"{source}: this is a model file (YAML), not a .npy array; the model comes first: "
                "seqcli predict MODEL INPUT")
    described = {
        "hdf5": "an HDF5 file (a Keras .h5?), not a .npy array",
        "gzip": "a gzip-compressed file, not a .npy array; decompress it first (gunzip)",
        "pickle": "a Python pickle, not a .npy array, and seqcli never loads one (it could run "
                  "code); save the array with np.save",
        "text": "a text file, not a .npy array; save the array with np.save",
    }
    return f"{source}: this is {described[kind]}" if kind in described else None


def _has_header(head: bytes) -> bool:
    """True when the first line of CSV text `head` holds a field that is not a number."""
    first = head.decode("utf-8", "replace").split("\n", 1)[0]
    return not all(_is_number(field) for field in first.split(","))


def _zip_message(source: str, shown: str, members: list[str]) -> str:
    """What a ZIP archive given as a `.npy` array holds: an `.npz`'s arrays, or a `.keras`
    model (`shown`: the file's name as the example code quotes it)."""
    if {"config.json", "metadata.json"} & set(members) or any(
            name.endswith(".weights.h5") for name in members):
        named = "FILE.keras" if source.startswith("<") else shlex.quote(source)
        return (f"{source}: this is a .keras model archive, not a .npy array; import it with "
                f"`seqcli import-keras {named} -o model.yaml`")
    arrays = [name[:-4] for name in members if name.endswith(".npy")]
    if not arrays or len(arrays) != len(members):
        return f"{source}: this is a ZIP archive, not a .npy array; save the array with np.save"
    listed = ", ".join(arrays[:_MAX_NAMES_SHOWN])
    listed += ", ..." if len(arrays) > _MAX_NAMES_SHOWN else ""
    count = f"{len(arrays)} arrays" if len(arrays) != 1 else "1 array"
    if source.startswith("<"):  # a stream: only its first member is known
        count, listed = "arrays", f"{arrays[0]}, ..."
    return (f"{source}: this is an .npz archive holding {count} ({listed}), not a .npy array; save "
            f"the one to use with np.save, such as np.load({shown})['{arrays[0]}']")

