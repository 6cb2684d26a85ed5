"""Hostile uploads: each is a clear 4xx in the error shape, never a 5xx, and leaves nothing behind
under the data dir's ``datasets/`` and ``tmp/uploads/``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import csv_bytes, sample_rows, upload
from tests.api.test_datasets import stored_files

CAP = 200_000  # TUNESERVE_MAX_UPLOAD_BYTES set by the api_env fixture


def assert_error(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


def _good() -> bytes:
    return csv_bytes(sample_rows(6))


HOSTILE: dict[str, tuple[str, bytes, int, str]] = {
    # name: (file name, content, status, code)
    "empty": ("data.csv", b"", 422, "dataset_invalid"),
    "header_only": ("data.csv", b"text,label\n", 422, "dataset_invalid"),
    "binary_garbage": ("data.csv", bytes(range(256)) * 40, 422, "dataset_invalid"),
    "gzip_as_csv": ("data.csv", b"\x1f\x8b\x08\x00" + os.urandom(2000), 422, "dataset_invalid"),
    "non_utf8": (
        "data.csv",
        b"text,label\n" + "caf\u00e9 cr\u00e8me,food\n".encode("latin-1") * 12,
        422,
        "dataset_invalid",
    ),
    "non_utf8_late": (
        "data.csv",
        _good() + b'"bad \xff\xfe byte",sport\n',
        422,
        "dataset_invalid",
    ),
    "ragged_rows": (
        "data.csv",
        b"text,label\nhello,a\nworld,b,extra,fields\n",
        422,
        "dataset_invalid",
    ),
    "unterminated_quote": (
        "data.csv",
        b'text,label\n"never closed,a\nmore,b\n',
        422,
        "dataset_invalid",
    ),
    "huge_number_of_columns": (
        "data.csv",
        (",".join(f"c{i}" for i in range(5000)) + "\n" + ",".join("x" * 5000) + "\n").encode(),
        422,
        "too_many_columns",
    ),
    "missing_columns": ("data.csv", b"body,topic\nhi,a\nyo,b\n", 422, "dataset_invalid"),
    "one_class_only": ("data.csv", csv_bytes([("a", "x"), ("b", "x")]), 422, "dataset_invalid"),
    "jsonl_wrong_types": (
        "data.jsonl",
        b'{"text": 12, "label": "a"}\n{"text": "b", "label": "c"}\n',
        422,
        "dataset_invalid",
    ),
    "jsonl_label_object": (
        "data.jsonl",
        b'{"text": "a", "label": {"x": 1}}\n{"text": "b", "label": "c"}\n',
        422,
        "dataset_invalid",
    ),
    "jsonl_not_objects": ("data.jsonl", b"[1, 2]\n[3, 4]\n", 422, "dataset_invalid"),
    "jsonl_invalid_json": ("data.jsonl", b'{"text": "a", "label":\n', 422, "dataset_invalid"),
    "jsonl_deep_nesting": ("data.jsonl", b"[" * 100_000 + b"\n", 422, "dataset_invalid"),
    "fake_parquet_text": ("data.parquet", _good(), 422, "dataset_invalid"),
    "fake_parquet_magic": (
        "data.parquet",
        b"PAR1" + os.urandom(3000) + b"PAR1",
        422,
        "dataset_invalid",
    ),
    "truncated_parquet": ("data.parquet", b"PAR1" + b"\x00" * 100, 422, "dataset_invalid"),
    "unknown_extension": ("data.exe", _good(), 415, "unsupported_media_type"),
    "no_extension": ("data", _good(), 415, "unsupported_media_type"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file(client: TestClient, auth: dict[str, str], api_env: Path, case: str) -> None:
    filename, content, status, code = HOSTILE[case]
    r = upload(client, auth, content, filename=filename)
    err = assert_error(r, status, code)
    if code == "dataset_invalid":
        # details is the validation report, with the reason in errors
        assert err["details"]["errors"], err
    assert stored_files(api_env) == []
    assert client.get("/v1/datasets", headers=auth).json()["data"] == []


def test_enormous_field(
    client: TestClient, auth: dict[str, str], api_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings

    monkeypatch.setenv("TUNESERVE_MAX_CELL_BYTES", "50000")
    get_settings.cache_clear()
    big = "x" * 150_000
    for filename, content in (
        ("data.csv", b"text,label\n" + f'"{big}",a\nshort,b\n'.encode()),
        ("data.jsonl", json.dumps({"text": big, "label": "a"}).encode() + b"\n"),
        ("data.csv", b"text,label\n" + f"short,{big}\nother,b\n".encode()),
    ):
        r = upload(client, auth, content, filename=filename)
        err = assert_error(r, 413, "cell_too_large")
        assert "50000" in err["message"]
        assert err["details"]["setting"] == "TUNESERVE_MAX_CELL_BYTES"
        assert stored_files(api_env) == []


def test_large_field_under_the_limit_is_fine(client: TestClient, auth: dict[str, str]) -> None:
    # longer than Python's default csv field limit (131072), under the upload cap
    big = "y" * 150_000
    content = csv_bytes([*sample_rows(3), (big, "sport")])
    r = upload(client, auth, content)
    assert r.status_code == 201, r.text
    assert r.json()["report"]["text_length"]["max"] == 150_000


def test_too_many_columns_limit(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    header = ",".join(["text", "label", *(f"c{i}" for i in range(1001))])
    content = (header + "\n" + "hi,a" + "," * 1001 + "\n").encode()
    err = assert_error(upload(client, auth, content), 422, "too_many_columns")
    assert "1003 columns" in err["message"]
    assert err["details"] == {"setting": "TUNESERVE_MAX_COLUMNS", "limit": 1000, "found": 1003}
    assert stored_files(api_env) == []


def test_over_the_byte_cap(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    content = _good() * (CAP // len(_good()) + 2)
    assert len(content) > CAP
    err = assert_error(upload(client, auth, content), 413, "payload_too_large")
    assert err["details"]["max_upload_bytes"] == CAP
    assert stored_files(api_env) == []


def test_over_the_byte_cap_without_content_length(
    client: TestClient, auth: dict[str, str], api_env: Path
) -> None:
    """A chunked body (no Content-Length) is cut off by the streaming cap, not buffered."""
    boundary = "hostileboundary"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body():  # type: ignore[no-untyped-def]
        yield head
        yield b"text,label\n"
        for _ in range(CAP // 1000 + 5):
            yield b'"' + b"z" * 990 + b'",a\n'
        yield tail

    r = client.post(
        "/v1/datasets",
        headers={**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=body(),
    )
    assert_error(r, 413, "payload_too_large")
    assert stored_files(api_env) == []


def test_exactly_at_cap_is_accepted(client: TestClient, auth: dict[str, str]) -> None:
    base = _good()
    pad = CAP - len(base)
    # pad the last text so the file is exactly CAP bytes
    content = base[: -len(b'",politics\n')] + b"p" * pad + b'",politics\n'
    content = content[:CAP] if len(content) > CAP else content
    assert len(content) == CAP
    r = upload(client, auth, content)
    assert r.status_code == 201, r.text
    assert r.json()["size_bytes"] == CAP


def test_path_traversal_filename(
    client: TestClient, auth: dict[str, str], api_env: Path, tmp_path: Path
) -> None:
    for evil in ("../../../evil.csv", "..\\..\\evil.csv", "/etc/passwd.csv", "a/../../b.csv"):
        r = upload(client, auth, _good(), filename=evil)
        assert r.status_code == 201, r.text
        body = r.json()
        assert "/" not in body["filename"] and "\\" not in body["filename"]
        assert ".." not in body["filename"]
        assert body["filename"].endswith(".csv")
    # nothing was written outside the store
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and api_env not in p.parents]
    assert outside == []
    assert not Path("/etc/passwd.csv").exists()
    names = sorted(Path(p).name for p in stored_files(api_env))
    assert names == ["data.parquet"] * 4


def test_no_file_field(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    r = client.post(
        "/v1/datasets",
        headers=auth,
        data={"task": "text-classification"},
        files={"other": ("", b"", "text/plain")},
    )
    # a multipart body (so not a 415, which is for a body that is not multipart or a file in
    # an unsupported format) that lacks the 'file' part: invalid input, naming the field
    err = assert_error(r, 422, "invalid_input")
    assert "'file'" in err["message"], err
    # a file under another field name
    r = client.post(
        "/v1/datasets",
        headers=auth,
        files={"data": ("data.csv", _good(), "text/csv")},
    )
    assert_error(r, 422, "invalid_input")
    # only text fields, explicitly multipart
    boundary = "b0undary"
    content = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="task"\r\n\r\n'
        f"text-classification\r\n--{boundary}--\r\n"
    ).encode()
    r = client.post(
        "/v1/datasets",
        headers={**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=content,
    )
    err = assert_error(r, 422, "invalid_input")
    assert "file" in err["message"]
    assert stored_files(api_env) == []


def test_two_files(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    r = client.post(
        "/v1/datasets",
        headers=auth,
        files=[("file", ("a.csv", _good(), "text/csv")), ("file", ("b.csv", _good(), "text/csv"))],
    )
    assert_error(r, 422, "invalid_input")
    assert stored_files(api_env) == []


@pytest.mark.parametrize(
    "headers,content",
    [
        ({"Content-Type": "application/json"}, json.dumps({"file": "text,label\n"}).encode()),
        ({"Content-Type": "text/csv"}, b"text,label\na,b\n"),
        ({}, b"text,label\na,b\n"),
        ({"Content-Type": "multipart/form-data"}, b"no boundary"),
    ],
)
def test_not_multipart(
    client: TestClient,
    auth: dict[str, str],
    api_env: Path,
    headers: dict[str, str],
    content: bytes,
) -> None:
    r = client.post("/v1/datasets", headers={**auth, **headers}, content=content)
    assert_error(r, 415, "unsupported_media_type")
    assert stored_files(api_env) == []


def test_malformed_multipart(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    r = client.post(
        "/v1/datasets",
        headers={**auth, "Content-Type": "multipart/form-data; boundary=xyz"},
        content=b"--xyz\r\nthis is not a header block\x00\x01\r\n\r\n",
    )
    assert 400 <= r.status_code < 500, r.text
    assert_error(r, r.status_code)
    assert stored_files(api_env) == []


def test_unknown_task(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    r = upload(client, auth, _good(), task="image-segmentation")
    err = assert_error(r, 422, "invalid_input")
    assert err["details"]["field"] == "task"
    assert stored_files(api_env) == []


def test_unknown_declared_format(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    r = upload(client, auth, _good(), format="xlsx")
    assert_error(r, 415, "unsupported_media_type")
    assert stored_files(api_env) == []


def test_same_column_mapped_twice(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    r = upload(client, auth, _good(), text_column="text", label_column="text")
    assert_error(r, 422, "invalid_input")
    assert stored_files(api_env) == []


def test_huge_form_field(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    r = upload(client, auth, _good(), name="n" * 100_000)
    assert_error(r, 413, "payload_too_large")
    assert stored_files(api_env) == []
