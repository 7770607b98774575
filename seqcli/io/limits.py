"""Limits on files from strangers that more than one reader applies."""

from __future__ import annotations

MAX_COMPRESSION_RATIO = 1000
"""Inflated over stored bytes beyond which a zip member (or compressed dataset) is refused as
a likely zip bomb: deflate itself tops out near 1032:1 (Keras stores members uncompressed)."""
MIN_RATIO_CHECKED_SIZE = 1024**2
"""Members that inflate to at most this many bytes are too small to matter: never refused."""


def likely_zip_bomb(inflated: int, stored: int) -> bool:
    """True when `inflated` bytes from `stored` ones exceed both `MIN_RATIO_CHECKED_SIZE` and
    `MAX_COMPRESSION_RATIO` times the stored size (taken as at least one byte)."""
    return inflated > MIN_RATIO_CHECKED_SIZE and inflated > MAX_COMPRESSION_RATIO * max(stored, 1)
