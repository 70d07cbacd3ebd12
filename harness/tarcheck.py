"""Reading a tar to its end-of-archive marker: ``tarfile`` reads a tar cut on a member boundary as a valid,
shorter archive without any error, so whoever must see every member (pool images, eval sets) checks here."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Callable


class IncompleteTar(ValueError):
    """The tar has no end-of-archive marker after its last member: it was cut short."""


def read_complete_tar(path: Path, on_member: Callable[[tarfile.TarFile, tarfile.TarInfo], None] | None = None) -> int:
    """Read every member header of ``path`` (calling ``on_member``), then require the two zero blocks that end
    a tar.  Returns the number of members.

    Raises:
        IncompleteTar: when the marker is missing; ``tarfile.TarError`` or ``OSError`` for an unreadable tar.
    """
    members = 0
    with open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
        for member in tar:
            members += 1
            if on_member is not None:
                on_member(tar, member)
        end = tar.offset
        handle.seek(end)
        marker = handle.read(2 * tarfile.BLOCKSIZE)
    if len(marker) < 2 * tarfile.BLOCKSIZE or any(marker):
        raise IncompleteTar(f"truncated tar (no end-of-archive marker after byte {end:,}; {members} members read)")
    return members
