"""Open an uploaded zip without extracting it, vet every member from the central directory, and
read members in bounded chunks, counting the bytes that actually come out.

Before :class:`zipfile.ZipFile` parses the central directory (every member in memory), the
number of members is checked from the end record and the directory itself. Then, for every
member, in order, the first problem refuses the whole upload (:class:`.limits.UnsafeArchive`,
or a cap of :class:`.limits.ImageLimits`): a name with control characters, an absolute path
(``/x``, ``C:x``), a ``..`` component, a symbolic link or other special file (from the Unix
mode in the external attributes), the same name twice, an encrypted member or an unknown
compression, a nested archive (by extension), the declared uncompressed sizes past the total
cap, a member expanding past the ratio cap, an image past the per-file cap. Members are only
ever read into memory; a name is a key, never a path on disk.
"""

from __future__ import annotations

import io
import lzma
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from app.datasets.failures import IngestFailure
from app.datasets.images.limits import ImageLimits, UnsafeArchive

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
#: extension -> the Pillow format the content must be
IMAGE_EXTENSIONS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".webp": "WEBP",
}
#: members refused as nested archives, by extension
_ARCHIVES = ".zip .tar .gz .tgz .bz2 .tbz .tbz2 .xz .txz .lzma .zst .lz4 .7z .rar .cab .jar .war"
ARCHIVE_EXTENSIONS = frozenset(f"{_ARCHIVES} .whl .apk .iso .z".split())
LABEL_FILES = ("labels.csv", "labels.jsonl")
_COMPRESSIONS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
#: bytes of the central directory allowed per member (an entry is 46 bytes plus its name)
CENTRAL_BYTES_PER_MEMBER = 1024
CHUNK = 1024 * 1024
#: what reading a damaged member raises (a bad CRC, a broken deflate stream, a short file)
READ_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    NotImplementedError,
)


class Corrupt(Exception):
    """A file that cannot be read or decoded; the message says why (shown in the report)."""


@dataclass(frozen=True)
class Member:
    """A vetted file member: ``name`` with ``/`` separators and no ``.`` components."""

    name: str
    info: zipfile.ZipInfo

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix.lower()


@dataclass
class Archive:
    """The vetted members of an open zip, by kind; ``ignored`` are never read."""

    zf: zipfile.ZipFile
    limits: ImageLimits
    members: int = 0
    images: dict[str, Member] = field(default_factory=dict)
    label_files: dict[str, Member] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    bytes_read: int = 0

    def read(self, member: Member) -> bytes:
        """The member's bytes, read in chunks, counted against its declared size, the per-image
        cap and the archive's cap (never trusting the header)."""
        out = bytearray()
        try:
            with self.open(member, image=True) as stream:
                while chunk := stream.read(CHUNK):
                    out += chunk
        except READ_ERRORS as exc:
            raise Corrupt(f"cannot be read from the zip ({type(exc).__name__}: {exc})") from None
        return bytes(out)

    def open(self, member: Member, *, image: bool = False) -> io.BufferedReader:
        """A buffered binary stream of the member that counts what it yields (``image``: held
        to the per-image cap too); closing it closes the member."""
        raw = self.zf.open(member.info)
        return io.BufferedReader(_Counted(raw, self, member, image), buffer_size=CHUNK)

    def text(self, member: Member) -> IO[str]:
        """The member as strict UTF-8 text (a BOM skipped), counted like :meth:`open`."""
        return io.TextIOWrapper(
            self.open(member), encoding="utf-8-sig", errors="strict", newline=""
        )


class _Counted(io.RawIOBase):
    def __init__(self, raw: IO[bytes], archive: Archive, member: Member, image: bool) -> None:
        self._raw = raw
        self._archive = archive
        self._member = member
        self._image = image
        self._count = 0

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()
        super().close()

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._count += n
        self._archive.bytes_read += n
        name = self._member.name
        if self._count > self._member.info.file_size:
            raise UnsafeArchive(
                f"member {name!r} holds more bytes than its header says "
                f"({self._member.info.file_size})",
                code="archive_size_mismatch",
                member=name,
            )
        if self._image:
            self._archive.limits.file_bytes(name, self._count)
        self._archive.limits.archive_bytes(self._archive.bytes_read, read=True)
        return n


def check_zip_head(head: bytes) -> None:
    if not head:
        raise IngestFailure("the file is empty")
    if not head.startswith(ZIP_MAGIC):
        raise IngestFailure(
            "the file is not a zip archive (it does not start with 'PK\\x03\\x04'); image "
            "datasets are uploaded as a zip of images"
        )


