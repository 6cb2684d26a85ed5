from tests.api.conftest import csv_bytes, sample_rows, upload


def test_flow(client, auth):
    r = upload(client, auth, csv_bytes(sample_rows()))
    assert r.status_code == 201, r.text
    ds = r.json()
    r = client.get("/v1/base-models", headers=auth)
    assert r.status_code == 200, r.text
    print(r.json())
    r = client.post(
        "/v1/jobs",
        headers=auth,
        json={
            "base_model": "all-MiniLM-L6-v2",
            "dataset_id": ds["id"],
            "strategy": {"name": "full"},
        },
    )
    assert r.status_code == 201, r.text
    print(r.json())
