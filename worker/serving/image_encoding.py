"""Predict's images to rows: each decoded once, on its own, and made into pixels by the
model's image processor.

The API has read each image's header and checked its size and pixel count
(:mod:`app.models.image_inputs`); here the pixels are decoded, one image at a time (so a
request's peak memory is one decoded image, not all of them), under the same pixel cap
(Pillow's own check, in case a header lied), converted to RGB and shrunk as the dataset's
stored copies were (transparency laid over white; ``TUNESERVE_IMAGE_STORE_MAX_SIDE``), and
processed (resize, crop, normalise). An image whose pixels cannot be decoded refuses its
request: ``ValueError`` naming it, answered 422.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Sequence
from typing import Any

from PIL import Image

from app.datasets.images.decode import shrink, to_rgb
from worker.core.images import pixel_inputs
from worker.serving.encoding import ImageRow


class _TooManyPixels(ValueError):
    pass


def decode_image(data: bytes, *, max_pixels: int, index: int) -> Image.Image:
    """``data`` as an RGB image; ``ValueError`` when it is not a readable image within the cap."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise _TooManyPixels(f"images[{index}] has more than {max_pixels} pixels")
                image.load()
                return to_rgb(image)
    except _TooManyPixels:
        raise
    except Exception as exc:  # Pillow raises many kinds on hostile bytes: all mean unreadable
        reason = f"{type(exc).__name__}: {exc}"[:200]
        raise ValueError(f"images[{index}] cannot be decoded ({reason})") from None


def encode_images(
    processor: Any, inputs: Sequence[Any], *, max_pixels: int, max_side: int
) -> list[ImageRow]:
    """One row per input (base64 text of an image file), shrunk to ``max_side`` first as the
    dataset's stored copies were (``TUNESERVE_IMAGE_STORE_MAX_SIDE``), so that the processor
    sees what it saw in training."""
    rows: list[ImageRow] = []
    for index, item in enumerate(inputs):
        if not isinstance(item, str):
            raise ValueError(f"images[{index}] is not base64 text of an image file")
        try:
            data = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"images[{index}] is not base64") from None
        image = shrink(decode_image(data, max_pixels=max_pixels, index=index), max_side)
        pixels = pixel_inputs(processor, [image])["pixel_values"][0]
        rows.append(ImageRow(pixels))
    return rows
