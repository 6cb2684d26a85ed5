"""The pre-flight audit at submit (app.audit), over HTTP: each check fires on crafted data
and stays quiet on clean data; a fatal finding is a 422 ``audit_failed`` that creates nothing;
warnings and notes are in the job's ``audit`` and its ``audit`` events."""

from __future__ import annotations

import csv
import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.api.conftest import upload
from tests.api.test_hostile_uploads import assert_error
from tests.api.test_jobs import job_count, submit
from tests.conftest import reset_caches

#: a base model without tokenizer.json, so token counts are estimated from words
WORDS_MODEL = "words-only-bert"
WORDS_MODEL_POSITIONS = 64


@pytest.fixture
def api_env(api_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The shared environment plus a base-models directory holding WORDS_MODEL: a config and
    a safetensors file of one tensor (the registry reads only its header)."""
    model = api_env.parent / "base-models" / WORDS_MODEL
    model.mkdir(parents=True)
    config = {"model_type": "bert", "architectures": ["BertModel"]}
    config["max_position_embeddings"] = WORDS_MODEL_POSITIONS
    (model / "config.json").write_text(json.dumps(config))
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (model / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    monkeypatch.setenv("TUNESERVE_BASE_MODELS_DIR", str(model.parent))
    reset_caches()
    yield api_env


def table(rows: list[tuple[str, ...]], header: tuple[str, ...] = ("text", "label")) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


def sentences(label: str, n: int, start: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct short texts of one class."""
    return [(f"a short note about {label}, number {i}", label) for i in range(start, start + n)]


def clean(n: int = 10) -> list[tuple[str, str]]:
    return sentences("sport", n) + sentences("politics", n)


def dataset_id(
    client: TestClient, auth: dict[str, str], rows: list[tuple[str, ...]], **fields: str
) -> str:
    header = ("text", "text_pair", "label") if len(rows[0]) == 3 else ("text", "label")
    r = upload(client, auth, table(rows, header), **fields)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def findings(job: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [f for f in job["audit"] if f["code"] == code]


def events(client: TestClient, auth: dict[str, str], job_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/jobs/{job_id}/events", headers=auth)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def refused(r: Any, broker: redis.Redis, *, jobs: int = 0) -> list[dict[str, Any]]:
    """A 422 audit_failed that created nothing (``jobs`` existed before); its findings."""
    err = assert_error(r, 422, "audit_failed")
    assert any(f["severity"] == "fatal" for f in err["details"]["findings"]), err
    assert job_count() == jobs
    assert broker.llen("train") == jobs
    return list(err["details"]["findings"])


def test_clean_data_has_no_findings(client: TestClient, auth: dict[str, str]) -> None:
    train = dataset_id(client, auth, clean())
    val = dataset_id(client, auth, sentences("sport", 6, 50) + sentences("politics", 4, 50))
    r = submit(client, auth, train)
    assert r.status_code == 201, r.text
    assert r.json()["audit"] == []
    assert [e["kind"] for e in events(client, auth, r.json()["id"])] == ["queued", "auto"]
    assert client.get(f"/v1/jobs/{r.json()['id']}", headers=auth).json()["audit"] == []
    # with a validation set and a test set that share no text with it or each other
    test = dataset_id(client, auth, [(t.replace("note", "line"), y) for t, y in clean(5)])
    r = submit(client, auth, train, validation_dataset_id=val, test_dataset_id=test)
    assert r.status_code == 201, r.text
    assert r.json()["audit"] == []


def test_class_imbalance_warns_and_class_weights_make_it_a_note(
    client: TestClient, auth: dict[str, str]
) -> None:
    below = dataset_id(client, auth, sentences("sport", 23) + sentences("politics", 8))
    assert submit(client, auth, below).json()["audit"] == []  # 2.9:1

    ds = dataset_id(client, auth, sentences("sport", 24) + sentences("politics", 8))
    key = {**auth, "Idempotency-Key": "imbalanced"}
    off = {"class_weights": None}  # left out, auto turns the weights on (below)
    r = submit(client, key, ds, hyperparameters=off)
    assert r.status_code == 201, r.text
    job = r.json()
    [finding] = job["audit"]
    assert finding["code"] == "class_imbalance" and finding["severity"] == "warning"
    assert "'sport' has 24" in finding["message"] and "'politics' has 8" in finding["message"]
    assert '"class_weights": "auto"' in finding["suggestion"]
    assert finding["data"]["ratio"] == 3.0
    assert finding["data"]["largest"] == {"label": "sport", "count": 24}
    assert finding["data"]["smallest"] == {"label": "politics", "count": 8}
    # one `audit` event per finding, after `queued` and `auto`, with the finding as data
    logged = events(client, auth, job["id"])
    assert [e["kind"] for e in logged] == ["queued", "auto", "audit"]
    assert logged[2]["data"] == finding and logged[2]["message"] == finding["message"]
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth).json()["audit"] == [finding]
    # an idempotent replay returns the job as it is: no second audit
    again = submit(client, key, ds, hyperparameters=off)
    assert again.status_code == 200 and again.json()["audit"] == [finding]
    # left out, auto weights the classes: the finding is a note, and `auto` says why
    weighted = submit(client, auth, ds).json()
    [note] = weighted["audit"]
    assert note["severity"] == "info" and "class weights are on" in note["message"]
    assert weighted["hyperparameters"]["class_weights"] == "auto"
    [why] = [c for c in weighted["auto"] if c["field"] == "class_weights"]
    assert why["value"] == "auto" and "3.0:1" in why["reason"]
    assert len(events(client, auth, job["id"])) == 3  # the replay added nothing

    for weights in ("auto", {"politics": 3.0}):
        r = submit(client, auth, ds, hyperparameters={"class_weights": weights})
        assert r.status_code == 201, r.text
        [note] = r.json()["audit"]
        assert (note["code"], note["severity"]) == ("class_imbalance", "info")
        assert "class weights are on" in note["message"] and note["suggestion"] is None


def test_multilabel_imbalance_counts_positives(client: TestClient, auth: dict[str, str]) -> None:
    rows = [(f"item {i} of the catalogue", "a|b" if i < 10 else "a") for i in range(40)]
    ds = dataset_id(client, auth, rows, task="text-multilabel")
    r = submit(client, auth, ds)
    assert r.status_code == 201, r.text
    [finding] = r.json()["audit"]
    assert finding["code"] == "class_imbalance" and finding["data"]["ratio"] == 4.0
    assert "positive examples" in finding["message"]


def test_fatal_validation_leakage_creates_nothing(
    client: TestClient, auth: dict[str, str], broker: redis.Redis
) -> None:
    train_rows = [*clean(), ("A long text that repeats itself. " * 5, "sport")]
    train = dataset_id(client, auth, train_rows)
    # 6 of 10 validation rows are training texts, up to case and whitespace
    copies = [(f"  {t.upper()}  ", y) for t, y in reversed(train_rows[-6:])]
    val = dataset_id(
        client, auth, copies + sentences("sport", 2, 90) + sentences("politics", 2, 90)
    )
    found = refused(submit(client, auth, train, validation_dataset_id=val), broker)
    [leak] = [f for f in found if f["code"] == "leakage"]
    assert leak["severity"] == "fatal"
    assert "6 of 10 validation rows (60%)" in leak["message"]
    data = leak["data"]
    assert (data["split"], data["against"], data["dataset_id"]) == ("validation", "training", val)
    assert (data["rows"], data["of"], data["share"]) == (6, 10, 0.6)
    assert 1 <= len(data["examples"]) <= 5
    assert all(len(e) <= 80 for e in data["examples"])
    assert any(e.endswith("…") for e in data["examples"])  # the long one, cut
    assert client.get("/v1/jobs", headers=auth).json()["data"] == []

    # the training set as its own validation set: everything leaks
    [leak] = findings(
        {"audit": refused(submit(client, auth, train, validation_dataset_id=train), broker)},
        "leakage",
    )
    assert leak["data"]["share"] == 1.0
    # and a test set copied from the training data
    found = refused(submit(client, auth, train, test_dataset_id=val), broker)
    assert [f["data"]["split"] for f in found if f["code"] == "leakage"] == ["test"]


def test_leakage_warnings_for_validation_and_test(client: TestClient, auth: dict[str, str]) -> None:
    train = dataset_id(client, auth, clean())
    val_rows = [("A short note about SPORT, number 3", "sport"), *sentences("politics", 9, 50)]
    val = dataset_id(client, auth, val_rows)
    test_rows = [val_rows[5], ("a  short note about politics, number 7 ", "politics")]
    test = dataset_id(client, auth, [*test_rows, *sentences("sport", 8, 70)])
    r = submit(client, auth, train, validation_dataset_id=val, test_dataset_id=test)
    assert r.status_code == 201, r.text
    leaks = findings(r.json(), "leakage")
    assert [(f["data"]["split"], f["data"]["against"]) for f in leaks] == [
        ("validation", "training"),
        ("test", "training"),
        ("test", "validation"),
    ]
    assert all(f["severity"] == "warning" for f in leaks)
    assert [(f["data"]["rows"], f["data"]["of"]) for f in leaks] == [(1, 10), (1, 10), (1, 10)]
    assert leaks[0]["data"]["examples"] == ["A short note about SPORT, number 3"]
    assert "1 of 10 validation rows (10%)" in leaks[0]["message"]
    kinds = [e["kind"] for e in events(client, auth, r.json()["id"])]
    assert kinds == ["queued", "auto"] + ["audit"] * len(r.json()["audit"])


def test_leakage_risk_from_duplicates_without_validation_set(
    client: TestClient, auth: dict[str, str]
) -> None:
    dupes = [clean()[0], clean()[0], (clean()[1][0].title(), "sport"), clean()[1]]
    ds = dataset_id(client, auth, clean() + dupes)
    r = submit(client, auth, ds)
    assert r.status_code == 201, r.text
    [risk] = findings(r.json(), "leakage_risk")
    assert risk["severity"] == "warning" and "Deduplicate" in risk["suggestion"]
    assert (risk["data"]["duplicate_rows"], risk["data"]["repeated_texts"]) == (4, 2)
    assert risk["data"]["rows"] == 24
    assert "4 of 24 rows" in risk["message"]
    # with its own validation set the dataset is not split: no risk
    val = dataset_id(client, auth, sentences("sport", 3, 40) + sentences("politics", 3, 40))
    r = submit(client, auth, ds, validation_dataset_id=val)
    assert findings(r.json(), "leakage_risk") == []


def test_text_pairs_leak_only_as_pairs(
    client: TestClient, auth: dict[str, str], broker: redis.Redis
) -> None:
    pairs = [(f"question {i}", f"answer {i}", "yes" if i % 2 else "no") for i in range(20)]
    train = dataset_id(client, auth, pairs, task="text-pair-classification")
    # the same first texts with other second texts: no leak
    other = [(a, f"another answer {i}", y) for i, (a, _, y) in enumerate(pairs[:10])]
    val = dataset_id(client, auth, other, task="text-pair-classification")
    r = submit(client, auth, train, validation_dataset_id=val)
    assert r.status_code == 201, r.text
    assert findings(r.json(), "leakage") == []
    # the same pairs: a leak, shown as the pair
    val = dataset_id(client, auth, pairs[:6] + other[6:], task="text-pair-classification")
    found = refused(submit(client, auth, train, validation_dataset_id=val), broker, jobs=1)
    [leak] = [f for f in found if f["code"] == "leakage"]
    assert leak["data"]["rows"] == 6 and "question 0 || answer 0" in leak["data"]["examples"]
    # a pair has no single head or tail: only truncation
    r = submit(client, auth, train, hyperparameters={"long_text": "head_tail"})
    err = assert_error(r, 422, "invalid_input")
    assert err["details"]["field"] == "hyperparameters.long_text" and "pair" in err["message"]


def test_few_examples(client: TestClient, auth: dict[str, str]) -> None:
    ds = dataset_id(client, auth, sentences("sport", 7) + sentences("politics", 9))
    r = submit(client, auth, ds)
    [few] = findings(r.json(), "few_examples")
    assert few["severity"] == "warning" and '"name": "contrastive"' in few["suggestion"]
    assert few["data"] == {"threshold": 8, "classes": {"sport": 7}}
    assert "fewer than 8 training examples" in few["message"]
    r = submit(client, auth, ds, strategy={"name": "contrastive"})
    [note] = findings(r.json(), "few_examples")
    assert note["severity"] == "info" and note["suggestion"] is None

    # a class of one cannot be on both sides of the split
    lone = dataset_id(client, auth, [*clean(), ("a recipe for bread", "cooking")])
    r = submit(client, auth, lone)
    assert r.status_code == 201, r.text
    few, split = findings(r.json(), "few_examples")
    assert few["data"]["classes"] == {"cooking": 1}
    assert split["data"] == {"threshold": 2, "classes": {"cooking": 1}}
    assert "not be stratified" in split["message"]
    val = dataset_id(client, auth, sentences("sport", 2, 60) + sentences("politics", 2, 60))
    r = submit(client, auth, lone, validation_dataset_id=val)
    assert [f["data"]["threshold"] for f in findings(r.json(), "few_examples")] == [8]


def test_too_small_to_split(client: TestClient, auth: dict[str, str], broker: redis.Redis) -> None:
    three = dataset_id(client, auth, sentences("sport", 2, 80) + sentences("politics", 1, 80))
    [small] = [f for f in refused(submit(client, auth, three), broker) if f["code"] == "too_small"]
    assert small["severity"] == "fatal" and small["data"]["rows"] == 3
    five = dataset_id(client, auth, sentences("sport", 3) + sentences("politics", 2))
    found = refused(submit(client, auth, five), broker)  # round(5 x 0.1) = 0 rows held out
    [small] = [f for f in found if f["code"] == "too_small"]
    assert small["data"] == {"rows": 5, "validation_fraction": 0.1, "validation_rows": 0}
    r = submit(client, auth, five, hyperparameters={"validation_fraction": 0.2})
    assert r.status_code == 201, r.text
    assert findings(r.json(), "too_small") == []
    r = submit(client, auth, three, validation_dataset_id=five)
    assert r.status_code == 201, r.text


def test_long_texts_counted_with_the_model_tokenizer(
    client: TestClient, auth: dict[str, str]
) -> None:
    # all-MiniLM-L6-v2: 512 positions; "sport" is one token, plus the number, [CLS] and [SEP]
    def long(words: int) -> list[tuple[str, str]]:
        return [(" ".join(["sport"] * words) + f" {i}", "sport") for i in range(10)] + [
            (" ".join(["politics"] * words) + f" {i}", "politics") for i in range(10)
        ]

    long_data = dataset_id(client, auth, long(300))
    # left out, max_length covers them (auto): no finding
    r = submit(client, auth, long_data)
    assert r.status_code == 201, r.text
    assert findings(r.json(), "long_texts") == []
    assert r.json()["hyperparameters"]["max_length"] == 320
    [why] = [c for c in r.json()["auto"] if c["field"] == "max_length"]
    assert "303 tokens or shorter" in why["reason"]
    r = submit(client, auth, long_data, hyperparameters={"max_length": 256})
    assert r.status_code == 201, r.text
    [finding] = findings(r.json(), "long_texts")
    assert finding["severity"] == "warning"
    data = finding["data"]
    assert data["counting"] == "tokenizer"
    assert (data["limit"], data["max_length"], data["model_max_length"]) == (256, 256, 512)
    assert (data["sampled"], data["over_limit"], data["p90"]) == (20, 20, 303)
    assert "100% of 20 sampled training texts" in finding["message"]
    assert '"max_length": 320' in finding["suggestion"]

    assert r.json()["hyperparameters"]["long_text"] == "head_tail"  # auto: both ends
    assert "first and last tokens" in finding["message"]

    too_long = dataset_id(client, auth, long(600))
    r = submit(client, auth, too_long, hyperparameters={"max_length": 1024, "long_text": "auto"})
    [finding] = findings(r.json(), "long_texts")
    assert finding["data"]["limit"] == 512  # capped by the model
    assert "at most 512 tokens" in finding["suggestion"]
    assert '"long_text": "chunks"' in finding["suggestion"]
    assert "max_length" not in finding["suggestion"]
    [why] = [c for c in r.json()["auto"] if c["field"] == "long_text"]
    assert why["value"] == "head_tail" and "512 tokens a window holds" in why["reason"]
    r = submit(client, auth, too_long, hyperparameters={"long_text": "chunks", "max_chunks": 2})
    [finding] = findings(r.json(), "long_texts")
    assert "up to 2 windows of 512 tokens" in finding["message"]
    assert r.json()["auto"][-1]["field"] == "max_length"  # long_text was asked for

    # within the limit: quiet
    r = submit(client, auth, dataset_id(client, auth, long(100)))
    assert findings(r.json(), "long_texts") == []


def test_long_texts_estimated_without_tokenizer(client: TestClient, auth: dict[str, str]) -> None:
    rows = [(" ".join(["word"] * 59) + f" {i}", "a" if i % 2 else "b") for i in range(20)]
    r = submit(client, auth, dataset_id(client, auth, rows), base_model=WORDS_MODEL)
    assert r.status_code == 201, r.text
    [finding] = findings(r.json(), "long_texts")
    data = finding["data"]
    assert data["counting"] == "estimate" and "estimated" in finding["message"]
    assert data["limit"] == data["model_max_length"] == WORDS_MODEL_POSITIONS
    assert data["p90"] == 80  # ceil(1.3 x 60 words) + 2 special tokens
    assert f"at most {WORDS_MODEL_POSITIONS} tokens" in finding["suggestion"]


def test_unreadable_data_does_not_fail_the_submit(
    client: TestClient, auth: dict[str, str], api_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = dataset_id(client, auth, sentences("sport", 30) + sentences("politics", 2))
    [parquet] = api_env.rglob(f"{ds}/data.parquet")
    parquet.write_bytes(b"PAR1 not really parquet PAR1")
    r = submit(client, auth, ds)
    assert r.status_code == 201, r.text
    assert r.json()["audit"] == []  # the data checks were skipped, and said so in the log
    assert any("audit" in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_sweep_candidates_are_audited(
    client: TestClient, auth: dict[str, str], broker: redis.Redis
) -> None:
    ds = dataset_id(client, auth, sentences("sport", 24) + sentences("politics", 8))
    body = {"base_model": "all-MiniLM-L6-v2", "dataset_id": ds}
    body["strategies"] = [{"name": "full"}, {"name": "linear_probe"}]
    r = client.post("/v1/sweeps", headers=auth, json={**body, "validation_dataset_id": ds})
    err = assert_error(r, 422, "audit_failed")
    assert err["details"]["candidate"] == 0
    assert client.get("/v1/sweeps", headers=auth).json()["data"] == []
    assert job_count() == 0
    r = client.post("/v1/sweeps", headers=auth, json=body)
    assert r.status_code == 201, r.text
    jobs = client.get("/v1/jobs", headers=auth).json()["data"]
    assert len(jobs) == 2
    assert all([f["code"] for f in j["audit"]] == ["class_imbalance"] for j in jobs)
