"""Image serving benchmark: the real ImageNet MobileNetV2 behind ``tuneserve up``, side by side
with the raw in-process forward, in one run.

1. **Models**: a ``linear_probe`` and a ``full`` model (one epoch) on ``--train`` Fashion-MNIST
   images (28 x 28 grayscale PNGs in class folders), through the API, on the converted
   MobileNetV2 base with its processor at ``--image-size`` pixels (224: the model's own).
2. **Throughput**: ``--clients`` concurrent clients for ``--seconds`` each, sending test-set
   PNGs as multipart ``files``: one image per request, then ``--per-request`` per request; to
   the probe, then to the full model. Images per second, p50 and p99 per request; and the
   served labels' accuracy on the images sent (a check that serving predicts what was trained).
3. **Reference**: in this process, the plain fp32 encoder + the pooled output + a linear head
   at batch 32 on the same PNGs: decoding and processing included, and the forward alone.

    python -m bench.serving_images [--train 500] [--clients 16] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from bench.bbc import RESULTS_DIR, machine_info, print_table, timestamp, write_result
from bench.bench_images import make_base, upload
from bench.fashion_mnist import (
    DATA_DIR,
    LABEL_NAMES,
    class_folder_zip,
    folder_name,
    load_split,
    stratified_samples,
)
from bench.sweep_bbc import _start, _stop
from bench.timing import items_per_second


def _pngs(images: Any) -> list[bytes]:
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def _train(client: httpx.Client, base: str, dataset_id: str, strategy: str) -> str:
    body = {
        "base_model": base,
        "dataset_id": dataset_id,
        "strategy": {"name": strategy},
        "hyperparameters": {"epochs": 1 if strategy == "full" else 3, "batch_size": 32},
    }
    r = client.post("/v1/jobs", json=body)
    r.raise_for_status()
    job_id = r.json()["id"]
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            break
        time.sleep(2)
    if job["status"] != "succeeded":
        raise RuntimeError(f"{strategy} job {job_id} ended {job['status']}: {job.get('error')}")
    print(f"trained {strategy}: {job['model_id']} (val accuracy {job['metrics']['val_accuracy']})")
    return str(job["model_id"])


async def _load(
    url: str,
    headers: dict[str, str],
    model: str,
    pngs: list[bytes],
    truth: list[str],
    *,
    clients: int,
    per_request: int,
    seconds: float,
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[int] = []
    right = total = 0
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)

    async def client_loop(k: int, client: httpx.AsyncClient) -> None:
        nonlocal right, total
        i = k * per_request
        while time.monotonic() < stop_at:
            chosen = [(i + j) % len(pngs) for j in range(per_request)]
            files = [("files", (f"{n}.png", pngs[n], "image/png")) for n in chosen]
            started = time.perf_counter()
            r = await client.post(f"/v1/models/{model}/predict", files=files)
            if r.status_code == 200:
                latencies.append(time.perf_counter() - started)
                labels = [p["label"] for p in r.json()["predictions"]]
                right += sum(label == truth[n] for label, n in zip(labels, chosen, strict=True))
                total += len(chosen)
            else:
                errors.append(r.status_code)
            i += clients * per_request

    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=120
    ) as client:
        started = time.perf_counter()
        await asyncio.gather(*[client_loop(k, client) for k in range(clients)])
        wall = time.perf_counter() - started
    latencies.sort()
    return {
        "clients": clients,
        "images_per_request": per_request,
        "requests": len(latencies),
        "error_count": len(errors),
        "errors": errors[:10],
        "seconds": round(wall, 2),
        "images_per_s": round(len(latencies) * per_request / wall, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1)
        if latencies
        else None,
        "served_accuracy": round(right / total, 3) if total else None,
    }


def _raw_reference(base_dir: Path, pngs: list[bytes], seconds: float) -> dict[str, Any]:
    import torch
    from transformers import AutoImageProcessor, AutoModel

    processor = AutoImageProcessor.from_pretrained(base_dir)
    encoder = AutoModel.from_pretrained(base_dir).eval()
    batches = [pngs[i : i + 32] for i in range(0, len(pngs) - 31, 32)]

    def pixels(batch: list[bytes]) -> torch.Tensor:
        images = [Image.open(io.BytesIO(data)).convert("RGB") for data in batch]
        return processor(images=images, return_tensors="pt")["pixel_values"]

    with torch.inference_mode():  # the pooled features' width (1280 for MobileNetV2)
        width = encoder(pixel_values=pixels(batches[0][:1])).pooler_output.flatten(1).shape[1]
    head = torch.nn.Linear(width, len(LABEL_NAMES))

    def run(with_processing: bool) -> float:
        ready = [pixels(batch) for batch in batches]

        def step(index: int) -> None:
            values = pixels(batches[index]) if with_processing else ready[index]
            head(encoder(pixel_values=values).pooler_output.flatten(1))

        with torch.inference_mode():
            return items_per_second(batches, step, seconds)

    return {
        "threads": torch.get_num_threads(),
        "images_per_s_with_decoding": round(run(True), 1),
        "images_per_s_forward_only": round(run(False), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--queries", type=int, default=512, help="test-set images sent")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-request", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--port", type=int, default=8141)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "serving_images.json")
    args = parser.parse_args()

    train_images, train_labels = load_split("train", DATA_DIR)
    test_images, test_labels = load_split("test", DATA_DIR)
    (train,) = stratified_samples(train_images, train_labels, [args.train], args.seed)
    (queries,) = stratified_samples(test_images, test_labels, [args.queries], args.seed)
    pngs = _pngs(queries.images)
    truth = [folder_name(LABEL_NAMES[int(label)]) for label in queries.labels]

    work = Path(tempfile.mkdtemp(prefix="tuneserve-serving-images-"))
    models_dir, base, _ = make_base(work, args.image_size)
    result: dict[str, Any] = {
        "benchmark": "serving_images",
        "timestamp": timestamp(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine_info(),
        "base_model": base,
    }
    proc, key = _start(
        work / "data",
        args.port,
        {
            "TUNESERVE_BASE_MODELS_DIR": str(models_dir),
            "TUNESERVE_SERVING_METRICS_PORT": str(args.port + 2),
            "TUNESERVE_RATE_LIMIT_PER_MINUTE": "0",
        },
    )
    headers = {"Authorization": f"Bearer {key}"}
    url = f"http://127.0.0.1:{args.port}"
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            dataset = upload(client, "train", class_folder_zip(train, "train"))
            models = {s: _train(client, base, dataset["id"], s) for s in ("linear_probe", "full")}
        runs = []
        for strategy, model in models.items():
            for per_request in (1, args.per_request):
                asyncio.run(  # warm: the model loads on its first request
                    _load(url, headers, model, pngs, truth, clients=1, per_request=1, seconds=1)
                )
                measured = asyncio.run(
                    _load(
                        url,
                        headers,
                        model,
                        pngs,
                        truth,
                        clients=args.clients,
                        per_request=per_request,
                        seconds=args.seconds,
                    )
                )
                runs.append({"strategy": strategy, **measured})
                print(strategy, measured)
        result["served"] = runs
        write_result("serving_images", result, args.output)  # kept if the reference fails
    finally:
        _stop(proc)
    result["reference"] = _raw_reference(models_dir / base, pngs, args.seconds)
    print("reference", result["reference"])
    write_result("serving_images", result, args.output)
    print_table(
        "image predict through the API vs the raw forward",
        ["model", "images/request", "images/s", "p50 ms", "p99 ms", "served accuracy", "errors"],
        [
            [
                r["strategy"],
                str(r["images_per_request"]),
                str(r["images_per_s"]),
                str(r["p50_ms"]),
                str(r["p99_ms"]),
                str(r["served_accuracy"]),
                str(r["error_count"]),
            ]
            for r in runs
        ],
    )


if __name__ == "__main__":
    main()
