"""The ``tuneserve`` command against a real service: a CSV to a watched job, a prediction and
an exported model with the CLI alone; errors and outcomes as exit statuses; the config file."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ApiProcess, Stack, api_beside
from worker.testing import learnable_examples

pytestmark = pytest.mark.integration

HP = {"epochs": 2, "batch_size": 8, "max_length": 32, "validation_fraction": 0.25, "seed": 0}


@pytest.fixture(scope="module")
def api(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    with api_beside(stack, tmp_path_factory.mktemp("cli")) as process:
        yield process


@pytest.fixture(scope="module")
def env(stack: Stack, api: ApiProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    key = stack.key
    home = tmp_path_factory.mktemp("cli-home")
    return {
        **os.environ,
        "TUNESERVE_URL": api.url,
        "TUNESERVE_API_KEY": key,
        "TUNESERVE_CONFIG": str(home / "absent.toml"),
        "COLUMNS": "200",
    }


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuneserve.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_json(env: dict[str, str], *args: str) -> Any:
    done = cli(env, *args, "--json")
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return json.loads(done.stdout)


def _csv(path: Path, n_per_class: int, seed: int) -> Path:
    texts, labels = learnable_examples(n_per_class, seed)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["body", "category"])
        writer.writerows(zip(texts, labels, strict=True))
    return path


def test_a_csv_to_a_watched_job_a_prediction_and_an_export(
    env: dict[str, str], tmp_path: Path
) -> None:
    data = _csv(tmp_path / "reviews.csv", 16, seed=3)
    dataset = cli_json(
        env, "datasets", "upload", str(data), "--text-column", "body", "--label-column", "category"
    )
    assert dataset["status"] == "ready" and sorted(dataset["labels"]) == ["A", "B"]
    assert dataset["id"] in {d["id"] for d in cli_json(env, "datasets", "list")}

    watched = cli(
        env,
        "jobs",
        "create",
        "--base-model",
        "tiny-st-bert",
        "--dataset-id",
        dataset["id"],
        "--strategy",
        '{"name": "linear_probe"}',
        "--hyperparameters",
        json.dumps({**HP, "learning_rate": 0.1}),
        "--watch",
    )
    assert watched.returncode == 0, (watched.stdout, watched.stderr)
    shown = watched.stdout + watched.stderr
    assert "status succeeded" in shown and "model mdl_" in shown
    [job] = [j for j in cli_json(env, "jobs", "list") if j["dataset_id"] == dataset["id"]]
    assert job["status"] == "succeeded" and job["model_id"]

    again = cli(env, "jobs", "watch", job["id"])  # an ended job: its outcome at once
    assert again.returncode == 0, again.stderr

    predictions = cli_json(
        env, "models", "predict", job["model_id"], "alpha kalo alpha", "beta beta peso"
    )
    assert [p["label"] for p in predictions] == ["A", "B"]
    table = cli(env, "models", "predict", job["model_id"], "alpha kalo alpha", "--top-k", "2")
    assert table.returncode == 0 and "alpha kalo alpha" in table.stdout

    exported = cli_json(env, "models", "export", job["model_id"], "--output", str(tmp_path))
    with tarfile.open(exported["path"]) as archive:
        assert any(name.endswith("manifest.json") for name in archive.getnames())


def test_errors_and_a_cancelled_outcome_are_exit_statuses(
    env: dict[str, str], tmp_path: Path
) -> None:
    missing = cli(env, "jobs", "show", "job_nope")
    assert missing.returncode == 4 and "error: not_found" in missing.stderr
    as_json = cli(env, "jobs", "show", "job_nope", "--json")
    assert json.loads(as_json.stderr)["error"]["code"] == "not_found"

    dataset = cli_json(
        env,
        "datasets",
        "upload",
        str(_csv(tmp_path / "d.csv", 40, seed=4)),
        "--text-column",
        "body",
        "--label-column",
        "category",
    )
    base = ["jobs", "create", "--base-model", "tiny-bert", "--dataset-id", dataset["id"]]
    typo = cli(env, *base, "--strategy", "ful")
    assert typo.returncode == 4 and "did you mean 'full'?" in typo.stderr

    job = cli_json(env, *base, "--hyperparameters", json.dumps({**HP, "epochs": 100}))
    assert cli(env, "jobs", "cancel", job["id"]).returncode == 0
    watched = cli(env, "jobs", "watch", job["id"], "--json")
    assert watched.returncode == 3, (watched.stdout, watched.stderr)
    assert json.loads(watched.stdout)["status"] == "cancelled"


def test_the_config_file_names_the_service(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'url = "{env["TUNESERVE_URL"]}"\napi_key = "{env["TUNESERVE_API_KEY"]}"\n')
    from_file = {k: v for k, v in env.items() if k not in ("TUNESERVE_URL", "TUNESERVE_API_KEY")}
    from_file["TUNESERVE_CONFIG"] = str(config)
    assert isinstance(cli_json(from_file, "models", "list"), list)
    from_file["TUNESERVE_CONFIG"] = str(tmp_path / "absent.toml")
    refused = cli(from_file, "models", "list", "--url", env["TUNESERVE_URL"])
    assert refused.returncode == 4 and "unauthorized" in refused.stderr
