"""Settings, read once from ``TUNESERVE_*`` environment variables.

Every default is the embedded one: SQLite and artifacts under ``TUNESERVE_DATA_DIR`` (``./var``)
and a Redis that ``tuneserve up`` starts itself. Production sets ``TUNESERVE_DATABASE_URL`` to
``postgresql+psycopg://...`` and ``TUNESERVE_BROKER_URL`` to ``redis://...``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNESERVE_", extra="ignore")

    data_dir: Path = Field(Path("./var"), description="Artifacts, SQLite file, embedded Redis.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means SQLite at DATA_DIR/tuneserve.db."
    )
    broker_url: str = Field(
        "", description="Redis URL for Celery; empty means the embedded Redis of `tuneserve up`."
    )
    embedded_redis_port: int = Field(6380, description="Port of the embedded Redis.")
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, description="Port the API listens on.")
    base_models_dir: Path | None = Field(
        None, description="Directory of HF-format model folders offered as base models."
    )
    include_packaged_models: bool = Field(
        True, description="Offer base models shipped in installed packages (all-MiniLM-L6-v2)."
    )
    max_upload_bytes: int = Field(100 * 1024 * 1024, description="Upload byte cap (413 above).")
    # --- what an uploaded dataset may expand to (docs/datasets.md, "Limits") ---
    max_columns: int = Field(
        1000, description="Most columns an uploaded table may have (422 too_many_columns)."
    )
    max_cell_bytes: int = Field(
        1024 * 1024,
        description="Most UTF-8 bytes of one cell of an upload (413 cell_too_large); a CSV or "
        "JSONL line may hold 8 times this many characters (413 row_too_large).",
    )
    max_dataset_bytes: int = Field(
        256 * 1024 * 1024,
        description="Most decoded bytes of an upload (413 dataset_too_large): CSV and JSONL "
        "the file's size, Parquet the uncompressed and then decoded size of the mapped columns.",
    )
    max_rows: int = Field(1_000_000, description="Most data rows of an upload (422 too_many_rows).")
    max_labels: int = Field(
        1000, description="Most distinct labels of an upload (422 too_many_labels)."
    )
    max_label_chars: int = Field(
        200, description="Longest label of an upload, in characters (422 label_too_long)."
    )
    dataset_labels_shown: int = Field(
        100,
        description="Label counts shown in a dataset and each list page (the most frequent); "
        "the rest through GET /v1/datasets/{id}/labels.",
    )
    preview_max_rows: int = Field(100, description="Most rows a dataset preview returns.")
    preview_cell_chars: int = Field(
        1000, description="A preview's cells are cut to this many characters (and marked)."
    )
    min_examples_per_class: int = Field(
        5, description="Classes with fewer examples are reported as too small."
    )
    # --- image datasets: the zip and the images in it (docs/datasets.md, "Image datasets") ---
    image_zip_max_members: int = Field(
        100_000, description="Most members (files and folders) of an image zip (422)."
    )
    image_zip_max_bytes: int = Field(
        1024**3,
        description="Most uncompressed bytes of all members of an image zip, from the central "
        "directory and counted again while reading (413).",
    )
    image_zip_max_ratio: float = Field(
        100.0,
        gt=1.0,
        description="Most uncompressed / compressed size of one member of 1 MiB or more (413).",
    )
    image_max_file_bytes: int = Field(
        64 * 1024**2, description="Most uncompressed bytes of one image file in a zip (413)."
    )
    image_max_pixels: int = Field(
        40_000_000,
        description="Most pixels (width x height) of one image: Pillow's MAX_IMAGE_PIXELS; a "
        "larger image (a decompression bomb) refuses the upload (413).",
    )
    image_store_max_side: int = Field(
        256,
        ge=8,
        description="Images are stored (canonical Parquet) with their longer side at most this "
        "many pixels, aspect kept; smaller ones at their size.",
    )
    image_max_corrupt_share: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Share of the images that may be undecodable (listed, dropped) before the "
        "upload is refused.",
    )
    predict_max_inputs: int = Field(256, description="Most inputs in one predict request.")
    predict_max_tokens: int = Field(
        32768,
        description="Most tokens (after truncation to the model's length) in one predict "
        "request; 413 beyond it.",
    )
    predict_max_images: int = Field(
        64, ge=1, description="Most images in one predict request to an image model (413)."
    )
    predict_max_image_bytes: int = Field(
        8 * 1024**2, description="Most bytes of one image file in a predict request (413)."
    )
    predict_max_image_pixels: int = Field(
        40_000_000,
        description="Most pixels (width x height, read from the image's header before any "
        "pixel is decoded) of one image in a predict request (413).",
    )
    predict_max_body_bytes: int = Field(
        32 * 1024**2,
        description="Largest body of a predict request (multipart image files or JSON with "
        "base64 images), counted while reading, before authentication (413).",
    )
    predict_timeout_s: float = Field(
        30.0, description="A predict request's deadline: 504 after it, and no work after it."
    )
    auth_cache_s: float = Field(
        1.0,
        description="How long an API process remembers a key (and, for predict, the key's "
        "model): a revoked or expired key, a changed scope or a model deleted elsewhere takes "
        "effect within this time (0: look up on every request).",
    )
    # --- limits per request, per key, per tenant (docs/security.md) ---
    max_json_body_bytes: int = Field(
        4 * 1024 * 1024,
        description="Largest request body of any route but the dataset upload (413 above, "
        "counted while reading, before authentication).",
    )
    rate_limit_per_minute: int = Field(
        3000, description="Requests one API key may make per minute (429 beyond; 0: no limit)."
    )
    rate_limit_burst: int = Field(
        300, description="Requests one API key may make at once above its steady rate."
    )
    auth_failures_per_minute: int = Field(
        30,
        description="Failed authentications one client address may make per minute before it "
        "gets 429 without a lookup (0: no limit).",
    )
    max_active_jobs: int = Field(
        100, description="Queued plus running jobs one tenant may have (429 beyond)."
    )
    max_datasets: int = Field(1000, description="Datasets one tenant may keep (429 beyond).")
    max_models: int = Field(
        1000, description="Models one tenant may keep; a job is refused when it would pass it."
    )
    max_stored_bytes: int = Field(
        50 * 1024**3,
        description="Bytes of datasets and models one tenant may keep (413 beyond).",
    )
    public_url: str = Field(
        "",
        description="The URL clients reach the API at (e.g. https://tuneserve.example.com), "
        "used for absolute links; empty: links are paths (never built from the Host header).",
    )
    model_cache_size: int = Field(
        256,
        description="Fine-tuned models an inference worker keeps loaded (a head or an adapter "
        "counts as one; a shared encoder is counted once by bytes).",
    )
    model_cache_bytes: int = Field(
        4 * 1024**3, description="Memory budget of the inference worker's model cache."
    )
    serving_max_batch_examples: int = Field(
        64, description="Most inputs in one forward pass of the inference batcher."
    )
    serving_max_batch_tokens: int = Field(
        0,
        description="Most padded tokens in one forward pass; 0 means 512 on CPU and 16384 "
        "on CUDA (one forward must stay short so that a small request never waits long).",
    )
    serving_max_wait_ms: float = Field(
        5.0, description="How long an idle batcher waits for more requests to fill a batch."
    )
    serving_max_pending_inputs: int = Field(
        4096,
        description="Inputs an inference worker holds in memory waiting for the device (one "
        "tenant at most half of them); beyond it, requests wait in Redis.",
    )
    serving_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Precision of inference: auto is bf16 on CUDA (fp16 without bf16) and fp32 "
        "on CPU; a reduced precision is used only for models whose manifest records that it "
        "agrees with fp32 on their validation set.",
    )
    serving_min_agreement: float = Field(
        0.99,
        description="Share of validation predictions a reduced precision must give like fp32 "
        "for a model to be served in it.",
    )
    serving_torch_threads: int = Field(
        0,
        description="Threads of the inference worker's forward pass on a CPU; 0 means one "
        "fewer than the cores (the API, tokenizing and Redis need the other one).",
    )
    serving_metrics_port: int = Field(
        9101, description="Port of the inference worker's Prometheus metrics (0: none)."
    )
    feature_cache_bytes: int = Field(
        2 * 1024**3,
        description="Disk budget of the feature cache (pooled encoder features reused across "
        "jobs); least recently used entries are evicted beyond it; 0 disables the cache.",
    )
    lease_seconds: int = Field(120, description="A training worker's lease on its job.")
    progress_write_interval_s: float = Field(
        2.0, description="Least time between progress writes from the training loop."
    )
    max_attempts: int = Field(2, description="Attempts a job gets before it fails.")
    reaper_interval_s: float = Field(
        30.0, description="How often the reaper looks for expired leases and lost messages."
    )
    resend_after_s: float = Field(
        60.0,
        description="A job queued this long whose message is neither waiting in the broker "
        "nor delivered to a worker less than this long ago is sent again (a broker restart "
        "lost it, or the worker holding it died).",
    )
    checkpoint_every_steps: int = Field(
        200, description="Steps between checkpoints (one is also written at each epoch end)."
    )
    # --- live event streams (SSE of GET /v1/jobs/{id}/events) ---
    max_streams_per_tenant: int = Field(
        10,
        description="Live event streams one tenant may hold open at once, across every API "
        "process (429 too_many_streams beyond it).",
    )
    stream_ping_interval_s: float = Field(
        15.0, gt=0, description="Seconds between keep-alive comments (': ping') on a stream."
    )
    stream_poll_interval_s: float = Field(
        1.0,
        gt=0,
        description="How often a stream reads its job's new events (one short-lived "
        "connection each time; none is held in between).",
    )
    stream_slot_ttl_s: float = Field(
        30.0,
        gt=0,
        description="How long a stream's place in its tenant's cap outlives its last refresh "
        "(every third of this): the places of an API process that died free themselves "
        "within this time.",
    )
    # --- webhooks (docs/webhooks.md) ---
    webhooks_max_per_tenant: int = Field(
        20, ge=0, description="Webhook endpoints one tenant may register (429 beyond)."
    )
    webhook_allow_private: bool = Field(
        False,
        description="Allow webhook URLs and deliveries to loopback, private, link-local and "
        "other non-public addresses (refused by default, checked on the resolved address at "
        "every attempt).",
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a webhook delivery waits to connect, send and hear back."
    )
    webhook_max_attempts: int = Field(
        10, ge=1, description="Attempts a webhook delivery gets before it is marked failed."
    )
    webhook_backoff_s: list[float] = Field(
        [10, 30, 120, 600, 3600, 10800],
        min_length=1,
        description="Seconds before each retry of a webhook delivery (JSON list); the last "
        "value repeats.",
    )
    webhook_sweep_interval_s: float = Field(
        10.0,
        gt=0,
        description="How often the maintenance worker looks for webhook deliveries that are "
        "due (retries, and those whose message was lost).",
    )
    webhook_retention_days: float = Field(
        30.0, gt=0, description="Days a delivered or failed webhook delivery is kept."
    )

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'tuneserve.db').resolve()}"

    @property
    def celery_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        try:  # the embedded Redis's password, generated by the first `tuneserve up` here
            password = self.embedded_redis_password_file.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            password = ""
        auth = f":{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.embedded_redis_port}/0"

    @property
    def embedded_redis_password_file(self) -> Path:
        return self.data_dir.resolve() / "redis" / "password"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir.resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
