"""Fairness benchmark: one tenant saturates the inference worker while another sends 1-input
predicts; the small tenant's latency under each load, beside its latency on an idle worker, in
one run, with the real all-MiniLM-L6-v2 behind ``tuneserve up``.

Loads of the big tenant (``wrk`` with ``--heavy-clients`` connections, each sending the next
request as soon as one is answered):

- ``headlines``: 64 headlines per request (short texts: many rows, few tokens each);
- ``long``: 64 inputs of 2,000 characters (every row at the model's 128 tokens);
- ``issue``: 256 inputs of 100,000 characters, the request that, in the issue that asked for
  this worker, made another tenant's 1-input predict time out after 30 s.

The small tenant sends ``--small-requests`` 1-input requests one after another.

    python -m bench.serving_fairness [--seconds 30] [--heavy-clients 4]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bbc import RESULTS_DIR, machine_info
from bench.serving import _data, _finish, _submit, _upload, wrk_load
from bench.sweep_bbc import _start, _stop


def _second_key(data_dir: Path, tenant: str) -> str:
    env = {**os.environ, "TUNESERVE_DATA_DIR": str(data_dir)}
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "create", "--tenant", tenant],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"(ts_\S+)", out)
    assert match, out
    return match.group(1)


def _latencies(
    url: str, key: str, model: str, texts: list[str], until: float = float("inf")
) -> dict[str, Any]:
    seconds: list[float] = []
    codes: dict[int, int] = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        for text in texts:
            if time.monotonic() >= until:
                break
            started = time.perf_counter()
            r = c.post(f"/v1/models/{model}/predict", json={"inputs": [text]})
            seconds.append(time.perf_counter() - started)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
    seconds.sort()
    return {
        "requests": len(seconds),
        "status_codes": codes,
        "p50_ms": round(1000 * statistics.median(seconds), 1),
        "p99_ms": round(1000 * seconds[int(0.99 * (len(seconds) - 1))], 1),
        "max_ms": round(1000 * seconds[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--heavy-clients", type=int, default=4)
    parser.add_argument("--small-requests", type=int, default=100)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--scenarios", default="headlines,long,issue")
    parser.add_argument("--port", type=int, default=8151)
    parser.add_argument("--name", default="serving_fairness")
    args = parser.parse_args()

    data = _data(300, 0)
    queries: list[str] = data["queries"]
    heavy_bodies = {
        "headlines": [json.dumps({"inputs": queries[i : i + 64]}) for i in range(0, 640, 64)],
        "long": [json.dumps({"inputs": [(q + " ") * 40][:1] * 64}) for q in queries[:4]],
        "issue": [json.dumps({"inputs": ["lorem ipsum dolor sit amet " * 3703] * 256})],
    }
    data_dir = Path(tempfile.mkdtemp(prefix="tuneserve-fairness-"))
    proc, big_key = _start(
        data_dir,
        args.port,
        {
            "TUNESERVE_SERVING_METRICS_PORT": "0",
            # the heavy request (256 inputs of 100,000 characters, 25.6 MB) is past
            # the default 4 MiB body cap, which would refuse it at the door; let it in to
            # measure the batcher's fairness under it
            "TUNESERVE_MAX_JSON_BODY_BYTES": str(64 * 1024 * 1024),
            "TUNESERVE_RATE_LIMIT_PER_MINUTE": "0",
        },
    )
    url = f"http://127.0.0.1:{args.port}"
    result: dict[str, Any] = {
        "benchmark": "serving_fairness",
        "args": vars(args),
        "machine": machine_info(),
    }
    try:
        small_key = _second_key(data_dir, "small-tenant")
        models = {}
        for name, key in (("big", big_key), ("small", small_key)):
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
                dataset = _upload(client, f"headlines-{name}", *data["headlines"])
                job = _submit(client, dataset, "linear_probe", max_length=args.max_length)
                models[name] = _finish(client, [job])[0]["model_id"]
        small_texts = queries[1000 : 1000 + args.small_requests]
        _latencies(url, small_key, models["small"], small_texts[:5])  # load the model
        result["idle"] = _latencies(url, small_key, models["small"], small_texts)
        print("small tenant, idle worker:", result["idle"])
        for scenario in args.scenarios.split(","):
            heavy: dict[str, Any] = {}

            def flood(bodies: list[str] = heavy_bodies[scenario], out: dict = heavy) -> None:
                out.update(
                    wrk_load(
                        url,
                        big_key,
                        [models["big"]],
                        bodies,
                        clients=args.heavy_clients,
                        seconds=args.seconds,
                    )
                )

            thread = threading.Thread(target=flood)
            thread.start()
            time.sleep(3)  # the big tenant's requests are queued and running
            until = time.monotonic() + args.seconds - 5  # stop while the flood still runs
            small = _latencies(url, small_key, models["small"], small_texts, until)
            thread.join()
            result[scenario] = {"small_tenant": small, "big_tenant": heavy}
            print(f"{scenario}: small {small}\n  big {heavy}")
    finally:
        _stop(proc)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=2))
    print("wrote", out)


if __name__ == "__main__":
    main()
