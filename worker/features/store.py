"""The feature cache on disk: immutable shards of pooled features, verified, evicted by LRU.

Layout under the artifact store: ``features/{namespace}/{shard}/`` holds ``features.safetensors``
(``features`` float32 ``[n, hidden]``, ``keys`` uint8 ``[n, 32]``) and ``manifest.json`` (the
file's sha256, ``n``, ``hidden``, the namespace's key parts, the creation time). A shard is
built in a ``.tmp-*`` directory, its manifest written last, and renamed into place; a shard is
removed by renaming it to ``.deleting-*`` first. A reader therefore sees a whole shard or none,
checks the sha256 before it uses any feature, and treats a shard that vanished (evicted) as a
miss. A shard's manifest mtime is its last use (eviction drops the least recently used first).
Nothing here is pickled; every failure of the cache is a miss, never a wrong feature.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from app import telemetry
from app.atomic import atomic_dir
from app.config import Settings, get_settings
from app.storage import Storage
from worker.features.identity import KEY_BYTES

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FEATURES = "features.safetensors"
#: a ``.tmp-*`` directory or a shard without manifest this old is debris of a crashed writer
STALE_SECONDS = 3600.0
_MANIFEST_SLACK = 1024  # room for the manifest when checking a shard against the budget


class ShardError(Exception):
    """A shard failed its check (bad manifest, sha256 mismatch, malformed tensors)."""


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    size: int
    last_used: float


@dataclass
class Found:
    """The features a lookup found: ``features[i]`` belongs to ``keys[positions[i]]``."""

    positions: list[int] = field(default_factory=list)
    features: torch.Tensor | None = None


def _key_list(keys: torch.Tensor) -> list[bytes]:
    raw = keys.contiguous().numpy().tobytes()
    return [raw[i : i + KEY_BYTES] for i in range(0, len(raw), KEY_BYTES)]


class FeatureCache:
    """Pooled features by (namespace, example key), within a disk budget of ``budget_bytes``."""

    def __init__(self, root: Path, budget_bytes: int) -> None:
        self.root = Path(root)
        self.budget_bytes = int(budget_bytes)
        #: what this instance counted (also sent to the fleet counters)
        self.stats: dict[str, int] = {
            "hits": 0,
            "misses": 0,
            "writes": 0,
            "evictions": 0,
            "rejected": 0,
        }

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> FeatureCache | None:
        """The cache under the artifact store's ``features/``; None when the budget is 0."""
        settings = settings or get_settings()
        if settings.feature_cache_bytes <= 0:
            return None
        root = Storage.from_settings(settings).path("features")
        return cls(root, settings.feature_cache_bytes)

    def count(self, name: str, amount: int) -> None:
        """Count locally and on the fleet counter ``tuneserve_feature_cache_{name}``."""
        if amount <= 0:
            return
        self.stats[name] += amount
        telemetry.count(f"tuneserve_feature_cache_{name}", amount)

    # -- reading --

    def lookup(self, namespace: str, keys: Sequence[bytes]) -> Found:
        """Which of ``keys`` (distinct) the namespace holds, with their verified features.
        Shards are read most recently used first; each one used is touched."""
        wanted = {key: position for position, key in enumerate(keys)}
        found = Found()
        chunks: list[torch.Tensor] = []
        for shard in sorted(self._shards(self.root / namespace), key=lambda s: -s.last_used):
            if not wanted:
                break
            try:
                manifest = self._manifest(shard.path, namespace)
                with safe_open(str(shard.path / FEATURES), framework="pt") as handle:
                    listed = _key_list(handle.get_tensor("keys"))
                if not any(key in wanted for key in listed):
                    continue
                verified_keys, features = self._load_verified(shard.path, manifest)
            except Exception as error:
                self._reject_unless_gone(shard.path, error)
                continue
            rows = []
            for row, key in enumerate(verified_keys):
                position = wanted.pop(key, None)
                if position is not None:
                    found.positions.append(position)
                    rows.append(row)
            chunks.append(features[rows])
            self._touch(shard.path)
        if chunks:
            found.features = torch.cat(chunks)
        return found

    def _manifest(self, shard: Path, namespace: str) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads((shard / MANIFEST).read_text(encoding="utf-8"))
        fields_ok = (
            isinstance(manifest.get("sha256"), str)
            and isinstance(manifest.get("n"), int)
            and isinstance(manifest.get("hidden"), int)
            and manifest.get("namespace") == namespace
        )
        if not fields_ok:
            raise ShardError(f"{shard}: malformed manifest")
        return manifest

    def _load_verified(
        self, shard: Path, manifest: dict[str, Any]
    ) -> tuple[list[bytes], torch.Tensor]:
        data = (shard / FEATURES).read_bytes()
        if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
            raise ShardError(f"{shard}: {FEATURES} fails its sha256 check")
        tensors = load_safetensors(data)
        keys, features = tensors.get("keys"), tensors.get("features")
        n, hidden = manifest["n"], manifest["hidden"]
        if (
            keys is None
            or features is None
            or keys.dtype != torch.uint8
            or tuple(keys.shape) != (n, KEY_BYTES)
            or features.dtype != torch.float32
            or tuple(features.shape) != (n, hidden)
        ):
            raise ShardError(f"{shard}: tensors do not match the manifest")
        return _key_list(keys), features

    def _reject_unless_gone(self, shard: Path, error: Exception) -> None:
        if not (shard / MANIFEST).exists():
            return  # evicted or removed by another process while we read: a miss
        log.warning("feature cache: rejecting shard %s: %s", shard, error)
        if self._remove(shard):
            self.count("rejected", 1)

    def _touch(self, shard: Path) -> None:
        # evicted meanwhile: the features already read are still correct
        with contextlib.suppress(OSError):
            os.utime(shard / MANIFEST)

    # -- writing --

    def store(
        self, namespace: str, parts: dict[str, Any], keys: Sequence[bytes], features: torch.Tensor
    ) -> Path | None:
        """Write one shard of ``features`` (row i is ``keys[i]``), then evict down to the
        budget. Returns the shard, or None when there is nothing to write or it cannot fit."""
        if not keys:
            return None
        features = features.detach().to("cpu", torch.float32).contiguous()
        if features.ndim != 2 or features.shape[0] != len(keys):
            raise ValueError("one feature row per key expected")
        key_tensor = torch.frombuffer(bytearray(b"".join(keys)), dtype=torch.uint8)
        data = save_safetensors(
            {"features": features, "keys": key_tensor.reshape(len(keys), KEY_BYTES)}
        )
        if len(data) + _MANIFEST_SLACK > self.budget_bytes:
            log.info("feature cache: a shard of %d bytes exceeds the budget; not cached", len(data))
            return None
        directory = self.root / namespace
        directory.mkdir(parents=True, exist_ok=True)
        shard = directory / f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        with atomic_dir(shard) as tmp:
            (tmp / FEATURES).write_bytes(data)
            manifest = {
                "format_version": 1,
                "namespace": namespace,
                "sha256": hashlib.sha256(data).hexdigest(),
                "n": len(keys),
                "hidden": int(features.shape[1]),
                "key_parts": parts,
                "created_at": time.time(),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        self.count("writes", 1)
        self.evict()
        return shard

    # -- budget --

    def shards(self) -> list[ShardInfo]:
        """Every complete shard of every namespace (debris of crashed writers is removed)."""
        if not self.root.is_dir():
            return []
        found: list[ShardInfo] = []
        for namespace in self.root.iterdir():
            if namespace.is_dir() and not namespace.name.startswith("."):
                found.extend(self._shards(namespace, clean=True))
        return found

    def total_bytes(self) -> int:
        return sum(shard.size for shard in self.shards())

    def evict(self) -> int:
        """Remove least recently used shards until the total is within the budget."""
        shards = sorted(self.shards(), key=lambda s: (s.last_used, s.path.name))
        total = sum(shard.size for shard in shards)
        evicted = 0
        for shard in shards:
            if total <= self.budget_bytes:
                break
            if self._remove(shard.path):
                evicted += 1
            total -= shard.size
        self.count("evictions", evicted)
        return evicted

    def _shards(self, namespace: Path, *, clean: bool = False) -> list[ShardInfo]:
        try:
            entries = list(namespace.iterdir())
        except OSError:
            return []
        found = []
        now = time.time()
        for entry in entries:
            try:
                if entry.name.startswith(".deleting-"):
                    if clean:
                        shutil.rmtree(entry, ignore_errors=True)
                    continue
                stale = now - entry.stat().st_mtime > STALE_SECONDS
                if entry.name.startswith(".") or not (entry / MANIFEST).is_file():
                    if clean and stale and entry.is_dir():  # a crashed writer's leftovers
                        self._remove(entry)
                    continue
                size = sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
                last_used = (entry / MANIFEST).stat().st_mtime
            except OSError:
                continue  # removed while we looked
            found.append(ShardInfo(entry, size, last_used))
        return found

    def _remove(self, path: Path) -> bool:
        """Rename ``path`` aside, then delete it; False when it was already gone."""
        doomed = path.with_name(f".deleting-{uuid.uuid4().hex}")
        try:
            os.rename(path, doomed)
        except OSError:
            return False
        shutil.rmtree(doomed, ignore_errors=True)
        return True
