"""Image datasets over HTTP: zips of class folders or images with labels.csv / labels.jsonl,
single and multi-label; the report's numbers; modes converted to RGB; corrupt files,
duplicates and small classes reported; the canonical Parquet the worker reads; jobs on image
datasets refused until the worker trains on images."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.api.image_zips import (
    class_folders,
    image_bytes,
    jsonl,
    noise_png,
    upload_zip,
    zip_bytes,
)
from tests.api.test_datasets import stored_files
from tests.api.test_hostile_uploads import assert_error

SCHEMA = {
    "image-classification": pa.schema(
        [
            pa.field("image", pa.binary(), nullable=False),
            pa.field("label", pa.string(), nullable=False),
            pa.field("width", pa.int32(), nullable=False),
            pa.field("height", pa.int32(), nullable=False),
            pa.field("mode", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
        ]
    ),
}
SCHEMA["image-multilabel"] = SCHEMA["image-classification"].set(
    1, pa.field("labels", pa.list_(pa.string()), nullable=False)
)


def created(r: Any) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    return dict(r.json())


def canonical(data_dir: Path, dataset: dict[str, Any]) -> pa.Table:
    path = data_dir / "datasets" / dataset["id"] / "data.parquet"
    table = pq.read_table(path)
    assert table.schema == SCHEMA[dataset["task"]]
    return table


def stored_image(table: pa.Table, row: int) -> Image.Image:
    im = Image.open(io.BytesIO(table.column("image")[row].as_py()), formats=["PNG"])
    im.load()
    assert im.mode == "RGB"
    return im


def test_class_folders(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    entries = class_folders({"cat": 3, "dog": 3}, top="pets/")
    entries["pets/dog/extra.jpg"] = image_bytes((30, 20), (0, 0, 250), fmt="JPEG", quality=95)
    entries["pets/README.txt"] = b"my pets"
    ds = created(upload_zip(client, auth, zip_bytes(entries), name="pets"))
    assert (ds["task"], ds["format"], ds["status"], ds["num_rows"]) == (
        "image-classification",
        "zip",
        "ready",
        7,
    )
    assert ds["labels"] == ["cat", "dog"]
    assert ds["column_mapping"] == {"image": "image", "label": "label"}
    r = ds["report"]
    assert (r["layout"], r["rows"], r["rows_read"], r["dropped_rows"]) == ("folders", 7, 7, 0)
    assert r["label_counts"] == {"dog": 4, "cat": 3}
    assert r["num_labels"] == 2 and r["errors"] == []
    assert r["small_classes"] == ["cat", "dog"]  # fewer than TUNESERVE_MIN_EXAMPLES_PER_CLASS
    images = r["images"]
    # widths 10, 11, 12 (cat), 10, 11, 12, 30 (dog); heights 8 x3, 9 x3, 20
    assert images["width"] == {"min": 10, "median": 11, "max": 30}
    assert images["height"] == {"min": 8, "median": 9, "max": 20}
    assert images["modes"] == {"RGB": 7}
    assert (images["files"], images["decoded"], images["corrupt"]) == (7, 7, 0)
    assert (images["duplicates"], images["converted_to_rgb"]) == (0, 0)
    assert images["ignored_files"] == 1 and images["ignored_examples"] == ["pets/README.txt"]
    assert images["stored_max_side"] == 256
    assert images["duplicate_key"] == "sha256 of the decoded RGB pixels and the size"
    assert any("not images" in w for w in r["warnings"])

    table = canonical(api_env, ds)
    assert table.column("source").to_pylist() == [
        "pets/cat/000.png",
        "pets/cat/001.png",
        "pets/cat/002.png",
        "pets/dog/000.png",
        "pets/dog/001.png",
        "pets/dog/002.png",
        "pets/dog/extra.jpg",
    ]
    assert table.column("label").to_pylist() == ["cat"] * 3 + ["dog"] * 4
    assert table.column("width").to_pylist() == [10, 11, 12, 10, 11, 12, 30]
    assert table.column("mode").to_pylist() == ["RGB"] * 7
    first = stored_image(table, 0)
    assert first.size == (10, 8) and first.getpixel((0, 0)) == (0, 0, 100)
    assert stored_files(api_env) == [f"datasets/{ds['id']}/data.parquet"]
    # the dataset reads, lists its labels and previews like a text one
    got = client.get(f"/v1/datasets/{ds['id']}", headers=auth).json()
    assert got["report"]["images"] == images
    labels = client.get(f"/v1/datasets/{ds['id']}/labels", headers=auth).json()
    assert labels["data"] == [{"label": "dog", "count": 4}, {"label": "cat", "count": 3}]
    preview = client.get(f"/v1/datasets/{ds['id']}/preview?limit=2", headers=auth).json()
    assert preview["columns"] == ["image", "label", "width", "height", "mode", "source"]
    assert preview["rows"][0]["image"]["media_type"] == "image/png"
    assert preview["rows"][0]["image"]["bytes"] == len(table.column("image")[0].as_py())
    assert preview["rows"][1]["source"] == "pets/cat/001.png"


def test_stored_copies_are_shrunk(
    client: TestClient, auth: dict[str, str], api_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings

    monkeypatch.setenv("TUNESERVE_IMAGE_STORE_MAX_SIDE", "64")
    get_settings.cache_clear()
    entries = {
        "wide/a.png": image_bytes((600, 300), (10, 20, 30)),
        "wide/b.png": image_bytes((20, 10), (10, 20, 31)),
        "tall/a.jpg": image_bytes((99, 200), (200, 200, 200), fmt="JPEG"),
        "tall/b.png": image_bytes((64, 64), (1, 2, 3)),
    }
    ds = created(upload_zip(client, auth, zip_bytes(entries)))
    assert ds["report"]["images"]["stored_max_side"] == 64
    table = canonical(api_env, ds)
    by_source = {s: i for i, s in enumerate(table.column("source").to_pylist())}
    expected = {
        "wide/a.png": ((600, 300), (64, 32)),
        "wide/b.png": ((20, 10), (20, 10)),
        "tall/a.jpg": ((99, 200), (32, 64)),
        "tall/b.png": ((64, 64), (64, 64)),
    }
    for source, (original, stored) in expected.items():
        row = by_source[source]
        assert (table.column("width")[row].as_py(), table.column("height")[row].as_py()) == (
            original
        )
        assert stored_image(table, row).size == stored
    assert stored_image(table, by_source["wide/a.png"]).getpixel((5, 5)) == (10, 20, 30)


def test_labels_csv(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    entries: dict[str, bytes] = {f"img/{i}.png": image_bytes((8, 8), (i, 0, 0)) for i in range(7)}
    entries["labels.csv"] = (
        b"file,kind\nimg/0.png,red\n./img/1.png,blue\nimg\\2.png,red\nimg/3.png,\n"
        b",blue\nimg/4.png, blue \n"
    )
    ds = created(
        upload_zip(client, auth, zip_bytes(entries), image_column="file", label_column="kind")
    )
    assert ds["column_mapping"] == {"image": "file", "label": "kind"}
    r = ds["report"]
    assert (r["layout"], r["columns"], r["rows"], r["rows_read"]) == (
        "labels.csv",
        ["file", "kind"],
        4,
        6,
    )
    assert r["dropped_rows"] == 2 and r["empty_or_missing"] == {"file": 1, "kind": 1}
    assert r["label_counts"] == {"blue": 2, "red": 2}
    # img/3 (no label), img/5 and img/6 (no row) are not stored
    assert r["images"]["unlisted_images"] == 3 and r["images"]["ignored_files"] == 3
    assert any("not in the labels file" in w for w in r["warnings"])
    table = canonical(api_env, ds)
    assert table.column("source").to_pylist() == [
        "img/0.png",
        "img/1.png",
        "img/2.png",
        "img/4.png",
    ]
    assert table.column("label").to_pylist() == ["red", "blue", "red", "blue"]


def test_labels_jsonl_in_a_top_folder(client: TestClient, auth: dict[str, str]) -> None:
    rows = [{"image": f"{i}.png", "label": "even" if i % 2 == 0 else "odd"} for i in range(4)]
    entries = {f"set/{i}.png": image_bytes((8, 8), (0, i, 0)) for i in range(4)}
    entries["set/labels.jsonl"] = jsonl(rows)
    ds = created(upload_zip(client, auth, zip_bytes(entries)))
    assert ds["report"]["layout"] == "labels.jsonl"
    assert ds["report"]["label_counts"] == {"even": 2, "odd": 2}


@pytest.mark.parametrize("layout", ["labels.csv", "labels.jsonl"])
def test_multilabel(client: TestClient, auth: dict[str, str], api_env: Path, layout: str) -> None:
    tags = [["sky", "sea"], ["sky"], ["sea", "sand"], []]
    entries = {f"{i}.png": image_bytes((8, 8), (0, 0, i)) for i in range(4)}
    if layout == "labels.csv":
        lines = ["image,labels"] + [f"{i}.png,{'|'.join(t) or '[]'}" for i, t in enumerate(tags)]
        entries[layout] = ("\n".join(lines) + "\n").encode()
    else:
        entries[layout] = jsonl([{"image": f"{i}.png", "labels": t} for i, t in enumerate(tags)])
    ds = created(upload_zip(client, auth, zip_bytes(entries), task="image-multilabel"))
    assert ds["labels"] == ["sand", "sea", "sky"]
    assert ds["column_mapping"] == {"image": "image", "label": "labels"}
    r = ds["report"]
    assert r["label_counts"] == {"sea": 2, "sky": 2, "sand": 1}
    assert any("empty label list" in w for w in r["warnings"])
    table = canonical(api_env, ds)
    assert table.column("labels").to_pylist() == tags


def test_multilabel_folders_are_refused(
    client: TestClient, auth: dict[str, str], api_env: Path
) -> None:
    data = zip_bytes(class_folders({"a": 2, "b": 2}))
    err = assert_error(upload_zip(client, auth, data, task="image-multilabel"), 422)
    assert err["code"] == "dataset_invalid"
    assert "labels.csv" in err["message"] and "labels.jsonl" in err["message"]
    assert err["details"]["errors"] == [err["message"]]
    assert stored_files(api_env) == []


def test_modes_are_converted_to_rgb(
    client: TestClient, auth: dict[str, str], api_env: Path
) -> None:
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    sixteen = io.BytesIO()
    Image.new("I;16", (8, 8), 51400).save(sixteen, format="PNG")
    entries = {
        "a/gray.png": image_bytes(mode="L", color=100),
        "a/clear.png": image_bytes(mode="RGBA", color=(255, 0, 0, 0)),
        "a/half.png": image_bytes(mode="RGBA", color=(0, 0, 0, 128)),
        "b/cmyk.jpg": image_bytes(mode="CMYK", color=(0, 0, 0, 0), fmt="JPEG"),
        "b/palette.png": buf.getvalue(),
        "b/sixteen.png": sixteen.getvalue(),
        "b/bw.bmp": image_bytes(mode="1", color=1, fmt="BMP"),
        "b/rgb.webp": image_bytes(color=(0, 0, 255), fmt="WEBP", lossless=True),
        "b/anim.gif": image_bytes(mode="L", color=7, fmt="GIF"),
    }
    ds = created(upload_zip(client, auth, zip_bytes(entries)))
    images = ds["report"]["images"]
    # a GIF is a palette image whatever it was saved from
    assert images["modes"] == {"P": 2, "RGBA": 2, "1": 1, "CMYK": 1, "I;16": 1, "L": 1, "RGB": 1}
    assert images["converted_to_rgb"] == 8
    table = canonical(api_env, ds)
    pixel = {
        source: stored_image(table, i).getpixel((0, 0))
        for i, source in enumerate(table.column("source").to_pylist())
    }
    assert pixel["a/gray.png"] == (100, 100, 100)
    assert pixel["a/clear.png"] == (255, 255, 255)  # transparent: laid over white
    assert pixel["a/half.png"] == (127, 127, 127)
    assert pixel["b/cmyk.jpg"] == (255, 255, 255)
    assert pixel["b/palette.png"] == (10, 200, 30)
    assert pixel["b/sixteen.png"] == (200, 200, 200)  # 51400 / 256
    assert pixel["b/bw.bmp"] == (255, 255, 255)
    assert pixel["b/rgb.webp"] == (0, 0, 255)
    assert pixel["b/anim.gif"] == (7, 7, 7)
    sources = table.column("source").to_pylist()
    modes = dict(zip(sources, table.column("mode").to_pylist(), strict=True))
    assert modes["b/cmyk.jpg"] == "CMYK" and modes["b/sixteen.png"] == "I;16"


def _corrupt_zip(good: int, broken: int) -> bytes:
    entries = class_folders({"x": good // 2, "y": good - good // 2})
    png = image_bytes((10, 10))
    for i in range(broken):
        entries[f"y/broken{i}.png"] = png[: len(png) // 2]  # PNG magic, truncated data
    entries["x/empty.jpg"] = b""
    return zip_bytes(entries)


def test_corrupt_files_are_listed(client: TestClient, auth: dict[str, str]) -> None:
    # 2 corrupt (one truncated, one empty) of 40: 5%, at the threshold
    ds = created(upload_zip(client, auth, _corrupt_zip(good=38, broken=1)))
    images = ds["report"]["images"]
    assert (images["files"], images["decoded"], images["corrupt"]) == (40, 38, 2)
    assert images["corrupt_share"] == 0.05
    assert images["corrupt_files"] == [
        {"name": "x/empty.jpg", "reason": "the file is empty"},
        {"name": "y/broken0.png", "reason": images["corrupt_files"][1]["reason"]},
    ]
    assert images["corrupt_files"][1]["reason"]
    assert ds["num_rows"] == 38
    assert any("cannot be decoded" in w for w in ds["report"]["warnings"])


def test_too_many_corrupt_files_are_fatal(
    client: TestClient, auth: dict[str, str], api_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    err = assert_error(upload_zip(client, auth, _corrupt_zip(good=37, broken=2)), 422)
    assert err["code"] == "dataset_invalid"
    assert "3 of 40 images (7.5%) cannot be decoded" in err["message"]
    assert "TUNESERVE_IMAGE_MAX_CORRUPT_SHARE" in err["message"]
    assert [c["name"] for c in err["details"]["images"]["corrupt_files"]] == [
        "x/empty.jpg",
        "y/broken0.png",
        "y/broken1.png",
    ]
    assert stored_files(api_env) == []
    from app.config import get_settings

    monkeypatch.setenv("TUNESERVE_IMAGE_MAX_CORRUPT_SHARE", "0.1")
    get_settings.cache_clear()
    created(upload_zip(client, auth, _corrupt_zip(good=37, broken=2)))


def test_duplicates_by_content(client: TestClient, auth: dict[str, str]) -> None:
    same = Image.new("RGB", (12, 12), (9, 99, 199))
    encodings = []
    for level in (1, 9):
        buf = io.BytesIO()
        same.save(buf, format="PNG", compress_level=level)
        encodings.append(buf.getvalue())
    bmp = io.BytesIO()
    same.save(bmp, format="BMP")
    assert encodings[0] != encodings[1]
    entries = class_folders({"a": 3, "b": 3})
    entries["a/copy1.png"] = encodings[0]
    entries["a/copy2.png"] = encodings[1]  # another compression: same pixels
    entries["b/copy3.bmp"] = bmp.getvalue()  # another format, another label
    entries["b/gray.png"] = image_bytes((12, 12), 99, mode="L")
    entries["b/rgb_gray.png"] = image_bytes((12, 12), (99, 99, 99))  # the same as RGB
    r = created(upload_zip(client, auth, zip_bytes(entries)))["report"]
    assert r["images"]["duplicates"] == 3
    assert r["images"]["duplicate_examples"] == [
        ["a/copy1.png", "a/copy2.png"],
        ["a/copy1.png", "b/copy3.bmp"],
        ["b/gray.png", "b/rgb_gray.png"],
    ]
    assert r["conflicting_duplicates"] == 1
    assert any("repeat the content" in w for w in r["warnings"])


def test_small_classes_warn_and_one_class_is_fatal(
    client: TestClient, auth: dict[str, str], api_env: Path
) -> None:
    r = created(upload_zip(client, auth, zip_bytes(class_folders({"big": 6, "tiny": 1}))))
    assert r["report"]["small_classes"] == ["tiny"]
    assert any("fewer than 5 images: 'tiny'" in w for w in r["report"]["warnings"])
    before = stored_files(api_env)
    err = assert_error(upload_zip(client, auth, zip_bytes(class_folders({"only": 4}))), 422)
    assert err["code"] == "dataset_invalid" and "at least 2 classes" in err["message"]
    assert stored_files(api_env) == before


@pytest.mark.parametrize(
    "entries,needle",
    [
        ({"a.png": image_bytes(), "b/c.png": image_bytes()}, "not in a class folder"),
        (
            {"1.png": image_bytes(), "labels.csv": b"image,label\n1.png,a\n2.png,b\n"},
            "names 1 images the zip does not hold",
        ),
        (
            {"1.png": image_bytes(), "labels.csv": b"image,label\n1.png,a\n./1.png,b\n"},
            "listed twice",
        ),
        ({"1.png": image_bytes(), "labels.csv": b"img,label\n1.png,a\n"}, "no column 'image'"),
        ({"1.png": image_bytes(), "labels.csv": b"image,label\n"}, "has no rows"),
        (
            {"1.png": image_bytes(), "labels.csv": b"image,label\n", "labels.jsonl": b""},
            "both labels.csv and labels.jsonl",
        ),
        ({"1.png": image_bytes(), "labels.csv": b"image,label\n1.png,\xff\n"}, "UTF-8"),
    ],
)
def test_layout_mistakes(
    client: TestClient, auth: dict[str, str], api_env: Path, entries: dict[str, bytes], needle: str
) -> None:
    err = assert_error(upload_zip(client, auth, zip_bytes(entries)), 422, "dataset_invalid")
    assert needle in err["message"], err
    assert stored_files(api_env) == []


def test_row_groups_and_memory(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    """300 images: row groups of at most 256 rows, each image one 8x8 PNG."""
    entries = {
        f"{'ab'[i % 2]}/{i}.png": image_bytes((8, 8), (i % 256, i // 256, 5)) for i in range(300)
    }
    ds = created(upload_zip(client, auth, zip_bytes(entries)))
    meta = pq.ParquetFile(api_env / "datasets" / ds["id"] / "data.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [256, 44]
    assert ds["report"]["label_counts"] == {"a": 150, "b": 150}


def _image_base(root: Path) -> None:
    """A directory the registry lists as an image base model (ResNet config, processor)."""
    model = root / "tiny-resnet"
    model.mkdir(parents=True)
    (model / "config.json").write_text(
        json.dumps({"model_type": "resnet", "architectures": ["ResNetForImageClassification"]})
    )
    (model / "preprocessor_config.json").write_text(
        json.dumps(
            {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 32}}
        )
    )
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (model / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)


def test_jobs_on_image_datasets_follow_supported_tasks(
    client: TestClient, auth: dict[str, str], api_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A strategy whose ``supported_tasks`` lacks the image tasks refuses an image dataset with
    a clear 422 naming the task (text-only strategies, and every strategy until the worker
    trains on images); a text base model refuses it whatever the strategy."""
    from app.config import get_settings
    from app.contract.strategies import STRATEGY_CONFIGS

    _image_base(api_env.parent / "bases")
    monkeypatch.setenv("TUNESERVE_BASE_MODELS_DIR", str(api_env.parent / "bases"))
    get_settings.cache_clear()
    ds = created(upload_zip(client, auth, zip_bytes(class_folders({"a": 8, "b": 8}))))
    bases = {m["id"] for m in client.get("/v1/base-models", headers=auth).json()["data"]}
    assert "tiny-resnet" in bases
    refused = 0
    for name, config in sorted(STRATEGY_CONFIGS.items()):
        strategy = {"name": name, **{field: "ds_other" for field in config.aux_datasets}}
        for base in ("tiny-resnet", "all-MiniLM-L6-v2"):
            body = {"base_model": base, "dataset_id": ds["id"], "strategy": strategy}
            r = client.post("/v1/jobs", headers=auth, json=body)
            trains = "image-classification" in config.supported_tasks
            if base == "tiny-resnet" and trains and not config.needs_zero_shot:
                assert r.status_code == 201, r.text
                continue
            refused += 1
            err = assert_error(r, 422, "invalid_input")
            if base == "tiny-resnet" and config.needs_zero_shot:  # no text tower: not CLIP
                assert err["details"]["field"] == "base_model", err
                assert "CLIP" in err["message"], err
                continue
            field = "dataset_id" if base == "tiny-resnet" else "base_model"
            assert err["details"]["field"] == field, err
            assert "image-classification" in err["message"], err
    # contrastive, dann and dapt stay text-only, zero_shot needs CLIP; no text base trains
    # on images
    assert refused == len(STRATEGY_CONFIGS) + 4


def test_noise_images_round_trip(client: TestClient, auth: dict[str, str], api_env: Path) -> None:
    """Incompressible images, stored (not deflated) in the zip, come back pixel for pixel."""
    import zipfile

    entries = {
        f"{c}/{i}.png": noise_png((24, 16), seed=10 * i + len(c)) for c in "xy" for i in range(2)
    }
    ds = created(upload_zip(client, auth, zip_bytes(entries, method=zipfile.ZIP_STORED)))
    table = canonical(api_env, ds)
    for row, source in enumerate(table.column("source").to_pylist()):
        original = Image.open(io.BytesIO(entries[source]))
        assert stored_image(table, row).tobytes() == original.convert("RGB").tobytes()
