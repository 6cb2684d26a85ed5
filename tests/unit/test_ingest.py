"""Dataset ingest: every format and task, the report, and hostile uploads (pure, no DB)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.datasets.ingest import ColumnMapping, ingest_file
from app.datasets.limits import IngestLimits
from app.datasets.report import ValidationReport
from app.datasets.sniffing import detect_format
from app.errors import DatasetInvalid, InvalidInput, PayloadTooLarge, UnsupportedMediaType


def _write(tmp_path: Path, name: str, data: bytes | str | pa.Table) -> Path:
    src = tmp_path / "in" / name
    src.parent.mkdir(exist_ok=True)
    if isinstance(data, pa.Table):
        pq.write_table(data, src)
    else:
        src.write_bytes(data.encode() if isinstance(data, str) else data)
    return src


def _ingest(
    tmp_path: Path,
    name: str,
    data: bytes | str | pa.Table,
    *,
    task: Any = "text-classification",
    columns: ColumnMapping | None = None,
    declared: str | None = None,
    **limits: int,
) -> tuple[ValidationReport, list[dict[str, Any]]]:
    dest = tmp_path / "out" / "data.parquet"
    report = ingest_file(
        _write(tmp_path, name, data),
        filename=name,
        task=task,
        columns=columns or ColumnMapping(),
        dest=dest,
        limits=IngestLimits(**limits),
        declared_format=declared,
    )
    assert [p.name for p in dest.parent.iterdir()] == ["data.parquet"]
    return report, pq.read_table(dest).to_pylist()


def _fails(
    tmp_path: Path,
    name: str,
    data: bytes | str | pa.Table,
    *,
    task: Any = "text-classification",
    error: type[Exception] = DatasetInvalid,
    **limits: int,
) -> str:
    dest = tmp_path / "out" / "data.parquet"
    dest.parent.mkdir()
    with pytest.raises(error) as info:
        ingest_file(
            _write(tmp_path, name, data),
            filename=name,
            task=task,
            columns=ColumnMapping(),
            dest=dest,
            limits=IngestLimits(**limits),
        )
    assert list(dest.parent.iterdir()) == []  # nothing at dest, no temp file left behind
    exc = info.value
    if isinstance(exc, DatasetInvalid):
        report = ValidationReport.model_validate(exc.details)
        assert report.errors == [exc.message]
        json.dumps(exc.details)
    return str(exc)


def _balanced_csv(n: int = 5) -> str:
    return "text,label\n" + "".join(f"pos {i},pos\nneg {i},neg\n" for i in range(n))


# --- happy paths ---------------------------------------------------------------------------


def test_csv_with_bom_and_quoted_newlines(tmp_path: Path) -> None:
    data = '\ufefftext,label\n"first line\nsecond, line",pos\nplain,neg\n"say ""hi""",neg\n'
    report, rows = _ingest(tmp_path, "d.csv", data)
    assert rows == [
        {"text": "first line\nsecond, line", "label": "pos"},
        {"text": "plain", "label": "neg"},
        {"text": 'say "hi"', "label": "neg"},
    ]
    assert report.format == "csv"
    assert report.columns == ["text", "label"]
    assert (report.rows, report.rows_read) == (3, 3)


def test_jsonl_int_and_bool_labels_become_strings(tmp_path: Path) -> None:
    lines = [{"text": "a", "label": 1}, {"text": "b", "label": 0}, {"text": "c", "label": 2.0}]
    lines.append({"text": "d", "label": True})
    data = "\n\n".join(json.dumps(x) for x in lines) + "\n"
    report, rows = _ingest(tmp_path, "d.jsonl", data)
    assert [r["label"] for r in rows] == ["1", "0", "2", "true"]
    assert report.label_counts == {"0": 1, "1": 1, "2": 1, "true": 1}


def test_parquet_int_labels(tmp_path: Path) -> None:
    table = pa.table({"text": ["a", "b", "c"], "label": [1, 2, 1], "extra": [1.5, 2.5, 3.5]})
    report, rows = _ingest(tmp_path, "d.parquet", table)
    assert rows == [
        {"text": "a", "label": "1"},
        {"text": "b", "label": "2"},
        {"text": "c", "label": "1"},
    ]
    assert report.format == "parquet"
    assert report.columns == ["text", "label", "extra"]


