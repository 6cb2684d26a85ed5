"""Schemathesis hooks of tests/api/test_fuzz.py (the CLI loads them through schemathesis.toml).

- **The run's own key is spared.** The fuzzer learns ids from responses, and GET /v1/usage and
  GET /v1/keys show its own key's id: revoking or rotating that key would turn the rest of the
  run into 401s. Requests that name it get a stand-in id instead (a 404); every other key,
  those the run created included, is fair game.
- **Real ids in bodies.** A random ``base_model`` or ``dataset_id`` stops a job or sweep at its
  first check; about half the bodies that have one get the run's real base model and dataset
  (``TUNESERVE_FUZZ_BASE_MODEL``, ``TUNESERVE_FUZZ_DATASET_ID``) instead, so that the fuzzer
  reaches what is checked after them.
- **Lone surrogates in JSON bodies.** Hypothesis never draws a lone UTF-16 surrogate, yet
  ``"\\ud800"`` is valid JSON that Python decodes into a string no database, file or response
  can encode (a 500, once). About one JSON body in ``SURROGATE_ONE_IN`` (chosen by a hash of
  the body, so a replayed example is sent the same way) is sent with ``\\ud800`` appended to
  one of its strings; the service must answer 4xx. Only the bytes sent change, not the case
  (schemathesis cannot validate such a string), so a failure's ``curl`` line lacks it: the
  API's log shows it.
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any

import schemathesis

#: the id (not the secret) of the key the run authenticates with
OWN_KEY_ID = os.environ.get("TUNESERVE_FUZZ_KEY_ID", "")
STAND_IN_KEY_ID = "key_000000000000000000000000"
SURROGATE_ONE_IN = 5
#: body fields given the run's real ids (when the body has them)
REAL_IDS = {
    "base_model": os.environ.get("TUNESERVE_FUZZ_BASE_MODEL", ""),
    "dataset_id": os.environ.get("TUNESERVE_FUZZ_DATASET_ID", ""),
}
LONE_SURROGATE = "\ud800"


def _digest(body: Any) -> int:
    return zlib.crc32(json.dumps(body, sort_keys=True).encode())


def _strings(value: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every string in ``value``, depth first."""
    found: list[tuple[Any, Any]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, str):
            found.append((value, key))
        elif isinstance(item, dict | list):
            found.extend(_strings(item))
    return found


def with_lone_surrogate(body: Any) -> bytes | None:
    """``body`` as JSON with a lone surrogate appended to one of its strings, for about one
    body in ``SURROGATE_ONE_IN``; ``None`` for the others and for bodies without a string."""
    digest = _digest(body)
    if digest % SURROGATE_ONE_IN:
        return None
    planted = json.loads(json.dumps(body))
    strings = _strings(planted)
    if not strings:
        return None
    container, key = strings[(digest // SURROGATE_ONE_IN) % len(strings)]
    container[key] += LONE_SURROGATE
    return json.dumps(planted).encode()


def ground(body: dict[str, Any]) -> None:
    """Give about half the bodies the run's real ids, in place."""
    if _digest(body) % 2:
        return
    for field, value in REAL_IDS.items():
        if value and isinstance(body.get(field), str):
            body[field] = value


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: Any) -> None:
    if OWN_KEY_ID and (case.path_parameters or {}).get("key_id") == OWN_KEY_ID:
        case.path_parameters["key_id"] = STAND_IN_KEY_ID
    if (case.media_type or "").endswith("json") and isinstance(case.body, dict | list):
        if isinstance(case.body, dict):
            ground(case.body)
        sent = with_lone_surrogate(case.body)
        if sent is not None:
            kwargs["data"] = sent  # requests sends `data` in place of the case's `json`
