"""The dashboard's files as the API serves them: the page, its policy, and every script it
imports. What the page does is tested in a real browser (tests/integration/test_dashboard.py)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from app.contract.strategies import STRATEGY_CONFIGS
from app.contract.tasks import TASKS


def test_ui_redirects_to_the_page_with_a_strict_policy(client: TestClient) -> None:
    r = client.get("/ui", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    r = client.get("/ui/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    policy = r.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    # the contract's names reach the page; nothing is loaded from another origin
    assert f'data-strategies="{" ".join(STRATEGY_CONFIGS)}"' in r.text
    assert f'data-tasks="{" ".join(TASKS)}"' in r.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", r.text)
    assert "<script>" not in r.text  # no inline script


def test_every_module_the_page_imports_is_served(client: TestClient) -> None:
    """Follows the ES module imports from main.js: each file is served as JavaScript, and
    none imports anything from another origin."""
    seen: set[str] = set()
    todo = ["/ui/static/main.js"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        r = client.get(path)
        assert r.status_code == 200, path
        assert "javascript" in r.headers["content-type"], path
        for target in re.findall(r"""^import .*? from "([^"]+)";""", r.text, re.M):
            assert target.startswith("."), (path, target)
            base = path.rsplit("/", 1)[0]
            todo.append(_resolve(base, target))
    assert {"/ui/static/api.js", "/ui/static/views/job.js", "/ui/static/chart.js"} <= seen
    assert client.get("/ui/static/style.css").headers["content-type"].startswith("text/css")


def _resolve(base: str, target: str) -> str:
    parts = base.split("/")
    for piece in target.split("/"):
        if piece == "..":
            parts.pop()
        elif piece != ".":
            parts.append(piece)
    return "/".join(parts)


def test_static_files_stay_inside_their_folder(client: TestClient) -> None:
    for path in (
        "/ui/static/../__init__.py",
        "/ui/static/%2e%2e/__init__.py",
        "/ui/static/nope.js",
    ):
        assert client.get(path).status_code == 404, path
