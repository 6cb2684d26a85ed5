"""Predict on an image model: image files as multipart ``files`` or base64 JSON ``images``,
each counted, sized and its header read in the API before it is queued (no worker runs here:
an accepted request waits for one and times out, 504)."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.api.test_auth_tenants import insert_model
from tests.api.test_hostile_uploads import assert_error
from tests.conftest import reset_caches

LIMITS = {
    "TUNESERVE_PREDICT_MAX_IMAGES": "3",
    "TUNESERVE_PREDICT_MAX_IMAGE_BYTES": "20000",
    "TUNESERVE_PREDICT_MAX_IMAGE_PIXELS": "1000000",
    "TUNESERVE_PREDICT_MAX_BODY_BYTES": "200000",
    "TUNESERVE_PREDICT_TIMEOUT_S": "0.3",
}


@pytest.fixture
def client(api_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from app.main import create_app

    for name, value in LIMITS.items():
        monkeypatch.setenv(name, value)
    reset_caches()
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def image(fmt: str = "PNG", size: tuple[int, int] = (24, 16), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, (200, 30, 30) if mode == "RGB" else 128).save(buffer, format=fmt)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header says ``width`` x ``height`` (a decompression bomb's shape)."""
    data = bytearray(image())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def files(*items: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"f{i}.png", item, "image/png")) for i, item in enumerate(items)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_accepted_images_are_queued(client: TestClient, auth: dict[str, str]) -> None:
    """Every format, as multipart and as base64 (a data URL too), passes to the queue."""
    model_id = insert_model(task="image-classification")
    url = f"/v1/models/{model_id}/predict"
    formats = [image("PNG"), image("JPEG"), image("GIF", mode="L"), image("BMP")]
    r = client.post(url, headers=auth, files=files(*formats[:3]), data={"top_k": "2"})
    assert_error(r, 504, "timeout")
    body = {"images": [b64(formats[3]), "data:image/webp;base64," + b64(image("WEBP"))]}
    assert_error(client.post(url, headers=auth, json=body), 504, "timeout")


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        ({"files": files(image(), image(), image(), image())}, 413, "too_many_inputs"),
        ({"files": files(*[image()] * 40)}, 413, "too_many_inputs"),
        ({"files": files(b"x" * 20001)}, 413, "image_file_too_large"),
        ({"files": files(png_claiming(1001, 1000))}, 413, "image_too_large"),
        ({"files": files(png_claiming(100_000, 100_000))}, 413, "image_too_large"),
        ({"files": files(b"just some text, not an image")}, 422, "unsupported_image_type"),
        ({"files": files(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)}, 422, "corrupt_image"),
        ({"files": files(image()), "data": {"top_k": "zero"}}, 422, "invalid_input"),
        ({"files": files(image()), "data": {"label": "x"}}, 422, "invalid_input"),
        ({"data": {"top_k": "1"}, "files": {"other": ("a.png", image())}}, 422, None),
        ({"json": {"images": ["%%% not base64"]}}, 422, "invalid_base64"),
        ({"json": {"images": [b64(b"GIF89a-but-no-more")]}}, 422, "corrupt_image"),
        ({"json": {"images": [b64(image())] * 4}}, 413, "too_many_inputs"),
        ({"json": {"images": ["A" * 30000]}}, 413, "image_file_too_large"),
        ({"json": {"images": [b64(image())], "inputs": ["text"]}}, 422, "invalid_input"),
        ({"json": {"top_k": 2}}, 422, "invalid_input"),
        ({"json": {"images": []}}, 422, "invalid_input"),
        ({"json": {"inputs": ["a text for an image model"]}}, 422, "wrong_input_kind"),
        ({"content": b"x" * 200_001, "headers": {"Content-Type": "image/png"}}, 413, None),
        ({"content": image(), "headers": {"Content-Type": "image/png"}}, 415, None),
    ],
)
def test_bad_image_requests(
    client: TestClient, auth: dict[str, str], send: dict[str, Any], status: int, code: str | None
) -> None:
    model_id = insert_model(task="image-classification")
    send = dict(send)  # the parameter is shared by both databases' runs
    headers = {**auth, **send.pop("headers", {})}
    r = client.post(f"/v1/models/{model_id}/predict", headers=headers, **send)
    err = assert_error(r, status, code)
    if code in ("image_too_large", "image_file_too_large", "corrupt_image"):
        assert err["details"]["field"] in ("files[0]", "images[0]")


def test_a_text_model_takes_no_images(client: TestClient, auth: dict[str, str]) -> None:
    model_id = insert_model()
    url = f"/v1/models/{model_id}/predict"
    err = assert_error(
        client.post(url, headers=auth, files=files(image())), 422, "wrong_input_kind"
    )
    assert "send JSON `inputs`" in err["message"]
    r = client.post(url, headers=auth, json={"images": [b64(image())]})
    assert_error(r, 422, "wrong_input_kind")


def test_the_openapi_document_shows_both_bodies(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/models/{model_id}/predict"]
    content = operation["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
