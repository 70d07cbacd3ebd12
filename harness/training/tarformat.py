"""Just enough of the tar format to index and write webdataset shards fast.

Python's ``tarfile`` spends ~0.3 ms per member building ``TarInfo`` objects (6.6 s to index 8,192 samples of
three members under cProfile, 1.9 s with this scanner); a DataComp small pool has ~38 M members.  Indexing only needs each member's name,
data offset and size, and the shards we write only need plain ustar headers, so both are done here directly
(POSIX ustar, with pax ``x`` and GNU ``L`` long-name records understood when reading, as written by Python's
tarfile, webdataset and img2dataset).  Anything else unexpected raises ``tarfile.ReadError`` like tarfile would.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import BinaryIO

BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)
_REGULAR = (b"0", b"\0", b"7")


def _padded(size: int) -> int:
    return -size % BLOCK


def _number(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for sizes beyond 8 GiB
        return int.from_bytes(field[1:], "big")
    digits = field.split(b"\0", 1)[0].strip()
    try:
        return int(digits, 8) if digits else 0
    except ValueError:
        raise tarfile.ReadError(f"invalid number {field!r} in a tar header") from None


def _checksum_ok(header: bytes, stored: int) -> bool:
    """The header sum with the checksum field read as spaces, unsigned or (old tars) signed."""
    unsigned = sum(header) - sum(header[148:156]) + 256
    if stored == unsigned:
        return True
    return stored == unsigned - 256 * sum(1 for b in header if b > 127)


def _name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, str]:
    records, pos = {}, 0
    while pos < len(data):
        length = int(data[pos:data.index(b" ", pos)])
        key, _, value = data[data.index(b" ", pos) + 1:pos + length - 1].partition(b"=")
        records[key.decode()] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def scan(handle: BinaryIO, start: int = 0) -> Iterator[tuple[str, int, int]]:
    """Yield ``(name, data offset, size)`` for every regular file, seeking past the data."""
    pos, pending = start, {}
    while True:
        handle.seek(pos)
        header = handle.read(BLOCK)
        if len(header) < BLOCK or header == bytes(BLOCK):
            return
        if not _checksum_ok(header, _number(header[148:156])):
            raise tarfile.ReadError(f"bad tar header checksum at offset {pos}")
        size, kind = _number(header[124:136]), header[156:157]
        data_at = pos + BLOCK
        if kind in (b"x", b"L"):
            handle.seek(data_at)
            data = handle.read(size)
            pending = {**pending, **(_pax(data) if kind == b"x" else {"path": data.rstrip(b"\0").decode()})}
        elif kind in _REGULAR:
            size = int(pending.get("size", size))
            yield pending.get("path", _name(header)), data_at, size
            pending = {}
        pos = data_at + size + _padded(size)


def member(name: str, data: bytes, mtime: int = 0) -> bytes:
    """One regular-file member (ustar header, data, padding) with fixed owner/mode/mtime: stable bytes."""
    raw = name.encode("utf-8")
    if len(raw) > 100:
        raise ValueError(f"member name longer than 100 bytes: {name!r}")
    header = bytearray(BLOCK)
    header[:len(raw)] = raw
    header[100:108] = b"0000644\0"
    header[108:116] = header[116:124] = b"0000000\0"
    header[124:136] = b"%011o\0" % len(data)
    header[136:148] = b"%011o\0" % mtime
    header[148:156] = b" " * 8
    header[156:157] = b"0"
    header[257:265] = b"ustar\x0000"
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + data + bytes(_padded(len(data)))