def test_canonical_schema_is_exact(tmp_path: Path) -> None:
    _ingest(tmp_path, "d.csv", _balanced_csv())
    schema = pq.read_schema(tmp_path / "out" / "data.parquet")
    assert schema.names == ["text", "label"]
    assert schema.field("text").type == pa.string()
    assert schema.field("label").type == pa.string()


def test_custom_column_mapping_and_text_pairs(tmp_path: Path) -> None:
    data = "q,a,y,other\nwho,me,yes,x\nwhy,because,no,y\n"
    mapping = ColumnMapping(text="q", text_pair="a", label="y")
    report, rows = _ingest(
        tmp_path, "d.csv", data, task="text-pair-classification", columns=mapping
    )
    assert rows == [
        {"text": "who", "text_pair": "me", "label": "yes"},
        {"text": "why", "text_pair": "because", "label": "no"},
    ]
    assert report.text_pair_length is not None
    assert (report.text_pair_length.min, report.text_pair_length.max) == (2, 7)
    assert report.empty_or_missing == {"q": 0, "a": 0, "y": 0}


def test_multilabel_from_csv(tmp_path: Path) -> None:
    data = 'text,label\nx,a|b\ny, c | a \nz,"[""b"", ""c,d""]"\nw,a|a\nv,[]\n'
    report, rows = _ingest(tmp_path, "d.csv", data, task="text-multilabel")
    assert [r["labels"] for r in rows] == [["a", "b"], ["c", "a"], ["b", "c,d"], ["a"], []]
    assert report.label_counts == {"a": 3, "b": 2, "c": 1, "c,d": 1}
    assert pq.read_schema(tmp_path / "out" / "data.parquet").field("labels").type == pa.list_(
        pa.string()
    )
    assert any("empty label list" in w for w in report.warnings)


def test_multilabel_from_jsonl_lists_and_parquet(tmp_path: Path) -> None:
    data = '{"text": "x", "label": ["a", "b"]}\n{"text": "y", "label": ["b"]}\n'
    report, rows = _ingest(tmp_path, "d.jsonl", data, task="text-multilabel")
    assert [r["labels"] for r in rows] == [["a", "b"], ["b"]]
    assert report.num_labels == 2
    table = pa.table({"text": ["x", "y"], "label": [["a", "b"], ["c"]]})
    (tmp_path / "out" / "data.parquet").unlink()
    _, rows = _ingest(tmp_path, "d.parquet", table, task="text-multilabel")
    assert [r["labels"] for r in rows] == [["a", "b"], ["c"]]


def test_unlabeled_text(tmp_path: Path) -> None:
    report, rows = _ingest(
        tmp_path, "d.jsonl", '{"text": "x"}\n{"text": "y", "n": 1}\n', task="unlabeled-text"
    )
    assert rows == [{"text": "x"}, {"text": "y"}]
    assert report.label_counts == {} and report.num_labels == 0
    assert report.columns == ["text", "n"]


def test_dest_is_replaced_atomically(tmp_path: Path) -> None:
    _ingest(tmp_path, "d.csv", _balanced_csv())
    report, rows = _ingest(tmp_path, "e.csv", "text,label\nx,a\ny,b\n")
    assert report.rows == len(rows) == 2


# --- the report ----------------------------------------------------------------------------


