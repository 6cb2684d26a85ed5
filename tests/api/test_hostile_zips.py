"""Hostile zips for image datasets: each is a clear 4xx in the error shape with its own code,
writes nothing outside the data dir and leaves nothing behind in it (no dataset folder, no
upload file, no row)."""

from __future__ import annotations

import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.image_zips import class_folders, image_bytes, noise_png, tree, upload_zip, zip_bytes
from tests.api.test_hostile_uploads import assert_error

GOOD = class_folders({"cat": 3, "dog": 3})


def with_good(*entries: tuple[str | zipfile.ZipInfo, bytes]) -> bytes:
    return zip_bytes([*GOOD.items(), *entries])


def special(name: str, kind: int, data: bytes = b"/etc/passwd") -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the mode is in the high 16 bits of external_attr
    info.external_attr = (kind | 0o777) << 16
    return info, data


def duplicate_names() -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate; that is the point
        return with_good(("cat/000.png", image_bytes((9, 9))))


def patched(data: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new) and old in data
    return data.replace(old, new)


def end_record(data: bytes, *, entries: int | None = None, central: int | None = None) -> bytes:
    """``data`` with its end of central directory record claiming other numbers."""
    at = data.rfind(b"PK\x05\x06")
    record = bytearray(data[at : at + 22])
    if entries is not None:
        struct.pack_into("<HH", record, 8, min(entries, 0xFFFF), min(entries, 0xFFFF))
    if central is not None:
        struct.pack_into("<I", record, 12, central)
    return data[:at] + bytes(record) + data[at + 22 :]


