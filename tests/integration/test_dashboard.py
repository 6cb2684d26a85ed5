"""The dashboard at ``/ui`` in a real headless browser: Debian's ``chromium`` driven by
Playwright, against a real uvicorn API, Celery worker and inference worker.

One user's session, as a user would click through it: sign in with a key; upload a CSV and read
its report; start a job from the form; watch its progress and curves grow over the event
stream; read the confusion matrix, the per-class table and the audit; ask the model for a
prediction; read a sweep's leaderboard; sign out. Screenshots of each page are saved under
``TUNESERVE_TEST_ARTIFACTS`` (default ``test-artifacts/``). The page must make no request to
another origin and log no error (a policy violation is logged as one)."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterator
from pathlib import Path

import playwright.sync_api as sync_api  # a test dependency (pyproject's test extra)
import pytest

from tests.integration.conftest import ROOT, ApiProcess, Stack, api_beside
from tests.integration.test_model_families import class_folder_zip
from worker.testing import learnable_examples, learnable_images

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TUNESERVE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "dashboard"
#: what a hostile dataset name would run if the page ever put API values in as markup
HOSTILE_NAME = '<img src=x onerror="window.__owned=1">reviews'

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    pytest.skip("no chromium here (`apt-get install chromium`)", allow_module_level=True)

pytestmark = pytest.mark.integration
Page = sync_api.Page


@pytest.fixture(scope="module")
def api(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    log_dir = tmp_path_factory.mktemp("dashboard")
    with api_beside(stack, log_dir, stream_poll_interval_s="0.25") as process:
        yield process


@pytest.fixture
def page(api: ApiProcess) -> Iterator[tuple[Page, list[str], list[str]]]:
    """A fresh browser page, the errors it logs and the URLs it requests."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.set_default_timeout(30_000)
            yield page, errors, requests
        finally:
            browser.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def imbalanced_csv(path: Path) -> Path:
    """The alpha/beta task with 3.75 times more A than B (the audit warns of it)."""
    a_texts, a_labels = learnable_examples(150, seed=3)
    rows = [(t, lab) for t, lab in zip(a_texts, a_labels, strict=True) if lab == "A"]
    rows += [(t, lab) for t, lab in zip(a_texts, a_labels, strict=True) if lab == "B"][:40]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "stars"])
        writer.writerows(rows)
    return path


