"""The app's routes as a flat list, and which of them a request's path names.

FastAPI 0.165 keeps an included router whole (its routes carry the full path), so
``app.routes`` is a tree; the metrics label of a request answered before routing and the
``Allow`` header of a 405 both need the leaf routes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import Scope


def leaf_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        included = getattr(getattr(route, "original_router", None), "routes", None)
        if included is not None:
            yield from leaf_routes(included)
        else:
            yield route


def matching_route(scope: Scope) -> BaseRoute | None:
    """The route that serves ``scope`` (path and method), if any."""
    for route in leaf_routes(getattr(scope.get("app"), "routes", ())):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


def allowed_methods(app: Any, scope: Scope) -> list[str]:
    """Every method some route serves at ``scope``'s path."""
    methods: set[str] = set()
    for route in leaf_routes(getattr(app, "routes", ())):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)
