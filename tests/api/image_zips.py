"""Images and zips built in tests (Pillow, zipfile), and the upload of a zip."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image

Color = int | tuple[int, ...]


def image_bytes(
    size: tuple[int, int] = (16, 12),
    color: Color = (200, 30, 30),
    *,
    mode: str = "RGB",
    fmt: str = "PNG",
    **save: Any,
) -> bytes:
    """A one-colour image in ``mode``, encoded as ``fmt``."""
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format=fmt, **save)
    return buf.getvalue()


def noise_png(size: tuple[int, int], seed: int = 0) -> bytes:
    """An RGB PNG of random pixels (it does not compress)."""
    import random

    rng = random.Random(seed)
    data = bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 3))
    buf = io.BytesIO()
    Image.frombytes("RGB", size, data).save(buf, format="PNG")
    return buf.getvalue()


Entry = tuple[str | zipfile.ZipInfo, bytes]


def zip_bytes(
    entries: list[Entry] | dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED
) -> bytes:
    """A zip of ``entries`` (a name or a prepared ``ZipInfo``, and the content), in order."""
    items = list(entries.items()) if isinstance(entries, dict) else entries
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in items:
            zf.writestr(name, data)
    return buf.getvalue()


def class_folders(
    per_class: dict[str, int], *, top: str = "", fmt: str = "PNG"
) -> dict[str, bytes]:
    """``{top}{class}/{i}.png`` entries, each image a distinct colour and width 10 + i."""
    out: dict[str, bytes] = {}
    for c, (label, count) in enumerate(sorted(per_class.items())):
        ext = "jpg" if fmt == "JPEG" else fmt.lower()
        for i in range(count):
            color = (40 * c % 256, 10 * i % 256, 100)
            out[f"{top}{label}/{i:03d}.{ext}"] = image_bytes((10 + i, 8 + c), color, fmt=fmt)
    return out


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def upload_zip(
    client: TestClient,
    headers: dict[str, str],
    data: bytes,
    *,
    filename: str = "images.zip",
    task: str = "image-classification",
    **fields: str,
):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/datasets",
        headers=headers,
        files={"file": (filename, data, "application/zip")},
        data={"task": task, **fields},
    )


def tree(root: Path) -> set[str]:
    """Every path (files and folders) under ``root``, relative."""
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()