def test_upload_train_watch_curves_and_predict_in_a_browser(
    stack: Stack, api: ApiProcess, page: tuple[Page, list[str], list[str]], tmp_path: Path
) -> None:
    p, errors, requests = page
    # a sweep started through the API, read later on its page
    dataset_for_sweep = stack.upload_learnable(20, seed=5)
    r = stack.client.post(
        "/v1/sweeps",
        headers=stack.headers,
        json={
            "base_model": "tiny-bert",
            "dataset_id": dataset_for_sweep,
            "strategies": [{"name": "linear_probe"}, {"name": "full"}],
            "learning_rates": [1e-3],
            "hyperparameters": {"epochs": 2},
        },
    )
    assert r.status_code == 201, r.text
    sweep_id = r.json()["id"]

    # a wrong key is refused on the sign-in form
    p.goto(api.url + "/ui")
    p.get_by_label("API key").fill("ts_not-a-key")
    p.get_by_role("button", name="Sign in").click()
    p.get_by_role("alert").wait_for()
    assert "key" in p.get_by_role("alert").inner_text().lower()
    errors.clear()  # the 401 above is logged by the browser as a failed resource
    p.get_by_label("API key").fill(stack.key)
    p.get_by_role("button", name="Sign in").click()
    p.wait_for_selector("[data-testid=tenant]")
    shot(p, "01-signed-in")

    # upload a CSV with its own column names and a hostile name; read the report
    p.get_by_role("link", name="Datasets").click()
    p.set_input_files("input[name=file]", str(imbalanced_csv(tmp_path / "reviews.csv")))
    p.fill("input[name=name]", HOSTILE_NAME)
    p.locator("summary").click()
    p.fill("input[name=text_column]", "review")
    p.fill("input[name=label_column]", "stars")
    p.get_by_role("button", name="Upload").click()
    counts = p.locator("[data-testid=label-counts]")
    counts.wait_for()
    assert counts.locator("tbody tr").count() == 2
    assert "150" in counts.inner_text() and "40" in counts.inner_text()
    assert p.locator("h1").inner_text().startswith(HOSTILE_NAME)  # shown as text
    assert p.evaluate("window.__owned") is None
    shot(p, "02-dataset-report")

    # start a job from the form: long enough to be watched, no early stop
    p.get_by_role("button", name="Train a model").click()
    p.select_option("select[name=base_model]", "tiny-bert")
    p.select_option("select[name=strategy]", "full")
    p.fill("input[name=epochs]", "12")
    p.fill("input[name=learning_rate]", "1e-3")
    p.fill("input[name=batch_size]", "8")
    p.fill("textarea[name=hyperparameters]", '{"early_stopping": {"enabled": false}}')
    p.get_by_role("button", name="Start job").click()
    p.wait_for_url("**/ui/#/jobs/job_*")
    job_id = p.url.rsplit("/", 1)[1]

    # the loss curve grows while the job runs, from the event stream
    curve = p.locator("[data-testid=curve-loss]")
    seen: list[int] = []
    deadline = time.monotonic() + 180
    while p.locator("[data-testid=status]").first.inner_text() != "succeeded":
        assert time.monotonic() < deadline, f"job not done; seen points {seen}"
        points = int(curve.get_attribute("data-points") or 0)
        if points and (not seen or points != seen[-1]):
            seen.append(points)
            if len(seen) == 2:
                shot(p, "03-job-running")
        p.wait_for_timeout(100)
    assert len(seen) >= 2, f"the curve never grew while the job ran: {seen}"
    assert seen == sorted(seen)
    # once over, the page holds every point the API recorded, and the report
    series = stack.client.get(f"/v1/jobs/{job_id}/metrics", headers=stack.headers).json()
    expected = sum(
        1
        for point in series["series"]
        if ("loss" if point["split"] == "train" else "val_loss") in point["values"]
    )
    p.wait_for_function(
        "n => document.querySelector('[data-testid=curve-loss]').dataset.points == n", arg=expected
    )
    job = stack.client.get(f"/v1/jobs/{job_id}", headers=stack.headers).json()
    report = stack.client.get(f"/v1/jobs/{job_id}/report", headers=stack.headers).json()
    matrix = p.locator("[data-testid=confusion-validation]")
    matrix.wait_for()
    cells = [int(c) for c in matrix.locator("tbody td").all_inner_texts()]
    assert cells == [n for row in report["validation"]["confusion_matrix"]["matrix"] for n in row]
    per_class = p.locator("[data-testid=per-class] tbody tr")
    assert per_class.count() == len(report["validation"]["per_class"])
    assert p.locator("[data-testid=percent]").inner_text() == "100.0%"
    codes = [f["code"] for f in job["audit"]]
    assert "class_imbalance" in codes
    audit = p.locator("[data-testid=audit]").inner_text()
    assert all(code in audit for code in codes)
    # left to auto: class weights (the data are imbalanced), shown with the reason
    assert [c["field"] for c in job["auto"]] == ["class_weights", "temperature_scaling"]
    assert "imbalanced" in p.locator("[data-testid=auto]").inner_text()
    shot(p, "04-job-succeeded")

    # try the model: the page shows the labels the API gives for the same texts
    texts = ["alpha alpha alpha vaka", "beta beta beta nuri"]
    p.get_by_test_id("model-link").click()
    p.get_by_label("inputs").fill("\n".join(texts))
    p.get_by_role("button", name="Predict").click()
    labels = p.locator("[data-testid=predicted-label]")
    labels.first.wait_for()
    r = stack.client.post(
        f"/v1/models/{job['model_id']}/predict", headers=stack.headers, json={"inputs": texts}
    )
    assert labels.all_inner_texts() == [x["label"] for x in r.json()["predictions"]]
    shot(p, "05-model-prediction")

    # the sweep's leaderboard, once it has promoted a winner
    p.goto(f"{api.url}/ui/#/sweeps/{sweep_id}")
    p.get_by_role("link", name="Try the promoted model →").wait_for(timeout=120_000)
    board = p.locator("[data-testid=leaderboard] tbody tr")
    assert board.count() == 2
    sweep = stack.client.get(f"/v1/sweeps/{sweep_id}", headers=stack.headers).json()
    assert board.first.locator("td").nth(1).inner_text() == sweep["leaderboard"][0]["strategy"]
    shot(p, "06-sweep-leaderboard")

    # lists
    for section in ("Models", "Datasets", "Jobs"):
        p.get_by_role("link", name=section, exact=True).click()
        p.locator(f"[data-testid={section.lower()}]").wait_for()
    p.locator("[data-testid=jobs]").get_by_text(job_id).wait_for()
    shot(p, "07-jobs")

    # sign out: the key is gone from the tab
    p.get_by_role("button", name="Sign out").click()
    p.get_by_label("API key").wait_for()
    assert p.evaluate("sessionStorage.length") == 0

    assert errors == [], errors
    foreign = [u for u in requests if not u.startswith((api.url, "data:", "blob:"))]
    assert foreign == [], foreign


