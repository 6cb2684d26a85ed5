"""Validation errors name the field and the fix: the closest valid choice for a misspelling,
the form field of a column mapping or of the format, the line and column of malformed JSON."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import csv_bytes, sample_rows, upload
from tests.api.test_hostile_uploads import assert_error


def _job(client: TestClient, auth: dict[str, str], **body: object) -> dict[str, object]:
    ds = upload(client, auth, csv_bytes(sample_rows()))
    assert ds.status_code == 201, ds.text
    full = {"base_model": "all-MiniLM-L6-v2", "dataset_id": ds.json()["id"], **body}
    return assert_error(client.post("/v1/jobs", headers=auth, json=full), 422, "invalid_input")


def test_a_misspelled_strategy_gets_the_closest_name(
    client: TestClient, auth: dict[str, str]
) -> None:
    err = _job(client, auth, strategy={"name": "linear_prob"})
    message = str(err["message"])
    assert "body.strategy.name: 'linear_prob' is not one of the choices" in message
    assert "did you mean 'linear_probe'?" in message and "gradual_unfreeze" in message
    assert err["details"][0]["type"] == "union_tag_invalid"  # type: ignore[index]


def test_a_misspelled_choice_deeper_down(client: TestClient, auth: dict[str, str]) -> None:
    err = _job(
        client,
        auth,
        strategy={"name": "full"},
        hyperparameters={"early_stopping": {"metric": "val_acuracy"}, "epoch": 3},
    )
    message = str(err["message"])
    assert "body.hyperparameters.early_stopping.metric: 'val_acuracy'" in message
    assert "did you mean 'val_accuracy'?" in message
    assert "body.hyperparameters.epoch is not a field here" in message


def test_malformed_json_is_placed_by_line_and_column(
    client: TestClient, auth: dict[str, str]
) -> None:
    headers = {**auth, "Content-Type": "application/json"}
    body = b'{\n  "base_model": "x",\n  "strategy": {"name": "full",}\n}'
    err = assert_error(client.post("/v1/jobs", headers=headers, content=body), 422)
    assert "not valid JSON" in str(err["message"]) and "line 3, column 31" in str(err["message"])


def test_a_missing_column_names_the_form_field(client: TestClient, auth: dict[str, str]) -> None:
    data = csv_bytes(sample_rows(), header="text,category")
    r = upload(client, auth, data)
    err = assert_error(r, 422)
    assert "`label_column`" in str(err["message"]) and "'category'" in str(err["message"])
    r = upload(client, auth, csv_bytes(sample_rows(), header="body,label"))
    assert "`text_column`" in str(assert_error(r, 422)["message"])


def test_an_unknown_file_type_names_the_format_field(
    client: TestClient, auth: dict[str, str]
) -> None:
    r = upload(client, auth, csv_bytes(sample_rows()), filename="data.txt")
    assert "form field `format`" in str(assert_error(r, 415)["message"])
    r = upload(client, auth, csv_bytes(sample_rows()), format="excel")
    assert "form field `format`" in str(assert_error(r, 415)["message"])


def test_the_report_and_the_audit_count_the_same_duplicates(
    client: TestClient, auth: dict[str, str]
) -> None:
    """One definition (app/datasets/duplicates.py): rows equal but for whitespace and case are
    duplicates in the upload's report and in the job's audit alike."""
    rows = [
        *sample_rows(),
        ("The match ended  with a late goal number 1", "sport"),
        (" the MATCH ended with a late goal number 1 ", "sport"),
        ("the parliament passed the budget bill 2\t", "politics"),
    ]
    ds = upload(client, auth, csv_bytes(rows))
    assert ds.status_code == 201, ds.text
    assert ds.json()["report"]["duplicate_texts"] == 3
    body = {"base_model": "all-MiniLM-L6-v2", "dataset_id": ds.json()["id"]}
    job = client.post("/v1/jobs", headers=auth, json={**body, "strategy": {"name": "full"}})
    assert job.status_code == 201, job.text
    [finding] = [f for f in job.json()["audit"] if f["code"] == "leakage_risk"]
    assert finding["data"]["duplicate_rows"] == 3
