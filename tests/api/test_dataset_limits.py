"""Bounded expansion of datasets (issue 11, item 2): the caps on what an upload may decode to,
refused while reading with a specific code and nothing stored, and reads that stay small
whatever a stored row holds (the top labels, a paginated label list, a cut preview)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import upload
from tests.api.test_datasets import stored_files
from tests.api.test_hostile_uploads import assert_error


def set_limits(monkeypatch: pytest.MonkeyPatch, **limits: int) -> None:
    from app.config import get_settings

    for name, value in limits.items():
        monkeypatch.setenv(f"TUNESERVE_{name.upper()}", str(value))
    get_settings.cache_clear()


def parquet_bomb(rows: int, cell: int, *, dictionary: bool = True) -> bytes:
    """``rows`` copies of a ``cell``-byte string, zstd-compressed: a few KB that decode to
    ``rows * cell`` bytes."""
    texts = [("x" * cell) if dictionary else f"{i:06d}" + "x" * cell for i in range(rows)]
    table = pa.table({"text": texts, "label": ["a", "b"] * (rows // 2)})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", use_dictionary=dictionary)
    return buf.getvalue()


def labelled_csv(n_labels: int, per_label: int = 1, text_chars: int = 0) -> bytes:
    lines = ["text,label"]
    for i in range(n_labels):
        for j in range(per_label):
            lines.append(f"text {i} {j} {'y' * text_chars},label {i:06d}")
    return ("\n".join(lines) + "\n").encode()


def assert_nothing_stored(client: TestClient, auth: dict[str, str], data_dir: Path) -> None:
    assert stored_files(data_dir) == []
    assert client.get("/v1/datasets", headers=auth).json()["data"] == []


# --- refused while reading, with a specific code --------------------------------------------


@pytest.mark.parametrize("dictionary", [True, False], ids=["dictionary", "plain"])
def test_parquet_bomb_is_refused(
    client: TestClient,
    auth: dict[str, str],
    api_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    dictionary: bool,
) -> None:
    """A few KB of Parquet that decode to 40 MB, over a lowered dataset cap."""
    set_limits(monkeypatch, max_dataset_bytes=5_000_000)
    bomb = parquet_bomb(400, 100_000, dictionary=dictionary)
    assert len(bomb) < 50_000
    err = assert_error(upload(client, auth, bomb, filename="bomb.parquet"), 413)
    assert err["code"] == "dataset_too_large"
    assert err["details"]["setting"] == "TUNESERVE_MAX_DATASET_BYTES"
    assert err["details"]["limit"] == 5_000_000
    # the plain one is refused from the footer, the dictionary one while decoding
    assert ("uncompressed" if not dictionary else "decode to more than") in err["message"]
    assert_nothing_stored(client, auth, api_env)


def test_parquet_cell_over_the_cap(
    client: TestClient, auth: dict[str, str], api_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_limits(monkeypatch, max_cell_bytes=10_000)
    err = assert_error(upload(client, auth, parquet_bomb(4, 20_000), filename="d.parquet"), 413)
    assert err["code"] == "cell_too_large"
    assert err["details"]["limit"] == 10_000 and err["details"]["column"] == "text"
    assert_nothing_stored(client, auth, api_env)


def test_jsonl_cell_over_the_cap(
    client: TestClient, auth: dict[str, str], api_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_limits(monkeypatch, max_cell_bytes=10_000)
    lines = [{"text": "short", "label": "a"}, {"text": "\u00e9" * 6000, "label": "b"}]
    content = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
    err = assert_error(upload(client, auth, content, filename="d.jsonl"), 413, "cell_too_large")
    assert err["details"]["found"] == 12_000 and err["details"]["where"] == "line 2"
    assert_nothing_stored(client, auth, api_env)


def test_200k_labels_are_refused(
    auth: dict[str, str], api_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The measured finding: 200,000 distinct labels were accepted; at the default cap the
    upload stops at the 1,001st label."""
    from app.main import create_app

    content = labelled_csv(200_000)
    set_limits(monkeypatch, max_upload_bytes=len(content))  # read when the app is made
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        err = assert_error(upload(client, auth, content), 422, "too_many_labels")
        assert err["details"] == {
            "setting": "TUNESERVE_MAX_LABELS",
            "limit": 1000,
            "where": "line 1002",
        }
        assert_nothing_stored(client, auth, api_env)


