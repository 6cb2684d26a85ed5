"""An artifact directory as a ``.tar.gz`` stream, produced in bounded chunks.

The archive holds one top-level folder (the model's id) with the artifact's files; its
``manifest.json`` is the artifact's own, less the server's file-system path of the base model
(``base_model.path``: meaningless elsewhere; the base stays named by ``base_model.id``).
Nothing is built in memory beyond one chunk: tar headers come from :mod:`tarfile`, file
bytes are read ``chunk_size`` at a time and compressed by one ``zlib`` gzip stream. Every
file is opened before the first byte goes out, so a model deleted while its archive streams
still streams whole (an open file outlives its unlinking). The API streams artifacts with
it; the worker writes the archives it builds with it (into an ``app.atomic`` file).
"""

from __future__ import annotations

import json
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from io import BufferedReader, BytesIO
from pathlib import Path

MANIFEST_NAME = "manifest.json"
CHUNK_SIZE = 1 << 20
#: safetensors weights hardly compress: a fast level costs little size and much less time
COMPRESS_LEVEL = 1
#: gzip framing (a header and a CRC trailer) around the deflate stream
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_SKIPPED_PREFIXES = (".tmp-", ".deleting-")

MEDIA_TYPE = "application/gzip"


@dataclass
class _Member:
    name: str
    mtime: int
    size: int = 0
    handle: BufferedReader | BytesIO | None = None  # None: a directory


def public_manifest(data: bytes) -> bytes:
    """The manifest as exported: without ``base_model.path`` (unchanged if unreadable)."""
    try:
        manifest = json.loads(data)
    except ValueError:
        return data
    base = manifest.get("base_model") if isinstance(manifest, dict) else None
    if isinstance(base, dict) and "path" in base:
        manifest["base_model"] = {k: v for k, v in base.items() if k != "path"}
        return json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
    return data


def _members(root: Path, arcname: str) -> list[_Member]:
    """Every directory and regular file under ``root`` (symlinks and temporaries skipped),
    sorted, files opened."""
    members = [_Member(arcname, int(root.stat().st_mtime))]
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_symlink() or any(p.startswith(_SKIPPED_PREFIXES) for p in relative.parts):
            continue
        stat = path.stat()
        name = f"{arcname}/{relative.as_posix()}"
        if path.is_dir():
            members.append(_Member(name, int(stat.st_mtime)))
        elif path.is_file():
            if relative.as_posix() == MANIFEST_NAME:
                data = public_manifest(path.read_bytes())
                members.append(_Member(name, int(stat.st_mtime), len(data), BytesIO(data)))
            else:
                members.append(_Member(name, int(stat.st_mtime), stat.st_size, path.open("rb")))
    return members


def _header(member: _Member) -> bytes:
    info = tarfile.TarInfo(member.name)
    info.mtime = member.mtime
    if member.handle is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = member.size, 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def artifact_tar_gz(root: Path, *, arcname: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The ``.tar.gz`` of the directory ``root`` (as ``arcname/...``), in chunks of at
    most ``chunk_size`` bytes. Files are opened now; the bytes are read as the chunks are taken.
    ``OSError`` (as the chunks are taken) when a file shrank since it was opened."""
    members = _members(Path(root), arcname)
    return _stream(members, chunk_size)


def _stream(members: list[_Member], chunk_size: int) -> Iterator[bytes]:
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    pending = bytearray()
    written = 0  # uncompressed tar bytes

    def put(data: bytes) -> None:
        nonlocal written
        written += len(data)
        pending.extend(compressor.compress(data))

    try:
        for member in members:
            put(_header(member))
            if member.handle is None:
                continue
            left = member.size
            while left > 0:
                data = member.handle.read(min(chunk_size, left))
                if not data:
                    raise OSError(f"{member.name} shrank while it was archived")
                left -= len(data)
                put(data)
                while len(pending) >= chunk_size:
                    yield bytes(pending[:chunk_size])
                    del pending[:chunk_size]
            put(bytes(-member.size % tarfile.BLOCKSIZE))
            member.handle.close()
        put(bytes(2 * tarfile.BLOCKSIZE))  # the end-of-archive marker
        put(bytes(-written % tarfile.RECORDSIZE))  # whole records, as tarfile writes them
        pending.extend(compressor.flush())
        for start in range(0, len(pending), chunk_size):
            yield bytes(pending[start : start + chunk_size])
    finally:
        for member in members:
            if member.handle is not None:
                member.handle.close()