def test_report_counts_duplicates_small_classes_and_lengths(tmp_path: Path) -> None:
    data = (
        "text,label,junk\n"
        + "".join(f"text number {i},big,\n" for i in range(20))
        + "text number 0,big,\n"  # duplicate, same label
        + "text number 1,small,\n"  # duplicate, conflicting label
        + "tiny,small,\n"
        + ",big,\n"  # empty text: dropped
        + "   ,big,\n"  # blank text: dropped
        + "no label,,\n"  # empty label: dropped
    )
    report, rows = _ingest(tmp_path, "d.csv", data)
    assert report.rows_read == 26
    assert report.rows == len(rows) == 23
    assert report.dropped_rows == 3
    assert report.empty_or_missing == {"text": 2, "label": 1}
    assert report.label_counts == {"big": 21, "small": 2}
    assert list(report.label_counts) == ["big", "small"]
    assert report.num_labels == 2
    assert report.duplicate_texts == 2
    assert report.conflicting_duplicates == 1
    assert report.small_classes == ["small"]
    lengths = sorted(len(r["text"]) for r in rows)
    assert report.text_length.min == 4 == lengths[0]
    assert report.text_length.max == 14 == lengths[-1]
    assert report.text_length.mean == pytest.approx(sum(lengths) / len(lengths), abs=0.01)
    assert report.text_length.p50 == 13
    assert report.text_length.p95 == 14
    assert report.text_pair_length is None
    text = " ".join(report.warnings)
    for needle in ("3 of 26 rows dropped", "repeat the text", "different label", "'small'"):
        assert needle in text
    assert "imbalanced" in text
    assert report.errors == []


def test_report_is_json_serialisable(tmp_path: Path) -> None:
    report, _ = _ingest(tmp_path, "d.csv", _balanced_csv())
    assert ValidationReport.model_validate_json(report.model_dump_json()) == report
    assert report.small_classes == [] and report.warnings == []


# --- detect_format -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "head", "declared", "expected"),
    [
        ("a.csv", b"text,label\n", None, "csv"),
        ("a.CSV", b"text,label\n", None, "csv"),
        ("a.ndjson", b"{}", None, "jsonl"),
        ("a.json-lines", b"{}", None, "jsonl"),
        ("a.pq", b"PAR1....", None, "parquet"),
        ("upload.bin", b"{}", "jsonl", "jsonl"),
        ("a.csv", b"PAR1....", "parquet", "parquet"),
    ],
)
def test_detect_format(name: str, head: bytes, declared: str | None, expected: str) -> None:
    assert detect_format(name, head, declared) == expected


