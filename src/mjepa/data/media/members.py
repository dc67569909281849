"""Media stored as members of tar shards, named by references that fit a manifest's ``path`` field.

A reference is ``SHARD#NAME@OFFSET:SIZE``: the shard (a local path or a URL such as ``s3://bucket/x.tar``), the
member's name inside it, and where its bytes lie. The offset makes reading one member a single ranged read, with
no scan of the tar and no index to load, so any item of any shard can be decoded on its own, in any order (what the
training stream's exact resume needs). URLs are read through fsspec (``s3://`` needs ``s3fs``, ``gs://`` needs
``gcsfs``); plain paths with ordinary file reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_REFERENCE = re.compile(r"^(?P<shard>.+\.tar)#(?P<name>[^#@/]+)@(?P<offset>\d+):(?P<size>\d+)$")


@dataclass(frozen=True)
class MemberRef:
    shard: str
    name: str
    offset: int  # of the member's data in the shard, in bytes
    size: int

    def __str__(self) -> str:
        return f"{self.shard}#{self.name}@{self.offset}:{self.size}"


def parse_member(path: str) -> MemberRef | None:
    """The reference ``path`` spells, or None for an ordinary file path."""
    match = _REFERENCE.match(str(path))
    if match is None:
        return None
    return MemberRef(match["shard"], match["name"], int(match["offset"]), int(match["size"]))


def is_url(location: str) -> bool:
    return "://" in location


def url_filesystem(url: str):
    """The fsspec filesystem for ``url`` and the path inside it (fsspec keeps one filesystem object per protocol
    and options, so this is cheap to call per read)."""
    import fsspec

    return fsspec.core.url_to_fs(url)


def read_range(location: str, start: int, size: int) -> bytes:
    """``size`` bytes of a local file or URL from ``start``; FileNotFoundError when it does not exist."""
    if is_url(location):
        fs, path = url_filesystem(location)
        return fs.cat_file(path, start=start, end=start + size)
    with open(location, "rb") as handle:
        handle.seek(start)
        return handle.read(size)


def read_text(location: str) -> str:
    """A whole local file or URL as UTF-8 text."""
    if is_url(location):
        fs, path = url_filesystem(location)
        return fs.cat_file(path).decode("utf-8")
    with open(location, encoding="utf-8") as handle:
        return handle.read()


class MemberReadError(Exception):
    """A member that cannot be read: ``reason`` is a media-error reason (missing, zero_length, truncated,
    unreadable)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


def read_member(ref: MemberRef) -> bytes:
    """The member's bytes, or MemberReadError saying why not."""
    if ref.size == 0:
        raise MemberReadError("zero_length", "shard member is empty (0 bytes)")
    try:
        data = read_range(ref.shard, ref.offset, ref.size)
    except FileNotFoundError:
        raise MemberReadError("missing", f"shard {ref.shard} does not exist") from None
    except OSError as err:
        raise MemberReadError("unreadable", f"cannot read shard {ref.shard} ({err})") from None
    if len(data) < ref.size:
        raise MemberReadError(
            "truncated",
            f"shard {ref.shard} ends {ref.size - len(data)} bytes short of the end "
            f"of this member (bytes {ref.offset}..{ref.offset + ref.size})",
        )
    return data