def test_too_many_rows(
    client: TestClient, auth: dict[str, str], api_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_limits(monkeypatch, max_rows=10)
    err = assert_error(upload(client, auth, labelled_csv(2, per_label=6)), 422, "too_many_rows")
    assert err["details"]["limit"] == 10
    table = pa.table({"text": [f"t{i}" for i in range(12)], "label": ["a", "b"] * 6})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    err = assert_error(upload(client, auth, buf.getvalue(), filename="d.parquet"), 422)
    assert err["code"] == "too_many_rows" and err["details"]["found"] == 12
    assert_nothing_stored(client, auth, api_env)


def test_too_many_columns(
    client: TestClient, auth: dict[str, str], api_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_limits(monkeypatch, max_columns=5)
    table = pa.table(
        {"text": ["a", "b"], "label": ["x", "y"], **{f"c{i}": [1, 2] for i in range(4)}}
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    err = assert_error(upload(client, auth, buf.getvalue(), filename="d.parquet"), 422)
    assert err["code"] == "too_many_columns" and err["details"]["found"] == 6
    content = json.dumps({"text": "a", "label": "x", **{f"c{i}": i for i in range(4)}}).encode()
    assert_error(upload(client, auth, content, filename="d.jsonl"), 422, "too_many_columns")
    assert_nothing_stored(client, auth, api_env)


# --- reads are bounded ------------------------------------------------------------------------


def _many_labels(client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A dataset with 2,500 labels under a raised cap; label i has 1 + (i % 3) examples."""
    lines = ["text,label"]
    for i in range(2500):
        lines += [f"text {i} {j},label {i:05d}" for j in range(1 + i % 3)]
    content = ("\n".join(lines) + "\n").encode()
    assert len(content) < 200_000  # the upload cap of the api_env fixture
    set_limits(monkeypatch, max_labels=3000)
    r = upload(client, auth, content)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _check_bounded(body: dict[str, Any], n_labels: int) -> None:
    assert len(body["labels"]) == 100 and body["labels"] == sorted(body["labels"])
    assert body["num_labels"] == n_labels and body["labels_truncated"] is True
    report = body["report"]
    assert len(report["label_counts"]) == 100
    assert report["num_labels"] == n_labels and report["label_counts_truncated"] is True
    counts = list(report["label_counts"].items())
    assert counts == sorted(counts, key=lambda kv: (-kv[1], kv[0]))  # the most frequent first
    assert len(report["small_classes"]) <= 100 and report["num_small_classes"] == n_labels


def test_read_of_many_labels_is_bounded(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset_id = _many_labels(client, auth, monkeypatch)
    r = client.get(f"/v1/datasets/{dataset_id}", headers=auth)
    assert r.status_code == 200 and len(r.content) < 20_000, len(r.content)
    _check_bounded(r.json(), 2500)
    assert next(iter(r.json()["report"]["label_counts"].items())) == ("label 00002", 3)
    page = client.get("/v1/datasets", headers=auth)
    assert len(page.content) < 20_000
    _check_bounded(page.json()["data"][0], 2500)


def test_labels_endpoint_pages_through_every_label(
    client: TestClient,
    auth: dict[str, str],
    make_key: Callable[[str], dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset_id = _many_labels(client, auth, monkeypatch)
    seen: list[tuple[str, int]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        r = client.get(f"/v1/datasets/{dataset_id}/labels", headers=auth, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == 2500 and len(body["data"]) <= 1000
        seen += [(item["label"], item["count"]) for item in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 2500 == len(set(seen))
    assert seen == sorted(seen, key=lambda kv: (-kv[1], kv[0]))
    assert dict(seen)["label 00002"] == 3 and dict(seen)["label 00000"] == 1
    # the default page, and bad parameters
    r = client.get(f"/v1/datasets/{dataset_id}/labels", headers=auth)
    assert len(r.json()["data"]) == 100 and r.json()["next_cursor"]
    for params in ({"cursor": "not-a-cursor"}, {"cursor": "W10"}, {"limit": 0}, {"limit": 1001}):
        r = client.get(f"/v1/datasets/{dataset_id}/labels", headers=auth, params=params)
        assert_error(r, 422)
    # another tenant's id is not found, like an unknown one
    other = make_key("globex")
    assert_error(client.get(f"/v1/datasets/{dataset_id}/labels", headers=other), 404, "not_found")
    assert_error(client.get("/v1/datasets/ds_unknown/labels", headers=auth), 404, "not_found")


LEGACY_LABELS = 50_000


def insert_legacy_dataset(tenant: str, n_labels: int) -> str:
    """A row as the landed code stored it for many labels: every label in ``labels``,
    ``label_counts`` and ``small_classes`` (for 200,000 labels, 35 MB of JSON)."""
    from app.datasets.orm import Dataset
    from app.db import session_scope
    from app.tenants.service import get_or_create_tenant

    names = [f"legacy label {i:06d}" for i in range(n_labels)]
    with session_scope() as s:
        t = get_or_create_tenant(s, name=tenant)
        ds = Dataset(
            tenant_id=t.id,
            name="legacy",
            task="text-classification",
            format="csv",
            filename="legacy.csv",
            size_bytes=1,
            sha256="0" * 64,
            num_rows=n_labels + 1,
            labels=names,
            report={
                "format": "csv",
                "rows": n_labels + 1,
                "label_counts": {name: 1 + (i == 7) for i, name in enumerate(names)},
                "num_labels": n_labels,
                "small_classes": names,
                "warnings": ["w" * 5000],
            },
            storage_path="datasets/none/data.parquet",
        )
        s.add(ds)
        s.flush()
        return ds.id


def test_legacy_row_with_many_labels_is_read_bounded(
    client: TestClient, auth: dict[str, str]
) -> None:
    """Bounded when read, not only when written: a row stored before the caps (50,000 labels
    here, 9 MB of JSON, to stay fast; the landed code answered every read with all of it)."""
    dataset_id = insert_legacy_dataset("acme", LEGACY_LABELS)
    r = client.get(f"/v1/datasets/{dataset_id}", headers=auth)
    assert r.status_code == 200 and len(r.content) < 20_000, len(r.content)
    _check_bounded(r.json(), LEGACY_LABELS)
    assert next(iter(r.json()["report"]["label_counts"])) == "legacy label 000007"
    assert len(r.json()["report"]["warnings"][0]) <= 1000
    r = client.get("/v1/datasets", headers=auth)
    assert len(r.content) < 20_000
    r = client.get(f"/v1/datasets/{dataset_id}/labels?limit=3", headers=auth)
    assert [d["label"] for d in r.json()["data"]] == [f"legacy label {i:06d}" for i in (7, 0, 1)]
    assert r.json()["total"] == LEGACY_LABELS
    r = client.get(
        f"/v1/datasets/{dataset_id}/labels",
        headers=auth,
        params={"limit": 2, "cursor": r.json()["next_cursor"]},
    )
    assert [d["label"] for d in r.json()["data"]] == ["legacy label 000002", "legacy label 000003"]


def test_preview_rows_and_cells_are_cut(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_limits(monkeypatch, preview_max_rows=5, preview_cell_chars=50)
    r = upload(client, auth, labelled_csv(3, per_label=4, text_chars=200))
    assert r.status_code == 201, r.text
    dataset_id = r.json()["id"]
    r = client.get(f"/v1/datasets/{dataset_id}/preview?limit=50", headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["rows"]) == 5 and body["total_rows"] == 12
    assert all(len(row["text"]) == 50 for row in body["rows"])
    assert body["rows"][0]["text"] == ("text 0 0 " + "y" * 200)[:50]
    assert body["truncated_cells"] == [
        {"row": i, "column": "text", "length": len(f"text {i // 4} {i % 4} ") + 200}
        for i in range(5)
    ]
    assert all(row["label"].startswith("label ") for row in body["rows"])  # short: not cut
    r = client.get(f"/v1/datasets/{dataset_id}/preview?limit=2", headers=auth)
    assert len(r.json()["rows"]) == 2 and len(r.json()["truncated_cells"]) == 2