def method(data: bytes, value: int) -> bytes:
    """Every member's compression method (local and central headers) set to ``value``."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = out.find(signature)
        while at >= 0:
            struct.pack_into("<H", out, at + offset, value)
            at = out.find(signature, at + 4)
    return bytes(out)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` grey pixels, with almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def encrypted() -> bytes:
    info = zipfile.ZipInfo("cat/secret.png")
    data = with_good((info, image_bytes()))
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = out.find(signature)
        while at >= 0:
            struct.pack_into("<H", out, at + offset, 1)  # the "encrypted" flag bit
            at = out.find(signature, at + 4)
    return bytes(out)


def inner_zip() -> bytes:
    return zip_bytes({"x.png": image_bytes()})


#: name: (zip bytes, status, code, settings)
Case = tuple[Callable[[], bytes], int, str, dict[str, str]]
CASES: dict[str, Case] = {
    "traversal": (
        lambda: with_good(("../evil.png", image_bytes())),
        422,
        "unsafe_archive_member",
        {},
    ),
    "traversal_deep": (
        lambda: with_good(("cat/../../evil.png", image_bytes())),
        422,
        "unsafe_archive_member",
        {},
    ),
    "traversal_backslash": (
        lambda: with_good(("cat\\..\\..\\evil.png", image_bytes())),
        422,
        "unsafe_archive_member",
        {},
    ),
    "traversal_folder_entry": (
        lambda: with_good(("../outside/", b"")),
        422,
        "unsafe_archive_member",
        {},
    ),
    "absolute": (
        lambda: with_good(("/tmp/evil.png", image_bytes())),
        422,
        "unsafe_archive_member",
        {},
    ),
    "absolute_windows": (
        lambda: with_good(("C:\\evil.png", image_bytes())),
        422,
        "unsafe_archive_member",
        {},
    ),
    "symlink": (
        lambda: with_good(special("cat/link.png", stat.S_IFLNK)),
        422,
        "unsafe_archive_member",
        {},
    ),
    "symlink_folder": (
        lambda: with_good(special("linked", stat.S_IFLNK, b"/etc")),
        422,
        "unsafe_archive_member",
        {},
    ),
    "device": (
        lambda: with_good(special("cat/dev.png", stat.S_IFCHR, b"")),
        422,
        "unsafe_archive_member",
        {},
    ),
    "fifo": (
        lambda: with_good(special("cat/pipe.png", stat.S_IFIFO, b"")),
        422,
        "unsafe_archive_member",
        {},
    ),
    "control_character": (
        lambda: with_good(("cat/bell\x07.png", image_bytes())),
        422,
        "unsafe_archive_member",
        {},
    ),
    "nul_in_name": (
        lambda: patched(with_good(("cat/a.pngZ.txt", b"x")), b"a.pngZ", b"a.png\x00"),
        422,
        "unsafe_archive_member",
        {},
    ),
    "duplicate_member": (duplicate_names, 422, "duplicate_archive_member", {}),
    "duplicate_after_normalising": (
        lambda: with_good(("cat/./000.png", image_bytes())),
        422,
        "duplicate_archive_member",
        {},
    ),
    "too_many_members": (
        lambda: zip_bytes(class_folders({"a": 6, "b": 6})),
        422,
        "too_many_members",
        {"image_zip_max_members": "10"},
    ),
    "end_record_announces_too_many": (
        lambda: end_record(zip_bytes(GOOD), entries=60_000),
        422,
        "too_many_members",
        {"image_zip_max_members": "1000"},
    ),
    "end_record_understates": (
        lambda: end_record(zip_bytes(class_folders({"a": 6, "b": 6})), entries=3),
        422,
        "too_many_members",
        {"image_zip_max_members": "10"},
    ),
    "central_directory_too_large": (
        lambda: end_record(zip_bytes(GOOD), central=200 * 1024 * 1024),
        422,
        "too_many_members",
        {},
    ),
    "uncompressed_total_past_cap": (
        lambda: zip_bytes({f"{c}/{i}.png": noise_png((60, 60), i) for c in "ab" for i in range(3)}),
        413,
        "archive_too_large",
        {"image_zip_max_bytes": "50000"},
    ),
    "compression_ratio": (
        lambda: with_good(("cat/zeros.png", b"\0" * (4 << 20))),
        413,
        "compression_ratio_too_high",
        {},
    ),
    "compression_ratio_not_an_image": (
        lambda: with_good(("notes.txt", b"a" * (2 << 20))),
        413,
        "compression_ratio_too_high",
        {},
    ),
    "image_file_past_cap": (
        lambda: with_good(("cat/big.png", noise_png((60, 60)))),
        413,
        "image_file_too_large",
        {"image_max_file_bytes": "5000"},
    ),
    "nested_zip": (lambda: with_good(("cat/inner.zip", inner_zip())), 422, "nested_archive", {}),
    "nested_tar_gz": (
        lambda: with_good(("dog/more.tar.gz", b"\x1f\x8b" + b"\0" * 30)),
        422,
        "nested_archive",
        {},
    ),
    "nested_7z": (lambda: with_good(("more.7z", b"7z\xbc\xaf\x27\x1c")), 422, "nested_archive", {}),
    "pixel_bomb": (
        lambda: with_good(("cat/bomb.png", png_claiming(50_000, 50_000))),
        413,
        "image_too_large",
        {},
    ),
    "pixels_past_setting": (
        lambda: with_good(("cat/wide.png", image_bytes((40, 40)))),
        413,
        "image_too_large",
        {"image_max_pixels": "1000"},
    ),
    "pixels_past_twice_the_setting": (
        lambda: with_good(("cat/wide.png", image_bytes((100, 100)))),
        413,
        "image_too_large",
        {"image_max_pixels": "1000"},
    ),
    "jpeg_named_png": (
        lambda: with_good(("cat/photo.png", image_bytes(fmt="JPEG"))),
        422,
        "file_type_mismatch",
        {},
    ),
    "zip_named_png": (lambda: with_good(("cat/x.png", inner_zip())), 422, "file_type_mismatch", {}),
    "text_named_jpg": (
        lambda: with_good(("dog/x.jpg", b"<svg onload=alert(1)>" * 4)),
        422,
        "file_type_mismatch",
        {},
    ),
    "executable_named_gif": (
        lambda: with_good(("dog/x.gif", b"\x7fELF" + b"\0" * 60)),
        422,
        "file_type_mismatch",
        {},
    ),
    "encrypted_member": (encrypted, 422, "unsupported_archive", {}),
    "unknown_compression": (lambda: method(zip_bytes(GOOD), 99), 422, "unsupported_archive", {}),
    "no_images": (
        lambda: zip_bytes({"README.txt": b"hello", "data/x.csv": b"a,b\n"}),
        422,
        "dataset_invalid",
        {},
    ),
    "empty_zip": (lambda: zip_bytes({}), 422, "dataset_invalid", {}),
    "csv_named_zip": (lambda: b"text,label\nhello,a\n", 422, "dataset_invalid", {}),
    "png_named_zip": (lambda: image_bytes(), 422, "dataset_invalid", {}),
    "empty_file": (lambda: b"", 422, "dataset_invalid", {}),
    "truncated_zip": (lambda: zip_bytes(GOOD)[:600], 422, "dataset_invalid", {}),
    "zip_with_prefix": (lambda: b"MZ" + b"\0" * 100 + zip_bytes(GOOD), 422, "dataset_invalid", {}),
}


@pytest.fixture
def setting(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    def apply(values: dict[str, str]) -> None:
        from app.config import get_settings

        for key, value in values.items():
            monkeypatch.setenv(f"TUNESERVE_{key.upper()}", value)
        get_settings.cache_clear()

    return apply


def assert_nothing_left(
    data_dir: Path, before: set[str], client: TestClient, auth: dict[str, str]
) -> None:
    """No file and no dataset folder is left; only the folders every upload creates once."""
    assert tree(data_dir) - before <= {"tmp", "tmp/uploads", "datasets"}
    assert [p for p in tree(data_dir) if (data_dir / p).is_file()] == []
    assert client.get("/v1/datasets", headers=auth).json()["data"] == []


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_zip(
    client: TestClient,
    auth: dict[str, str],
    api_env: Path,
    setting: Callable[[dict[str, str]], None],
    case: str,
) -> None:
    build, status, code, settings = CASES[case]
    setting(settings)
    outside = tree(api_env.parent)
    before = tree(api_env)
    err = assert_error(upload_zip(client, auth, build()), status, code)
    if code == "dataset_invalid":
        assert err["details"]["errors"] == [err["message"]]
        assert err["details"]["format"] == "zip"
    else:  # the member at fault, or the setting that was passed
        assert "member" in err["details"] or "setting" in err["details"], err
    assert_nothing_left(api_env, before, client, auth)
    # nothing appeared next to the data dir either (where a '../' member would land)
    assert {p for p in tree(api_env.parent) - outside if not p.startswith(api_env.name)} == set()


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_warning_as_an_error(
    client: TestClient, auth: dict[str, str], setting: Callable[[dict[str, str]], None]
) -> None:
    """Where Pillow's warning is raised (warnings as errors), it is the same hard 413."""
    build, status, code, settings = CASES["pixels_past_setting"]
    setting(settings)
    err = assert_error(upload_zip(client, auth, build()), status, code)
    assert err["details"]["where"] == "cat/wide.png"