@pytest.mark.parametrize(
    ("name", "declared"), [("a.xlsx", None), ("a", None), ("a.tsv", None), ("a.csv", "xml")]
)
def test_detect_format_unknown_is_415(name: str, declared: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        detect_format(name, b"text\n", declared)


def test_detect_format_contradicted_by_content() -> None:
    with pytest.raises(DatasetInvalid, match="not Parquet"):
        detect_format("data.parquet", b"text,label\n")
    with pytest.raises(DatasetInvalid, match="looks like a Parquet file"):
        detect_format("data.csv", b"PAR1\x15\x04")
    with pytest.raises(DatasetInvalid, match="gzip"):
        detect_format("data.jsonl", b"\x1f\x8b\x08\x00")


# --- hostile inputs ------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    assert "empty" in _fails(tmp_path, "d.csv", b"")


def test_header_only(tmp_path: Path) -> None:
    assert "no data rows (only a header)" in _fails(tmp_path, "d.csv", "text,label\n")


def test_blank_jsonl(tmp_path: Path) -> None:
    assert "no data rows" in _fails(tmp_path, "d.jsonl", "\n  \n")


def test_binary_garbage_named_csv(tmp_path: Path) -> None:
    garbage = random.Random(0).randbytes(4096)
    assert "binary" in _fails(tmp_path, "d.csv", garbage)


def test_latin1_text(tmp_path: Path) -> None:
    data = ("text,label\n" + "fine,a\n" * 3 + "caf\u00e9,b\n").encode("latin-1")
    message = _fails(tmp_path, "d.csv", data)
    assert "not valid UTF-8" in message
    assert "byte offset 35" in message and "0xe9" in message and "line 5" in message


def test_invalid_utf8_beyond_the_head(tmp_path: Path) -> None:
    data = _balanced_csv(20_000).encode() + b"caf\xe9,b\n"
    message = _fails(tmp_path, "d.csv", data)
    assert f"byte offset {len(data) - 4}" in message


def test_ragged_row(tmp_path: Path) -> None:
    message = _fails(tmp_path, "d.csv", "text,label\na,b\nc,d,e\n")
    assert "line 3" in message and "3 fields" in message


def _limit(
    tmp_path: Path, name: str, data: bytes | str | pa.Table, status: int, code: str, **limits: Any
) -> str:
    """The message of a passed cap: its status and code, and nothing left at ``dest``."""
    error = PayloadTooLarge if status == 413 else InvalidInput
    dest = tmp_path / "out" / "data.parquet"
    dest.parent.mkdir(exist_ok=True)
    with pytest.raises(error) as info:
        ingest_file(
            _write(tmp_path, name, data),
            filename=name,
            task=limits.pop("task", "text-classification"),
            columns=ColumnMapping(),
            dest=dest,
            limits=IngestLimits(**limits),
        )
    assert list(dest.parent.iterdir()) == []  # nothing at dest, no temp file left behind
    exc = info.value
    assert (exc.status_code, exc.code) == (status, code), exc.message
    assert exc.details["setting"].startswith("TUNESERVE_MAX_"), exc.details
    json.dumps(exc.details)
    return exc.message


def test_enormous_field(tmp_path: Path) -> None:
    big = "x" * 300_000  # above csv's default 128 KiB field limit
    message = _limit(
        tmp_path, "d.csv", f'text,label\n"{big}",a\n', 413, "cell_too_large", max_cell_bytes=200_000
    )
    assert "line 2" in message and "200000" in message


def test_enormous_field_just_over_the_limit(tmp_path: Path) -> None:
    data = "text,label\n" + "x" * 1001 + ",a\n"
    message = _limit(tmp_path, "d.csv", data, 413, "cell_too_large", max_cell_bytes=1000)
    assert "line 2" in message and "1001 bytes" in message and "'text'" in message


def test_cell_cap_counts_utf8_bytes(tmp_path: Path) -> None:
    data = "text,label\n" + "\u00e9" * 501 + ",a\n"  # 501 characters, 1002 bytes
    message = _limit(tmp_path, "d.csv", data, 413, "cell_too_large", max_cell_bytes=1000)
    assert "1002 bytes" in message


def test_field_at_the_limit_is_fine(tmp_path: Path) -> None:
    data = _balanced_csv() + "x" * 200_000 + ",pos\n"
    report, _ = _ingest(tmp_path, "d.csv", data, max_cell_bytes=200_000)
    assert report.text_length.max == 200_000


def test_enormous_jsonl_text(tmp_path: Path) -> None:
    data = json.dumps({"text": "x" * 2000, "label": "a"})
    message = _limit(tmp_path, "d.jsonl", data, 413, "cell_too_large", max_cell_bytes=1000)
    assert "line 1" in message


def test_enormous_jsonl_line(tmp_path: Path) -> None:
    """A line is read with a bound: one longer than 8 cells is refused before it is parsed."""
    data = json.dumps({"text": "short", "label": "a", "other": "y" * 9000})
    message = _limit(tmp_path, "d.jsonl", data, 413, "row_too_large", max_cell_bytes=1000)
    assert "line 1" in message and "8000" in message


def test_enormous_csv_line_of_unmapped_fields(tmp_path: Path) -> None:
    data = "text,label,a,b,c,d,e,f,g,h,i\nshort,x" + ",".join([""] + ["z" * 999] * 9) + "\n"
    _limit(tmp_path, "d.csv", data, 413, "row_too_large", max_cell_bytes=1000)


def test_text_file_over_the_dataset_bytes(tmp_path: Path) -> None:
    data = _balanced_csv(50)
    message = _limit(tmp_path, "d.csv", data, 413, "dataset_too_large", max_dataset_bytes=500)
    assert str(len(data)) in message
    (tmp_path / "in" / "d.csv").unlink()
    jsonl = "".join(json.dumps({"text": f"t {i}", "label": "ab"[i % 2]}) + "\n" for i in range(50))
    _limit(tmp_path, "d.jsonl", jsonl, 413, "dataset_too_large", max_dataset_bytes=500)


def test_huge_number_of_columns(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(5000))
    data = f"text,label,{header}\nx,y\n"
    assert "5002 columns" in _limit(tmp_path, "d.csv", data, 422, "too_many_columns")
    obj = {f"c{i}": i for i in range(1001)}
    (tmp_path / "in" / "d.csv").unlink()
    message = _limit(tmp_path, "d.jsonl", json.dumps(obj), 422, "too_many_columns")
    assert "at most 1000" in message
    table = pa.table({f"c{i}": [1] for i in range(12)})
    _limit(tmp_path, "d.parquet", table, 422, "too_many_columns", max_columns=10)


def test_too_many_rows(tmp_path: Path) -> None:
    message = _limit(tmp_path, "d.csv", _balanced_csv(), 422, "too_many_rows", max_rows=6)
    assert "more than 6 rows" in message


def test_too_many_rows_parquet(tmp_path: Path) -> None:
    table = pa.table({"text": ["a", "b", "c"], "label": ["x", "y", "x"]})
    assert "at most 2" in _limit(tmp_path, "d.parquet", table, 422, "too_many_rows", max_rows=2)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_too_many_labels(tmp_path: Path, fmt: str) -> None:
    rows = [{"text": f"text {i}", "label": f"label {i}"} for i in range(30)]
    data: str | pa.Table
    if fmt == "csv":
        data = "text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows)
    elif fmt == "jsonl":
        data = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        data = pa.Table.from_pylist(rows)
    message = _limit(tmp_path, f"d.{fmt}", data, 422, "too_many_labels", max_labels=20)
    assert "more than 20 distinct labels" in message
    assert ("line 22" if fmt == "csv" else "line 21" if fmt == "jsonl" else "row 21") in message


def test_too_many_labels_multilabel(tmp_path: Path) -> None:
    data = "".join(
        json.dumps({"text": f"t{i}", "label": [f"a{i}", f"b{i}"]}) + "\n" for i in range(6)
    )
    _limit(tmp_path, "d.jsonl", data, 422, "too_many_labels", task="text-multilabel", max_labels=10)


def test_label_too_long(tmp_path: Path) -> None:
    data = _balanced_csv() + "text," + "L" * 201 + "\n"
    message = _limit(tmp_path, "d.csv", data, 422, "label_too_long")
    assert "201 characters" in message


def _parquet_bomb(rows: int, cell: int, **write: Any) -> pa.Table:
    """``rows`` copies of one ``cell``-byte string: a few KB on disk."""
    return pa.table({"text": ["x" * cell] * rows, "label": ["a", "b"] * (rows // 2)})


def test_parquet_dictionary_bomb_stops_at_the_dataset_bytes(tmp_path: Path) -> None:
    src = _write(tmp_path, "bomb.parquet", _parquet_bomb(400, 100_000))
    assert src.stat().st_size < 10_000  # 40 MB of text
    message = _limit(
        tmp_path,
        "bomb.parquet",
        _parquet_bomb(400, 100_000),
        413,
        "dataset_too_large",
        max_dataset_bytes=5_000_000,
    )
    assert "decode to more than" in message


def test_parquet_plain_bomb_stops_at_the_footer(tmp_path: Path) -> None:
    table = pa.table({"text": [f"{i:04d}" + "y" * 100_000 for i in range(60)], "label": ["a"] * 60})
    src = tmp_path / "in" / "plain.parquet"
    src.parent.mkdir()
    pq.write_table(table, src, use_dictionary=False, compression="zstd")
    assert src.stat().st_size < 100_000
    message = _limit(
        tmp_path,
        "plain.parquet",
        src.read_bytes(),
        413,
        "dataset_too_large",
        max_dataset_bytes=1_000_000,
    )
    assert "uncompressed" in message


def test_parquet_cell_over_the_cap_is_found_in_the_dictionary(tmp_path: Path) -> None:
    message = _limit(
        tmp_path, "d.parquet", _parquet_bomb(10, 5000), 413, "cell_too_large", max_cell_bytes=4000
    )
    assert "row group 1" in message and "5000 bytes" in message


def test_parquet_cell_over_the_cap_plain(tmp_path: Path) -> None:
    table = pa.table({"text": ["ok", "fine", "z" * 5000, "done"], "label": ["a", "b"] * 2})
    src = tmp_path / "in" / "plain.parquet"
    src.parent.mkdir()
    pq.write_table(table, src, use_dictionary=False)
    message = _limit(
        tmp_path, "plain.parquet", src.read_bytes(), 413, "cell_too_large", max_cell_bytes=4000
    )
    assert "row 3" in message and "5000 bytes" in message


def test_parquet_label_list_cell_over_the_cap(tmp_path: Path) -> None:
    table = pa.table({"text": ["a", "b", "c"], "label": [["x"], ["y", "q" * 5000], ["x"]]})
    src = tmp_path / "in" / "d.parquet"
    src.parent.mkdir()
    pq.write_table(table, src, use_dictionary=False)
    message = _limit(
        tmp_path,
        "d.parquet",
        src.read_bytes(),
        413,
        "cell_too_large",
        task="text-multilabel",
        max_cell_bytes=4000,
    )
    assert "row 2" in message


def test_parquet_large_repeated_cells_under_the_caps(tmp_path: Path) -> None:
    report, rows = _ingest(
        tmp_path, "d.parquet", _parquet_bomb(40, 100_000), max_dataset_bytes=5_000_000
    )
    assert report.rows == len(rows) == 40 and report.text_length.max == 100_000


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('["text", "label"]', "got an array"),
        ('"just a string"', "got a string"),
        ('{"text": 42, "label": "a"}', "'text' must be a string, got a number"),
        ('{"text": ["x"], "label": "a"}', "'text' must be a string, got an array"),
        ('{"text": "x", "label": {"name": "a"}}', "'label' must be a string or an integer"),
        ('{"text": "x", "label": 0.5}', "0.5"),
        ('{"text": "x", "label": "a"', "invalid JSON"),
        ('{"text": "\\ud800", "label": "a"}', "lone surrogate"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_wrong_json_types(tmp_path: Path, line: str, needle: str) -> None:
    data = '{"text": "ok", "label": "a"}\n{"text": "ok 2", "label": "b"}\n' + line + "\n"
    message = _fails(tmp_path, "d.jsonl", data)
    assert "line 3" in message and needle in message


def test_multilabel_nested_list(tmp_path: Path) -> None:
    data = '{"text": "x", "label": ["a", ["b"]]}\n'
    assert "list of strings" in _fails(tmp_path, "d.jsonl", data, task="text-multilabel")


def test_csv_that_is_jsonl(tmp_path: Path) -> None:
    assert "JSON Lines" in _fails(tmp_path, "d.csv", '{"text": "x", "label": "a"}\n')


def test_jsonl_that_is_csv(tmp_path: Path) -> None:
    assert "is this really JSON Lines" in _fails(tmp_path, "d.jsonl", "text,label\nx,a\n")


def test_fake_parquet(tmp_path: Path) -> None:
    assert "not Parquet" in _fails(tmp_path, "d.parquet", _balanced_csv())


def test_parquet_bytes_named_csv(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "real.parquet")
    data = (tmp_path / "real.parquet").read_bytes()
    assert "looks like a Parquet file" in _fails(tmp_path, "d.csv", data)


def test_truncated_parquet(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["a", "b"] * 100, "label": ["x", "y"] * 100}), tmp_path / "p")
    data = (tmp_path / "p").read_bytes()
    assert "truncated" in _fails(tmp_path, "d.parquet", data[: len(data) // 2])


def test_corrupt_parquet_with_both_magics(tmp_path: Path) -> None:
    data = b"PAR1" + random.Random(1).randbytes(2000) + b"\x10\x00\x00\x00PAR1"
    assert "corrupt" in _fails(tmp_path, "d.parquet", data)


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        (pa.table({"text": [1, 2], "label": ["a", "b"]}), "'text' has type int64"),
        (pa.table({"text": ["a", "b"], "label": [["a"], ["b"]]}), "'label' has type list"),
        (pa.table({"text": ["a", "b"], "label": [{"x": 1}, {"x": 2}]}), "'label' has type struct"),
    ],
)
def test_parquet_wrong_types(tmp_path: Path, table: pa.Table, needle: str) -> None:
    assert needle in _fails(tmp_path, "d.parquet", table)


def test_one_class_only(tmp_path: Path) -> None:
    assert "only one class ('a')" in _fails(tmp_path, "d.csv", "text,label\nx,a\ny,a\n")


def test_multilabel_one_label_only(tmp_path: Path) -> None:
    message = _fails(tmp_path, "d.csv", "text,label\nx,a\ny,a|a\n", task="text-multilabel")
    assert "at least 2 distinct labels" in message


def test_missing_column(tmp_path: Path) -> None:
    message = _fails(tmp_path, "d.csv", "sentence,label\nx,a\ny,b\n")
    assert "'text'" in message and "columns found: 'sentence', 'label'" in message


def test_missing_column_jsonl(tmp_path: Path) -> None:
    message = _fails(tmp_path, "d.jsonl", '{"text": "x"}\n{"text": "y"}\n')
    assert "'label'" in message and "columns found: 'text'" in message


def test_all_rows_empty(tmp_path: Path) -> None:
    assert "no usable rows" in _fails(tmp_path, "d.csv", "text,label\n,a\n  ,b\n")


def test_semicolon_csv_gets_a_hint(tmp_path: Path) -> None:
    assert "comma-separated" in _fails(tmp_path, "d.csv", "text;label\nx;a\n")


def test_unclosed_quote(tmp_path: Path) -> None:
    assert "malformed CSV" in _fails(tmp_path, "d.csv", 'text,label\nx,a\n"y,b\n')


def test_bad_task_and_mapping(tmp_path: Path) -> None:
    src = _write(tmp_path, "d.csv", _balanced_csv())
    dest = tmp_path / "out" / "d.parquet"
    with pytest.raises(InvalidInput, match="cannot be ingested"):
        ingest_file(
            src,
            filename="d.csv",
            task="image-classification",  # type: ignore[arg-type]
            columns=ColumnMapping(),
            dest=dest,
            limits=IngestLimits(),
        )
    with pytest.raises(InvalidInput, match="twice"):
        ingest_file(
            src,
            filename="d.csv",
            task="text-classification",
            columns=ColumnMapping(text="text", label="text"),
            dest=dest,
            limits=IngestLimits(),
        )
    assert not dest.parent.exists()


def test_unknown_extension(tmp_path: Path) -> None:
    _fails(tmp_path, "d.txt", _balanced_csv(), error=UnsupportedMediaType)


def test_parquet_dictionary_nulls_and_many_batches(tmp_path: Path) -> None:
    n = 40_000  # more than one read batch and one write flush
    texts = pa.array([f"t{i}" if i % 1000 else None for i in range(n)]).dictionary_encode()
    labels = pa.array(["a", "b", None, "c"] * (n // 4), pa.large_string())
    report, rows = _ingest(tmp_path, "d.parquet", pa.table({"text": texts, "label": labels}))
    assert report.rows_read == n
    assert report.empty_or_missing == {"text": 40, "label": n // 4}
    assert report.rows == len(rows) == n - report.dropped_rows
    assert rows[:2] == [{"text": "t1", "label": "b"}, {"text": "t3", "label": "c"}]


def test_limits_from_settings() -> None:
    from app.config import Settings

    settings = Settings(max_columns=7, min_examples_per_class=2, max_labels=3)
    limits = IngestLimits.from_settings(settings)
    assert (limits.max_columns, limits.min_examples_per_class, limits.max_labels) == (7, 2, 3)
    assert (limits.max_rows, limits.max_cell_bytes) == (settings.max_rows, settings.max_cell_bytes)


def test_parquet_dotted_names_and_nested_unmapped_columns(tmp_path: Path) -> None:
    """The caps are per mapped column: leaf columns are matched to their top-level column by
    the schema, not by splitting paths on dots."""
    table = pa.table(
        {
            "my.text": ["first", "second"] * 5,
            "label": ["x", "y"] * 5,
            "meta": [{"a": 1, "b": "z" * 5000}] * 10,
            "tags": [["t"] * 3] * 10,
        }
    )
    report, rows = _ingest(
        tmp_path, "d.parquet", table, columns=ColumnMapping(text="my.text"), max_cell_bytes=4000
    )
    assert report.rows == 10 and rows[0] == {"text": "first", "label": "x"}