def test_an_image_dataset_job_and_prediction_in_a_browser(
    stack: Stack, api: ApiProcess, page: tuple[Page, list[str], list[str]], tmp_path: Path
) -> None:
    """Images through the same pages: a zip of class folders uploaded, `auto` on the tiny
    ResNet started from the form (its bake-off table), image files picked for the try-it box
    (shown as thumbnails from blob: URLs) and the labels the API gives for the same files."""
    p, errors, requests = page
    archive = tmp_path / "images.zip"
    archive.write_bytes(class_folder_zip(10, 4))
    p.goto(api.url + "/ui")
    p.get_by_label("API key").fill(stack.key)
    p.get_by_role("button", name="Sign in").click()
    p.get_by_role("link", name="Datasets").click()
    p.set_input_files("input[name=file]", str(archive))
    p.select_option("select[name=task]", "image-classification")
    p.get_by_role("button", name="Upload").click()
    counts = p.locator("[data-testid=label-counts]")
    counts.wait_for()
    assert counts.locator("tbody tr").count() == 2

    p.get_by_role("button", name="Train a model").click()
    p.select_option("select[name=base_model]", "tiny-resnet")
    p.select_option("select[name=strategy]", "auto")  # a bake-off: its table on the page
    p.fill("input[name=epochs]", "3")
    p.get_by_role("button", name="Start job").click()
    p.wait_for_url("**/ui/#/jobs/job_*")
    sync_api.expect(p.locator("h1 [data-testid=status]")).to_have_text("succeeded", timeout=180_000)
    board = p.locator("[data-testid=bakeoff] tbody tr")
    sync_api.expect(board).to_have_count(3)  # linear_probe, lora, full on images
    assert board.locator("strong").count() == 1  # the winner
    shot(p, "08-image-auto-bakeoff")

    images, _ = learnable_images(2, seed=42)  # two of each class
    paths = []
    for index, data in enumerate(images):
        path = tmp_path / f"pick-{index}.png"
        path.write_bytes(data)
        paths.append(path)
    p.get_by_test_id("model-link").click()
    p.get_by_label("images").set_input_files([str(x) for x in paths])
    thumbs = p.locator(".thumbs img")
    sync_api.expect(thumbs).to_have_count(4)
    assert all(
        src.startswith("blob:") for src in [t.get_attribute("src") or "" for t in thumbs.all()]
    )
    p.get_by_role("button", name="Predict").click()
    labels = p.locator("[data-testid=predicted-label]")
    sync_api.expect(labels).to_have_count(4)
    model_id = p.url.rsplit("/", 1)[1]
    files = [("files", (x.name, x.read_bytes(), "image/png")) for x in paths]
    r = stack.client.post(f"/v1/models/{model_id}/predict", headers=stack.headers, files=files)
    assert r.status_code == 200, r.text
    assert labels.all_inner_texts() == [x["label"] for x in r.json()["predictions"]]
    shot(p, "09-image-prediction")
    assert errors == [], errors
    assert [u for u in requests if not u.startswith((api.url, "data:", "blob:"))] == []
