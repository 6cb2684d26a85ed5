"""What every resource shares: its transport, and walking a list page by page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from tuneserve._async import AsyncTransport
from tuneserve._core import Call
from tuneserve._sync import SyncTransport
from tuneserve.models import APIModel, Page

T = TypeVar("T", bound=APIModel)


def path(template: str, *ids: str) -> str:
    """``template`` with each ``{}`` filled by an id, quoted as one path segment."""
    return template.format(*(quote(str(i), safe="") for i in ids))


class SyncResource:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def _get(self, url: str, model: type[T], params: Mapping[str, Any] | None = None) -> T:
        return model.model_validate(self._t.request(Call("GET", url, params=params)))

    def _pages(
        self,
        url: str,
        model: type[T],
        params: Mapping[str, Any],
        *,
        cursor_param: str = "cursor",
        start: Any = None,
    ) -> Iterator[T]:
        """Every item of a list, following ``next_cursor`` until the last page."""
        cursor = start
        while True:
            body = self._t.request(Call("GET", url, params={**params, cursor_param: cursor}))
            page = Page[model].model_validate(body)  # type: ignore[valid-type]
            yield from page.data
            if not page.next_cursor:
                return
            cursor = page.next_cursor


class AsyncResource:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def _get(self, url: str, model: type[T], params: Mapping[str, Any] | None = None) -> T:
        return model.model_validate(await self._t.request(Call("GET", url, params=params)))

    async def _pages(
        self,
        url: str,
        model: type[T],
        params: Mapping[str, Any],
        *,
        cursor_param: str = "cursor",
        start: Any = None,
    ) -> AsyncIterator[T]:
        cursor = start
        while True:
            body = await self._t.request(Call("GET", url, params={**params, cursor_param: cursor}))
            page = Page[model].model_validate(body)  # type: ignore[valid-type]
            for item in page.data:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor
