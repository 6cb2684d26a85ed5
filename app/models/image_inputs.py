"""Images sent to predict: counted, sized and their headers read before they travel.

An image model takes its inputs as image files: multipart parts named ``files``, or JSON
``{"images": ["<base64>", ...]}`` (a ``data:image/...;base64,`` prefix is allowed). Each is
checked here, in the API, before it is queued:

=====================================  =========================  ======
check                                  code                       status
=====================================  =========================  ======
more than ``PREDICT_MAX_IMAGES``       ``too_many_inputs``        413
a file past ``PREDICT_MAX_IMAGE_BYTES``  ``image_file_too_large``   413
not base64 (JSON)                      ``invalid_base64``         422
not PNG, JPEG, GIF, BMP or WEBP        ``unsupported_image_type`` 422
a header Pillow cannot read            ``corrupt_image``          422
width x height past                    ``image_too_large``        413
``PREDICT_MAX_IMAGE_PIXELS``
=====================================  =========================  ======

Only the header is read (``Image.open`` decodes no pixel): the worker decodes each image once,
one at a time, and refuses one whose pixels turn out unreadable (422). Images travel to the
worker as base64 text in the request's JSON message.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image, UnidentifiedImageError

from app.config import Settings
from app.datasets.images.decode import sniff
from app.errors import InvalidInput, PayloadTooLarge

_DATA_URL = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,")


def too_many_images(count: int, settings: Settings) -> PayloadTooLarge:
    cap = settings.predict_max_images
    return PayloadTooLarge(
        f"{count} images in one request; at most {cap} (TUNESERVE_PREDICT_MAX_IMAGES).",
        code="too_many_inputs",
        details={"max_inputs": cap},
    )


def decode_base64(text: str, *, field: str, settings: Settings) -> bytes:
    """The bytes of one base64 image (its size checked before it is decoded)."""
    text = _DATA_URL.sub("", text, count=1)
    cap = settings.predict_max_image_bytes
    if len(text) * 3 // 4 > cap + 3:
        raise _file_too_large(field, cap)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            f"{field} is not base64 (standard alphabet, with padding).",
            code="invalid_base64",
            details={"field": field},
        ) from None


def check_image(data: bytes, *, field: str, settings: Settings) -> str:
    """Refuse ``data`` unless it is an image of a supported format within the limits; its
    base64 text, as it travels to the worker."""
    if len(data) > settings.predict_max_image_bytes:
        raise _file_too_large(field, settings.predict_max_image_bytes)
    found = sniff(data[:16])
    if found is None:
        raise InvalidInput(
            f"{field} is not a PNG, JPEG, GIF, BMP or WEBP image.",
            code="unsupported_image_type",
            details={"field": field},
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[found]) as image:
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(field, None, settings) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise InvalidInput(
            f"{field}: the {found} image's header cannot be read.",
            code="corrupt_image",
            details={"field": field, "format": found},
        ) from None
    if width * height > settings.predict_max_image_pixels:
        raise _too_many_pixels(field, (width, height), settings)
    return base64.b64encode(data).decode("ascii")


def _file_too_large(field: str, cap: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{field} is larger than {cap} bytes (TUNESERVE_PREDICT_MAX_IMAGE_BYTES).",
        code="image_file_too_large",
        details={"field": field, "max_bytes": cap},
    )


def _too_many_pixels(
    field: str, size: tuple[int, int] | None, settings: Settings
) -> PayloadTooLarge:
    cap = settings.predict_max_image_pixels
    shown = f" ({size[0]} x {size[1]})" if size else ""
    return PayloadTooLarge(
        f"{field} has more than {cap} pixels{shown} (TUNESERVE_PREDICT_MAX_IMAGE_PIXELS).",
        code="image_too_large",
        details={"field": field, "max_pixels": cap, "size": list(size) if size else None},
    )