@contextmanager
def open_archive(path: Path, limits: ImageLimits) -> Iterator[Archive]:
    """The vetted archive at ``path``, closed on leaving."""
    with path.open("rb") as f:
        check_zip_head(f.read(4))
    _check_end_record(path, limits)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as exc:
        raise IngestFailure(f"the file is not a readable zip archive: {exc}") from None
    with zf:
        archive = Archive(zf=zf, limits=limits)
        infos = zf.infolist()
        limits.members(len(infos))
        archive.members = len(infos)
        _vet(archive, infos)
        yield archive


def _check_end_record(path: Path, limits: ImageLimits) -> None:
    """Refuse a zip with too many members before :mod:`zipfile` parses its central directory:
    from the count its end record (zip64 too) announces, from the central directory's size,
    and by walking the entries' fixed headers where zipfile will read them (an end record may
    understate the count; zipfile parses every entry the directory's size holds)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        start = max(0, size - (22 + 65535))
        f.seek(start)
        tail = f.read()
        at = tail.rfind(_EOCD)
        if at < 0 or len(tail) - at < 22:
            raise IngestFailure("the zip archive is truncated: it has no end of central directory")
        entries, central = struct.unpack_from("<10xHI", tail, at)
        location = start + at
        locator = tail[at - 20 : at] if at >= 20 else b""
        if locator.startswith(_EOCD64_LOCATOR):
            (offset,) = struct.unpack_from("<Q", locator, 8)
            f.seek(offset)
            record = f.read(56)
            if record[:4] == b"PK\x06\x06" and len(record) == 56:
                entries, central = struct.unpack_from("<QQ", record, 32)
                location -= 20 + 56
        limits.members(entries)
        if central > limits.image_zip_max_members * CENTRAL_BYTES_PER_MEMBER:
            limits.members(
                central // CENTRAL_BYTES_PER_MEMBER,
                what=f"a central directory of {central} bytes, room for more than {{n}} members",
            )
        f.seek(max(0, location - central))
        counted = walked = 0
        while walked + 46 <= central and counted <= limits.image_zip_max_members:
            head = f.read(46)
            if len(head) < 46 or head[:4] != b"PK\x01\x02":
                break
            extra = sum(struct.unpack_from("<HHH", head, 28))
            f.seek(extra, 1)
            walked += 46 + extra
            counted += 1
        limits.members(counted, what="at least {n} members")


def _vet(archive: Archive, infos: list[zipfile.ZipInfo]) -> None:
    limits = archive.limits
    seen: set[str] = set()
    declared = 0
    for info in infos:
        raw = info.filename
        name = _safe_name(raw, info)
        if name in seen:
            raise UnsafeArchive(
                f"the zip holds {raw!r} twice", code="duplicate_archive_member", member=raw
            )
        seen.add(name)
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise UnsafeArchive(
                f"member {raw!r} is encrypted; upload a zip without a password",
                code="unsupported_archive",
                member=raw,
            )
        if info.compress_type not in _COMPRESSIONS:
            raise UnsafeArchive(
                f"member {raw!r} uses compression method {info.compress_type}; use deflate "
                "(or store, bzip2, lzma)",
                code="unsupported_archive",
                member=raw,
            )
        member = Member(name, info)
        if member.suffix in ARCHIVE_EXTENSIONS:
            raise UnsafeArchive(
                f"member {raw!r} is an archive; archives inside the zip are not read: put the "
                "images themselves in the zip",
                code="nested_archive",
                member=raw,
            )
        declared += info.file_size
        limits.archive_bytes(declared, read=False)
        limits.ratio(raw, info.file_size, info.compress_size)
        parts = name.split("/")
        if parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
            archive.ignored.append(name)  # Finder's resource forks, .DS_Store, hidden files
        elif member.suffix in IMAGE_EXTENSIONS:
            limits.file_bytes(raw, info.file_size)
            archive.images[name] = member
        elif parts[-1].lower() in LABEL_FILES:
            archive.label_files[name] = member
        else:
            archive.ignored.append(name)


def _safe_name(raw: str, info: zipfile.ZipInfo) -> str:
    """The member's name with ``/`` separators and no empty or ``.`` components; refuses
    control characters, absolute paths, ``..``, links and special files."""

    def refuse(why: str) -> UnsafeArchive:
        return UnsafeArchive(
            f"member {raw!r} is unsafe: {why}", code="unsafe_archive_member", member=raw
        )

    if _CONTROL.search(info.orig_filename) or not raw:
        raise refuse("its name is empty or holds control characters")
    text = raw.replace("\\", "/")
    if text.startswith("/") or re.match(r"[A-Za-z]:", text):
        raise refuse("an absolute path")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise refuse("a '..' component (path traversal)")
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise refuse("a symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise refuse("a special file (device, pipe or socket)")
    if not parts:
        raise refuse("its name is empty")
    return "/".join(parts) + ("/" if info.is_dir() else "")
