"""One image file: its magic bytes checked against its extension, decoded with Pillow under the
pixel cap, converted to RGB, hashed, and shrunk to the stored copy (PNG bytes).

- Only the format its extension names is tried (``Image.open(..., formats=[...])``): PNG,
  JPEG, GIF, BMP, WEBP. Content of another kind (a PNG named ``.jpg``, a zip named ``.png``)
  refuses the upload (422 ``file_type_mismatch``); an empty file, or one with the right magic
  that Pillow cannot decode, is *corrupt* (:class:`Corrupt`: listed and dropped).
- ``Image.MAX_IMAGE_PIXELS`` is ``TUNESERVE_IMAGE_MAX_PIXELS`` while an image is opened (and
  put back after), and the size in the header is
  checked before any pixel is decoded: an image past it refuses the upload (413
  ``image_too_large``), as do Pillow's ``DecompressionBombError`` and
  ``DecompressionBombWarning`` (when warnings are errors).
- Only the first frame of an animated GIF or WEBP is read. EXIF orientation is not applied
  (as torchvision's loaders do not).
- RGB: ``RGBA``, ``LA``, ``PA`` and a palette with transparency are laid over white; 16-bit
  greyscale is scaled to 8 bits; every other mode (``L``, ``1``, ``P``, ``CMYK``, ``YCbCr``)
  goes through Pillow's ``convert("RGB")``.
- The duplicate key is the SHA-256 of the size and the decoded RGB pixels, so a re-encoded
  copy of an image (another compression level, metadata, format) is a duplicate too.
- The stored copy has its longer side at most ``TUNESERVE_IMAGE_STORE_MAX_SIDE`` (aspect
  kept, LANCZOS); a smaller image is stored at its size.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from app.datasets.failures import IngestFailure
from app.datasets.images.archive import Corrupt
from app.datasets.images.limits import ImageLimits, UnsafeArchive

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "an executable"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
)
_HASH_BAND_BYTES = 4 * 1024 * 1024
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")
_SIXTEEN_BIT = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_WITH_ALPHA = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


@dataclass(frozen=True)
class Decoded:
    png: bytes
    width: int
    height: int
    mode: str
    digest: bytes
    #: the stored copy's size
    stored: tuple[int, int]


def sniff(head: bytes) -> str | None:
    """The image format ``head`` starts like (a Pillow format name), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)


def decode_image(data: bytes, *, name: str, expected: str, limits: ImageLimits) -> Decoded:
    """Decode ``data`` (member ``name``, which its extension says is ``expected``)."""
    if not data:
        raise Corrupt("the file is empty")
    found = sniff(data[:16])
    if found != expected:
        if found is None and len(data) < 16:
            raise Corrupt(f"the file is truncated ({len(data)} bytes)")
        what = f"a {found} image" if found else _describe(data[:64])
        raise UnsafeArchive(
            f"member {name!r} is named as a {expected} image but holds {what}",
            code="file_type_mismatch",
            member=name,
            expected=expected,
            found=found or what,
        )
    im, rgb = _load(data, name=name, fmt=expected, limits=limits)
    with im:
        small = shrink(rgb, limits.image_store_max_side)
        buffer = io.BytesIO()
        small.save(buffer, format="PNG")
        return Decoded(
            png=buffer.getvalue(),
            width=im.width,
            height=im.height,
            mode=im.mode,
            digest=pixel_digest(rgb),
            stored=small.size,
        )


def _load(
    data: bytes, *, name: str, fmt: str, limits: ImageLimits
) -> tuple[Image.Image, Image.Image]:
    """The decoded image (to close) and its RGB version (itself when it is RGB)."""
    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limits.image_max_pixels
    im: Image.Image | None = None
    try:
        im = Image.open(io.BytesIO(data), formats=[fmt])
        limits.pixels(name, im.size)
        im.load()
        return im, im if im.mode == "RGB" else to_rgb(im)
    except BaseException as exc:
        if im is not None:
            im.close()
        if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
            raise limits.too_many_pixels(name, None) from None
        if isinstance(exc, IngestFailure) or not isinstance(exc, Exception):
            raise
        # Pillow raises many kinds of exception on hostile bytes; all mean corrupt
        raise Corrupt(_reason(exc, fmt)) from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def pixel_digest(rgb: Image.Image) -> bytes:
    """SHA-256 of the size and the RGB pixels, row by row, a band of rows at a time (never a
    second copy of the whole image)."""
    width, height = rgb.size
    digest = hashlib.sha256(f"{width}x{height}:".encode())
    band = max(1, _HASH_BAND_BYTES // (3 * width))
    for top in range(0, height, band):
        digest.update(rgb.crop((0, top, width, min(height, top + band))).tobytes())
    return digest.digest()


def to_rgb(im: Image.Image) -> Image.Image:
    """An RGB copy of a loaded image (transparency laid over white)."""
    if im.mode in _SIXTEEN_BIT:
        im = im.convert("I").point(lambda v: v / 256).convert("L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in _WITH_ALPHA:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")


def shrink(im: Image.Image, max_side: int) -> Image.Image:
    """``im`` with its longer side at most ``max_side`` (aspect kept, LANCZOS)."""
    width, height = im.size
    longer = max(width, height)
    if longer <= max_side:
        return im
    scale = max_side / longer
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return im.resize(size, Image.Resampling.LANCZOS)


def _reason(exc: Exception, fmt: str) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return f"not a decodable {fmt} image"
    text = _OBJECT_REPR.sub("the file", str(exc)) or "no message"
    return f"{type(exc).__name__}: {text}"[:300]


def _describe(head: bytes) -> str:
    kind = next((what for magic, what in _OTHER_MAGIC if head.startswith(magic)), None)
    if kind is not None:
        return kind
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown binary data"
    return "text"