def test_messages_name_the_member_and_the_setting(
    client: TestClient, auth: dict[str, str], setting: Callable[[dict[str, str]], None]
) -> None:
    err = assert_error(
        upload_zip(client, auth, CASES["traversal"][0]()), 422, "unsafe_archive_member"
    )
    assert err["details"] == {"member": "../evil.png"}
    assert "path traversal" in err["message"]
    err = assert_error(upload_zip(client, auth, CASES["symlink"][0]()), 422)
    assert "symbolic link" in err["message"] and err["details"] == {"member": "cat/link.png"}
    err = assert_error(upload_zip(client, auth, CASES["pixel_bomb"][0]()), 413, "image_too_large")
    assert err["details"] == {
        "setting": "TUNESERVE_IMAGE_MAX_PIXELS",
        "limit": 40_000_000,
        "where": "cat/bomb.png",
    }
    err = assert_error(upload_zip(client, auth, CASES["jpeg_named_png"][0]()), 422)
    assert err["details"] == {"member": "cat/photo.png", "expected": "PNG", "found": "JPEG"}
    assert "holds a JPEG image" in err["message"]
    err = assert_error(upload_zip(client, auth, CASES["compression_ratio"][0]()), 413)
    assert (
        err["details"]["setting"] == "TUNESERVE_IMAGE_ZIP_MAX_RATIO"
        and err["details"]["found"] > 100
    )
    setting({"image_zip_max_members": "10"})
    err = assert_error(upload_zip(client, auth, CASES["too_many_members"][0]()), 422)
    assert err["details"] == {
        "setting": "TUNESERVE_IMAGE_ZIP_MAX_MEMBERS",
        "limit": 10,
        "found": 12,
    }


