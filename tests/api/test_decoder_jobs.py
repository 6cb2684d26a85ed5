"""Jobs on a GPT-style decoder base: `dapt` (masked-LM pretraining) is refused with a clear 422
naming the base; the strategies that work on decoders are accepted."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import csv_bytes, sample_rows, upload
from tests.conftest import reset_caches

DECODER = "tiny-gpt2"


@pytest.fixture
def api_env(api_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The shared environment plus a base-models directory holding a GPT-2 config and a
    safetensors file of one tensor (the registry reads only its header)."""
    model = api_env.parent / "base-models" / DECODER
    model.mkdir(parents=True)
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_positions": 64}
    (model / "config.json").write_text(json.dumps(config))
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (model / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    monkeypatch.setenv("TUNESERVE_BASE_MODELS_DIR", str(model.parent))
    reset_caches()
    yield api_env


def _submit(client: TestClient, auth: dict[str, str], strategy: dict[str, Any]) -> Any:
    texts = upload(client, auth, csv_bytes(sample_rows(8)))
    assert texts.status_code == 201, texts.text
    body: dict[str, Any] = {"base_model": DECODER, "dataset_id": texts.json()["id"]}
    if strategy["name"] == "dapt":
        lines = "\n".join(f'"{text}"' for text, _ in sample_rows(8))
        unlabeled = upload(client, auth, f"text\n{lines}\n".encode(), task="unlabeled-text")
        assert unlabeled.status_code == 201, unlabeled.text
        strategy = {**strategy, "unlabeled_dataset_id": unlabeled.json()["id"]}
    return client.post("/v1/jobs", headers=auth, json={**body, "strategy": strategy})


def test_dapt_on_a_decoder_is_refused(client: TestClient, auth: dict[str, str]) -> None:
    r = _submit(client, auth, {"name": "dapt"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["details"]["field"] == "base_model"
    assert "decoder" in error["message"] and DECODER in error["message"]


@pytest.mark.parametrize("name", ["linear_probe", "full", "partial", "lora"])
def test_decoder_strategies_are_accepted(
    client: TestClient, auth: dict[str, str], name: str
) -> None:
    r = _submit(client, auth, {"name": name})
    assert r.status_code in (201, 202), r.text
