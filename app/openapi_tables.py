"""What FastAPI's generated document cannot know, as data (used by :mod:`app.openapi`).

- the one error schema and the readiness schema;
- what each error status means, and the headers some carry;
- the statuses every authenticated route can answer, and those particular to a route;
- the links from each creating (or listing) operation to the operations on what it returned;
- the multipart form of the dataset upload, and an example of it that the service accepts.

Keep the tables true: ``tests/api/test_fuzz.py`` runs schemathesis against the document and
fails on any status, content type or body the document does not declare.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from app.datasets.service import TASKS

ERROR = "Error"

ERROR_SCHEMA: dict[str, Any] = {
    "title": ERROR,
    "type": "object",
    "description": "Every error the service returns has this shape.",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "additionalProperties": False,
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Stable, machine-readable: `not_found`, `invalid_input`, "
                    "`rate_limited`, ...",
                    "examples": ["not_found"],
                },
                "message": {"type": "string", "description": "For people; may change."},
                "details": {
                    "description": "More about the error (the fields that failed validation, "
                    "the limit that was reached, ...); `null` when there is nothing more."
                },
            },
        }
    },
}

READINESS_SCHEMA: dict[str, Any] = {
    "title": "Readiness",
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "checks": {
            "type": "object",
            "description": "`ok` or `unavailable: <reason>` per dependency.",
            "additionalProperties": {"type": "string"},
        },
    },
}

#: what each error status means here (the response's description)
ERROR_DESCRIPTIONS: dict[int, str] = {
    401: "No API key, a malformed `Authorization` header, or a key that is unknown, revoked or "
    "expired (`unauthorized`).",
    403: "The API key lacks the scope this operation needs (`forbidden`; scopes: `admin`, "
    "`train`, `infer`, `read`).",
    404: "Nothing with this id belongs to the caller's tenant (`not_found`).",
    409: "The request conflicts with the resource's state (for example a job that has already "
    "finished, or an `Idempotency-Key` reused with another body).",
    413: "The body, the upload, an input list or the tenant's stored bytes are past a limit "
    "(`body_too_large`, `payload_too_large`, ...; `details` names the limit).",
    415: "The upload is not `multipart/form-data`, or its file's format is not supported "
    "(`unsupported_media_type`).",
    422: "The request is invalid (`invalid_input`, `invalid_unicode`, `dataset_invalid`, ...; "
    "`details` says where).",
    429: "A rate limit, stream cap or quota was reached (`rate_limited`, `too_many_streams`, "
    "`quota_exceeded`, ...); retry after `Retry-After` seconds.",
    503: "The database or the queue is unavailable; try again shortly.",
    504: "No inference worker answered in time (`timeout`).",
}

#: response headers of some error statuses
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "`Bearer`: send `Authorization: Bearer <key>`.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}

#: statuses every operation under /v1 can answer: authentication, scopes, rate limits, and the
#: database the key is looked up in
AUTHENTICATED_STATUSES = (401, 403, 429, 503)
#: statuses of an operation with a path parameter (an id) or a request body
PATH_ID_STATUSES = (404,)
BODY_STATUSES = (413, 422)

#: the statuses particular to a route, beyond the rules above
EXTRA_STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/datasets"): (413, 415, 422),
    ("delete", "/v1/datasets/{dataset_id}"): (409,),
    ("post", "/v1/jobs"): (404, 409),
    ("post", "/v1/jobs/{job_id}/cancel"): (409,),
    ("get", "/v1/jobs/{job_id}/report"): (409,),
    ("get", "/v1/jobs/{job_id}/report/plots/{name}"): (409,),
    ("post", "/v1/sweeps"): (404, 409),
    ("post", "/v1/sweeps/{sweep_id}/cancel"): (409,),
    ("post", "/v1/models/{model_id}/predict"): (415, 504),
    # a failed build, an unusable artifact or base; as_full on a head that does not map
    ("get", "/v1/models/{model_id}/export"): (409, 422),
    ("get", "/readyz"): (503,),
}

#: successful statuses FastAPI cannot see: an idempotent replay answers 200 with the first
#: answer's body, where a creation answers 201
REPLAY_STATUSES: dict[tuple[str, str], tuple[str, str]] = {
    ("post", "/v1/jobs"): ("201", "200"),
    ("post", "/v1/sweeps"): ("201", "200"),
}


class Link(NamedTuple):
    """An OpenAPI link to the operation ``method path``, its parameters (and body fields)
    taken from the response by runtime expressions."""

    name: str
    method: str
    path: str
    parameters: dict[str, str]
    body: dict[str, str] | None = None


_CREATED = "$response.body#/id"
_FIRST_LISTED = "$response.body#/data/0/id"

#: (from method, from path, status) -> links from that response
LINKS: dict[tuple[str, str, str], list[Link]] = {
    ("post", "/v1/datasets", "201"): [
        Link("GetDataset", "get", "/v1/datasets/{dataset_id}", {"dataset_id": _CREATED}),
        Link(
            "PreviewDataset", "get", "/v1/datasets/{dataset_id}/preview", {"dataset_id": _CREATED}
        ),
        Link("DeleteDataset", "delete", "/v1/datasets/{dataset_id}", {"dataset_id": _CREATED}),
        Link("TrainOnDataset", "post", "/v1/jobs", {}, {"dataset_id": _CREATED}),
        Link("SweepOnDataset", "post", "/v1/sweeps", {}, {"dataset_id": _CREATED}),
    ],
    ("get", "/v1/datasets", "200"): [
        Link("GetListedDataset", "get", "/v1/datasets/{dataset_id}", {"dataset_id": _FIRST_LISTED}),
    ],
    ("post", "/v1/jobs", "201"): [
        Link("GetJob", "get", "/v1/jobs/{job_id}", {"job_id": _CREATED}),
        Link("CancelJob", "post", "/v1/jobs/{job_id}/cancel", {"job_id": _CREATED}),
        Link("JobEvents", "get", "/v1/jobs/{job_id}/events", {"job_id": _CREATED}),
        Link("JobMetrics", "get", "/v1/jobs/{job_id}/metrics", {"job_id": _CREATED}),
        Link("JobReport", "get", "/v1/jobs/{job_id}/report", {"job_id": _CREATED}),
        Link(
            "JobReportPlot",
            "get",
            "/v1/jobs/{job_id}/report/plots/{name}",
            {"job_id": _CREATED, "name": "curves.png"},
        ),
    ],
    ("get", "/v1/jobs", "200"): [
        Link("GetListedJob", "get", "/v1/jobs/{job_id}", {"job_id": _FIRST_LISTED}),
        Link("ListedJobEvents", "get", "/v1/jobs/{job_id}/events", {"job_id": _FIRST_LISTED}),
    ],
    ("get", "/v1/models", "200"): [
        Link("GetListedModel", "get", "/v1/models/{model_id}", {"model_id": _FIRST_LISTED}),
        Link(
            "PredictListedModel",
            "post",
            "/v1/models/{model_id}/predict",
            {"model_id": _FIRST_LISTED},
        ),
        Link("DeleteListedModel", "delete", "/v1/models/{model_id}", {"model_id": _FIRST_LISTED}),
        Link(
            "ExportListedModel", "get", "/v1/models/{model_id}/export", {"model_id": _FIRST_LISTED}
        ),
    ],
    ("post", "/v1/sweeps", "201"): [
        Link("GetSweep", "get", "/v1/sweeps/{sweep_id}", {"sweep_id": _CREATED}),
        Link("CancelSweep", "post", "/v1/sweeps/{sweep_id}/cancel", {"sweep_id": _CREATED}),
    ],
    ("get", "/v1/sweeps", "200"): [
        Link("GetListedSweep", "get", "/v1/sweeps/{sweep_id}", {"sweep_id": _FIRST_LISTED}),
    ],
    ("post", "/v1/keys", "201"): [
        Link("RotateKey", "post", "/v1/keys/{key_id}/rotate", {"key_id": _CREATED}),
        Link("RevokeKey", "delete", "/v1/keys/{key_id}", {"key_id": _CREATED}),
    ],
    ("post", "/v1/keys/{key_id}/rotate", "201"): [
        Link("RevokeRotatedKey", "delete", "/v1/keys/{key_id}", {"key_id": _CREATED}),
    ],
    ("post", "/v1/webhooks", "201"): [
        Link("GetWebhook", "get", "/v1/webhooks/{webhook_id}", {"webhook_id": _CREATED}),
        Link(
            "WebhookDeliveries",
            "get",
            "/v1/webhooks/{webhook_id}/deliveries",
            {"webhook_id": _CREATED},
        ),
        Link("DeleteWebhook", "delete", "/v1/webhooks/{webhook_id}", {"webhook_id": _CREATED}),
    ],
    ("get", "/v1/webhooks", "200"): [
        Link("GetListedWebhook", "get", "/v1/webhooks/{webhook_id}", {"webhook_id": _FIRST_LISTED}),
    ],
}

#: the multipart form of POST /v1/datasets (read by app.datasets.upload and .service)
UPLOAD_FORM: dict[str, Any] = {
    "title": "DatasetUpload",
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "The data: CSV (with a header row), JSON Lines or Parquet, streamed "
            "under `TUNESERVE_MAX_UPLOAD_BYTES`; for `image-classification` and "
            "`image-multilabel`, a zip of one folder per class, or of the images and a "
            "`labels.csv` / `labels.jsonl` (docs/datasets.md, Image datasets).",
        },
        "task": {
            "type": "string",
            "enum": list(TASKS),
            "default": TASKS[0],
            "description": "What the dataset is for.",
        },
        "name": {
            "type": "string",
            "description": "A name for people (default: the file's name); control "
            "characters are dropped and it is cut to 200 characters.",
        },
        "text_column": {"type": "string", "default": "text", "description": "The text column."},
        "label_column": {
            "type": "string",
            "default": "label",
            "description": "The label column (a list of labels for `text-multilabel`; in an "
            "image zip's labels file, `labels` for `image-multilabel`).",
        },
        "image_column": {
            "type": "string",
            "default": "image",
            "description": "Image tasks, labels-file layout: the column naming each image's "
            "path in the zip.",
        },
        "text_pair_column": {
            "type": "string",
            "default": "text_pair",
            "description": "The second text of `text-pair-classification`.",
        },
        "format": {
            "type": "string",
            "description": "`csv`, `jsonl` or `parquet` (or their media types) when the file's "
            "name does not tell (415 otherwise).",
            "examples": ["csv"],
        },
    },
}


#: a small valid upload (two classes of five), the example of the form
UPLOAD_EXAMPLE: dict[str, str] = {
    "file": "text,label\n"
    + "".join(f"the match ended with a late goal number {i},sport\n" for i in range(5))
    + "".join(f"the parliament passed the budget bill number {i},politics\n" for i in range(5)),
    "task": "text-classification",
    "name": "headlines",
    "format": "csv",
}


#: predict's multipart form (image models; parsed by app.models.predict_body)
PREDICT_FORM: dict[str, Any] = {
    "title": "PredictImages",
    "type": "object",
    "required": ["files"],
    "properties": {
        "files": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "Image files (PNG, JPEG, GIF, BMP or WEBP), one part each; at most "
            "`TUNESERVE_PREDICT_MAX_IMAGES`, each under `TUNESERVE_PREDICT_MAX_IMAGE_BYTES` and "
            "`TUNESERVE_PREDICT_MAX_IMAGE_PIXELS`.",
        },
        "top_k": {
            "type": "integer",
            "minimum": 1,
            "maximum": 1000,
            "default": 1,
            "description": "Labels returned per image, best first.",
        },
    },
}