@pytest.mark.parametrize("filename", ["images.csv", "images", "images.tar.gz", "images.png"])
def test_not_a_zip_name_for_an_image_task(
    client: TestClient, auth: dict[str, str], api_env: Path, filename: str
) -> None:
    err = assert_error(
        upload_zip(client, auth, zip_bytes(GOOD), filename=filename), 415, "unsupported_media_type"
    )
    assert ".zip" in err["message"]
    assert not list((api_env / "tmp" / "uploads").glob("*"))


def test_declared_zip_format(client: TestClient, auth: dict[str, str]) -> None:
    r = upload_zip(client, auth, zip_bytes(GOOD), filename="upload.bin", format="application/zip")
    assert r.status_code == 201, r.text
    assert_error(
        upload_zip(client, auth, zip_bytes(GOOD), format="csv"), 415, "unsupported_media_type"
    )


def test_a_zip_for_a_text_task_is_refused(client: TestClient, auth: dict[str, str]) -> None:
    r = client.post(
        "/v1/datasets",
        headers=auth,
        files={"file": ("images.zip", zip_bytes(GOOD), "application/zip")},
        data={"task": "text-classification"},
    )
    err = assert_error(r, 415, "unsupported_media_type")
    assert "image-classification" in err["message"]


def test_a_damaged_member_is_corrupt_not_fatal(client: TestClient, auth: dict[str, str]) -> None:
    """A member whose bytes do not match its CRC (the header lies about the data) is listed as
    corrupt; the zip is not trusted for it, and the rest is stored."""
    entries = class_folders({"a": 20, "b": 20})
    data = zip_bytes(entries, method=zipfile.ZIP_STORED)
    original = entries["a/005.png"]
    damaged = original[:-20] + bytes(b ^ 0xFF for b in original[-20:-12]) + original[-12:]
    data = patched(data, original, damaged)
    r = upload_zip(client, auth, data)
    assert r.status_code == 201, r.text
    corrupt = r.json()["report"]["images"]["corrupt_files"]
    assert [c["name"] for c in corrupt] == ["a/005.png"]
    assert "cannot be read from the zip" in corrupt[0]["reason"]


def test_bytes_are_counted_while_reading(tmp_path: Path) -> None:
    """The archive's byte cap is checked again on the bytes that come out of the members, not
    only on the sizes the central directory declares."""
    from app.datasets.failures import LimitExceeded
    from app.datasets.images.archive import open_archive
    from app.datasets.images.limits import ImageLimits

    path = tmp_path / "x.zip"
    path.write_bytes(zip_bytes({f"a/{i}.png": noise_png((30, 30), i) for i in range(4)}))
    declared = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    with open_archive(path, ImageLimits()) as archive:
        archive.limits = ImageLimits(image_zip_max_bytes=declared - 1)
        with pytest.raises(LimitExceeded) as caught:
            for member in archive.images.values():
                archive.read(member)
    assert caught.value.code == "archive_too_large"
    assert "decompresses to more than" in str(caught.value)
    assert archive.bytes_read == declared


def test_no_member_is_written_to_disk(
    client: TestClient, auth: dict[str, str], api_env: Path
) -> None:
    """A good upload stores one Parquet file: the zip is never extracted."""
    r = upload_zip(client, auth, with_good())
    assert r.status_code == 201, r.text
    files = [p for p in tree(api_env) if (api_env / p).is_file()]
    assert files == [f"datasets/{r.json()['id']}/data.parquet"]
