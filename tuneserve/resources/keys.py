"""``client.keys`` (an admin key manages its tenant's keys) and ``client.base_models``."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, Literal

from tuneserve._core import Call
from tuneserve.models import BaseModelInfo, Key, KeyCreated
from tuneserve.resources._base import AsyncResource, SyncResource, path

_ONE = "/v1/keys/{}"
Scope = Literal["admin", "train", "infer", "read"]


def _create(scopes: Sequence[Scope], name: str | None, expires_in_days: int | None) -> Call:
    body: dict[str, Any] = {"scopes": list(scopes)}
    if name is not None:
        body["name"] = name
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    return Call("POST", "/v1/keys", json=body)


def _keys(body: Any) -> builtins.list[Key]:
    return [Key.model_validate(k) for k in body["data"]]


def _base_models(body: Any) -> builtins.list[BaseModelInfo]:
    return [BaseModelInfo.model_validate(m) for m in body["data"]]


class Keys(SyncResource):
    def list(self, *, include_revoked: bool = False) -> builtins.list[Key]:
        """The tenant's keys, newest first (their prefixes, never the keys)."""
        params = {"include_revoked": str(include_revoked).lower()}
        return _keys(self._t.request(Call("GET", "/v1/keys", params=params)))

    def create(
        self,
        scopes: Sequence[Scope],
        *,
        name: str | None = None,
        expires_in_days: int | None = None,
    ) -> KeyCreated:
        """A new key; ``.key`` holds it, shown this once."""
        return KeyCreated.model_validate(self._t.request(_create(scopes, name, expires_in_days)))

    def revoke(self, key_id: str) -> None:
        self._t.request(Call("DELETE", path(_ONE, key_id)))

    def rotate(self, key_id: str) -> KeyCreated:
        """A new key with the same name, scopes and expiry; the old one is revoked."""
        return KeyCreated.model_validate(
            self._t.request(Call("POST", path(_ONE + "/rotate", key_id)))
        )


class AsyncKeys(AsyncResource):
    async def list(self, *, include_revoked: bool = False) -> builtins.list[Key]:
        params = {"include_revoked": str(include_revoked).lower()}
        return _keys(await self._t.request(Call("GET", "/v1/keys", params=params)))

    async def create(
        self,
        scopes: Sequence[Scope],
        *,
        name: str | None = None,
        expires_in_days: int | None = None,
    ) -> KeyCreated:
        call = _create(scopes, name, expires_in_days)
        return KeyCreated.model_validate(await self._t.request(call))

    async def revoke(self, key_id: str) -> None:
        await self._t.request(Call("DELETE", path(_ONE, key_id)))

    async def rotate(self, key_id: str) -> KeyCreated:
        call = Call("POST", path(_ONE + "/rotate", key_id))
        return KeyCreated.model_validate(await self._t.request(call))


class BaseModels(SyncResource):
    def list(self) -> builtins.list[BaseModelInfo]:
        """The pretrained models this deployment can fine-tune."""
        return _base_models(self._t.request(Call("GET", "/v1/base-models")))


class AsyncBaseModels(AsyncResource):
    async def list(self) -> builtins.list[BaseModelInfo]:
        return _base_models(await self._t.request(Call("GET", "/v1/base-models")))
