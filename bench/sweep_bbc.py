"""A strategy bake-off on BBC News with the real all-MiniLM-L6-v2, through the HTTP API.

Starts ``tuneserve up`` (embedded Redis, SQLite, a real train worker and infer worker) in a
fresh data directory, uploads stratified BBC train / validation / test CSVs, submits
``POST /v1/sweeps`` with the strategies asked for (default ``linear_probe``, ``lora``,
``full``), polls the leaderboard until the sweep settles, asks the promoted model for a few
predictions, saves the winner's plots, and writes ``bench/results/{--name}.json``.

    python -m bench.sweep_bbc --train 240 --validation 200 --test 200 --epochs 4
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sklearn.model_selection import train_test_split

from bench.bbc import RESULTS_DIR, load_bbc, machine_info

SENTENCES = [
    "The striker scored twice as the club won the league title on Saturday.",
    "Shares fell sharply after the bank reported a drop in quarterly profits.",
    "The new smartphone chip promises faster downloads and longer battery life.",
    "The prime minister faced questions from MPs over the election pledge.",
    "The actress won an Oscar for her role in the film, which topped the box office.",
]


def _csv(texts: list[str], labels: list[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["text", "label"])
    writer.writerows(zip(texts, labels, strict=True))
    return buf.getvalue().encode()


def _splits(train: int, validation: int, test: int, seed: int) -> dict[str, tuple[list, list]]:
    texts, labels, names = load_bbc()
    named = [names[i] for i in labels]
    rest_x, train_x, rest_y, train_y = train_test_split(
        texts, named, test_size=train, stratify=named, random_state=seed
    )
    rest_x, val_x, rest_y, val_y = train_test_split(
        rest_x, rest_y, test_size=validation, stratify=rest_y, random_state=seed
    )
    _, test_x, _, test_y = train_test_split(
        rest_x, rest_y, test_size=test, stratify=rest_y, random_state=seed
    )
    return {"train": (train_x, train_y), "validation": (val_x, val_y), "test": (test_x, test_y)}


def _start(
    data_dir: Path, port: int, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``tuneserve up`` in ``data_dir`` on ``port`` (Redis on port + 1); returns the process
    and the first API key it printed."""
    env = {
        **os.environ,
        "TUNESERVE_DATA_DIR": str(data_dir),
        "TUNESERVE_EMBEDDED_REDIS_PORT": str(port + 1),
        "HF_HUB_OFFLINE": "1",
        **(extra_env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "up", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        print("  up:", line.rstrip())
        match = re.search(r"first API key \(shown once, store it now\): (\S+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise RuntimeError("tuneserve up did not print an API key")


def _stop(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C to ``tuneserve up`` (it stops its children), a kill after a minute."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, default=240)
    parser.add_argument("--validation", type=int, default=200)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--strategies", default="linear_probe,lora,full")
    parser.add_argument("--learning-rates", default="", help="comma-separated; default: each's")
    parser.add_argument("--metric", default="val_macro_f1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--temperature-scaling", action="store_true", help="fit a temperature on validation"
    )
    parser.add_argument("--name", default="sweep_bbc", help="stem of the result files")
    args = parser.parse_args()

    splits = _splits(args.train, args.validation, args.test, args.seed)
    data_dir = Path(tempfile.mkdtemp(prefix="tuneserve-sweep-"))
    proc, key = _start(data_dir, args.port)
    headers = {"Authorization": f"Bearer {key}"}
    base = f"http://127.0.0.1:{args.port}"
    started = time.monotonic()
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            ids = {}
            for name, (texts, labels) in splits.items():
                r = client.post(
                    "/v1/datasets",
                    files={"file": (f"bbc-{name}.csv", _csv(texts, labels), "text/csv")},
                    data={"task": "text-classification", "name": f"bbc-{name}"},
                )
                r.raise_for_status()
                ids[name] = r.json()["id"]
            body: dict[str, Any] = {
                "base_model": "all-MiniLM-L6-v2",
                "dataset_id": ids["train"],
                "validation_dataset_id": ids["validation"],
                "test_dataset_id": ids["test"],
                "strategies": [{"name": s} for s in args.strategies.split(",")],
                "metric": args.metric,
                "hyperparameters": {
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "max_length": args.max_length,
                    "seed": args.seed,
                    "temperature_scaling": args.temperature_scaling,
                },
            }
            if args.learning_rates:
                body["learning_rates"] = [float(x) for x in args.learning_rates.split(",")]
            r = client.post("/v1/sweeps", json=body)
            if r.status_code != 201:
                raise RuntimeError(f"sweep refused: {r.status_code} {r.text}")
            sweep = r.json()
            print("sweep", sweep["id"], "candidates", len(sweep["leaderboard"]))
            while sweep["status"] == "running":
                time.sleep(10)
                sweep = client.get(f"/v1/sweeps/{sweep['id']}").json()
                states = [(e["strategy"], e["status"]) for e in sweep["leaderboard"]]
                print(f"  {time.monotonic() - started:6.0f}s {sweep['status']} {states}")
            wall = time.monotonic() - started
            predictions = None
            if sweep.get("model_id"):
                r = client.post(
                    f"/v1/models/{sweep['model_id']}/predict", json={"inputs": SENTENCES}
                )
                predictions = [p["label"] for p in r.json()["predictions"]]
                winner = sweep["winner_job_id"]
                for plot in ("curves", "confusion_matrix", "calibration"):
                    png = client.get(f"/v1/jobs/{winner}/report/plots/{plot}.png")
                    if png.status_code == 200:
                        (RESULTS_DIR / f"{args.name}_{plot}.png").write_bytes(png.content)
            reports = {
                e["job_id"]: client.get(f"/v1/jobs/{e['job_id']}/report").json()
                for e in sweep["leaderboard"]
                if e["status"] == "succeeded"
            }
    finally:
        _stop(proc)
    result = {
        "benchmark": "sweep_bbc",
        "args": vars(args),
        "machine": machine_info(),
        "wall_seconds": round(wall, 1),
        "sweep": sweep,
        "predictions": dict(zip(SENTENCES, predictions or [], strict=False)),
        "selections": {job: rep.get("selection") for job, rep in reports.items()},
        "test": {
            job: {k: rep["test"][k] for k in ("accuracy", "macro_f1", "loss")}
            for job, rep in reports.items()
            if rep.get("test")
        },
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["sweep"]["leaderboard"], indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
