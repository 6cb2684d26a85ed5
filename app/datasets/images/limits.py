"""The caps on an image zip and on each image in it, and the refusal of an unsafe archive.

Sizes answer 413, counts and unsafe structure 422, each with its own code and ``details``
naming the setting (as :mod:`app.datasets.limits` does for tables):

==============================  ==============================  ======  ==========================
setting (``TUNESERVE_*``)       code                            status  what is counted
==============================  ==============================  ======  ==========================
``IMAGE_ZIP_MAX_MEMBERS``       ``too_many_members``            422     members (files, folders)
``IMAGE_ZIP_MAX_BYTES``         ``archive_too_large``           413     uncompressed bytes of all
                                                                        members (declared, then
                                                                        read)
``IMAGE_ZIP_MAX_RATIO``         ``compression_ratio_too_high``  413     uncompressed / compressed
                                                                        size of a member of 1 MiB
                                                                        or more
``IMAGE_MAX_FILE_BYTES``        ``image_file_too_large``        413     bytes of one image file
``IMAGE_MAX_PIXELS``            ``image_too_large``             413     width x height of an image
==============================  ==============================  ======  ==========================
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.datasets.failures import LimitExceeded, SettingsLimits, limit_details

#: members smaller than this (uncompressed) are not held to the compression ratio: a tiny file
#: cannot expand to much, and a plain BMP of one colour compresses a hundredfold
RATIO_FLOOR_BYTES = 1024 * 1024


class ImageLimits(SettingsLimits):
    image_zip_max_members: int = Field(100_000, description="Most members of the zip.")
    image_zip_max_bytes: int = Field(1024**3, description="Most uncompressed bytes in all.")
    image_zip_max_ratio: float = Field(100.0, description="Most compression ratio of a member.")
    image_max_file_bytes: int = Field(64 * 1024**2, description="Most bytes of one image file.")
    image_max_pixels: int = Field(40_000_000, description="Most pixels of one image.")
    image_store_max_side: int = Field(256, description="Longer side of a stored copy.")
    image_max_corrupt_share: float = Field(0.05, description="Share that may be undecodable.")

    def members(self, count: int, *, what: str = "{n} members") -> None:
        if count > self.image_zip_max_members:
            raise LimitExceeded(
                f"the zip holds {what.format(n=count)}; at most {self.image_zip_max_members} "
                "members are allowed (TUNESERVE_IMAGE_ZIP_MAX_MEMBERS)",
                code="too_many_members",
                status=422,
                details=limit_details(
                    "IMAGE_ZIP_MAX_MEMBERS", self.image_zip_max_members, found=count
                ),
            )

    def archive_bytes(self, count: int, *, read: bool) -> None:
        """``read``: bytes counted while decompressing, else the central directory's sizes."""
        if count > self.image_zip_max_bytes:
            how = "decompresses to more than" if read else "declares"
            raise LimitExceeded(
                f"the zip {how} {count} bytes; at most {self.image_zip_max_bytes} uncompressed "
                "bytes are allowed (TUNESERVE_IMAGE_ZIP_MAX_BYTES)",
                code="archive_too_large",
                status=413,
                details=limit_details("IMAGE_ZIP_MAX_BYTES", self.image_zip_max_bytes, found=count),
            )

    def ratio(self, name: str, size: int, compressed: int) -> None:
        ratio = size / max(compressed, 1)
        if size >= RATIO_FLOOR_BYTES and ratio > self.image_zip_max_ratio:
            raise LimitExceeded(
                f"member {name!r} expands {ratio:.0f} times ({compressed} bytes to {size}); at "
                f"most {self.image_zip_max_ratio:g} times is allowed "
                "(TUNESERVE_IMAGE_ZIP_MAX_RATIO): is it a zip bomb?",
                code="compression_ratio_too_high",
                status=413,
                details=limit_details(
                    "IMAGE_ZIP_MAX_RATIO", self.image_zip_max_ratio, found=round(ratio), where=name
                ),
            )

    def file_bytes(self, name: str, size: int) -> None:
        if size > self.image_max_file_bytes:
            raise LimitExceeded(
                f"image {name!r} is {size} bytes; at most {self.image_max_file_bytes} are allowed "
                "(TUNESERVE_IMAGE_MAX_FILE_BYTES)",
                code="image_file_too_large",
                status=413,
                details=limit_details(
                    "IMAGE_MAX_FILE_BYTES", self.image_max_file_bytes, found=size, where=name
                ),
            )

    def pixels(self, name: str, size: tuple[int, int]) -> None:
        if size[0] * size[1] > self.image_max_pixels:
            raise self.too_many_pixels(name, size)

    def too_many_pixels(self, name: str, size: tuple[int, int] | None) -> LimitExceeded:
        """``size`` None: Pillow refused the image as a decompression bomb before saying it."""
        count = size[0] * size[1] if size is not None else None
        what = f"{size[0]}x{size[1]} = {count} pixels" if size is not None else "too many pixels"
        return LimitExceeded(
            f"image {name!r} has {what}; at most {self.image_max_pixels} are allowed "
            "(TUNESERVE_IMAGE_MAX_PIXELS): a decompression bomb?",
            code="image_too_large",
            status=413,
            details=limit_details(
                "IMAGE_MAX_PIXELS", self.image_max_pixels, found=count, where=name
            ),
        )


class UnsafeArchive(LimitExceeded):
    """The zip is refused for what it is, not for a cap: an unsafe or duplicate member name, a
    link, a nested archive, a file that is not what its extension says (422, its own code)."""

    def __init__(self, message: str, *, code: str, member: str, **details: Any) -> None:
        super().__init__(
            message, code=code, status=422, details={"member": member[:200], **details}
        )
