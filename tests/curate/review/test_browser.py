"""An annotator reviews in the real Argilla web UI (headless Debian chromium), then pull applies it."""

import json
import os
import shutil
import time
from pathlib import Path

import polars as pl
import pytest

from sftloop.curate.review import push, serve
from sftloop.curate.review.pull import pull
from .review_helpers import ANNOTATOR_KEY, OWNER_KEY, dataset_id, records_by_external_id, search

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_annotator_submits_in_the_web_ui_and_pull_applies_it(endpoint, curated, tmp_path):
    from playwright.sync_api import sync_playwright

    shot_dir = Path(os.environ.get("SFTLOOP_SCREENSHOTS", tmp_path))  # set it to keep the record card's screenshot

    root, vdir = curated
    push.push_sample_qa(endpoint, vdir, size=3, seed=5)
    ds = dataset_id(endpoint, "sample-qa")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{endpoint.url}/sign-in", wait_until="networkidle")
            page.fill("input[name=Username]", serve.DEFAULTS["SFTLOOP_ARGILLA_ANNOTATOR"])
            page.fill("input[type=password]", serve.DEFAULTS["SFTLOOP_ARGILLA_ANNOTATOR_PASSWORD"])
            page.click("button[type=submit]")
            page.wait_for_url(lambda u: "sign-in" not in u)
            page.goto(f"{endpoint.url}/dataset/{ds}/annotation-mode", wait_until="networkidle")
            page.wait_for_selector("button.button--submit")
            ours = sorted(records_by_external_id(endpoint, OWNER_KEY, "sample-qa"))
            card = page.inner_text("body")
            assert "Record id" in card and any(rid in card for rid in ours), card[:2000]  # a reviewer can cite it
            page.screenshot(path=str(shot_dir / "argilla-record.png"), full_page=True)
            shown = page.inner_text("[aria-label='Question: verdict']")
            assert "keep" in shown and "reject" in shown
            page.click("label[for=verdict_keep]")
            page.click("label[for=quality_4]")
            page.click("[aria-label='Question: corrected_reply'] .container")
            page.keyboard.type("Corrected in the browser.")
            page.click("button.button--submit")
            deadline = time.time() + 30
            while time.time() < deadline:  # the UI posts the response; wait until the API has it
                done = search(endpoint, ANNOTATOR_KEY, "sample-qa", {"filters": {"and": [
                    {"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["submitted"]}]}})
                if done["total"]:
                    break
                time.sleep(0.5)
        finally:
            browser.close()
    assert done["total"] == 1
    record = done["items"][0]["record"]
    values = record["responses"][0]["values"]
    assert values["verdict"]["value"] == "keep" and values["quality"]["value"] == 4
    path, change = pull("sample-qa", endpoint, root)
    assert change["reviewers"] == {"annotator": 1} and change["applied"]["accepted"] == 1
    rows = pl.concat([pl.read_parquet(path / f"{s}.parquet") for s in ("train", "val")])
    row = rows.filter(pl.col("id") == record["external_id"])
    review = json.loads(row["meta"][0])["review"]
    assert review["verdict"] == "keep" and review["reviewers"] == ["annotator"]
    if "corrected_reply" in values:
        assert row["messages"][0][-1]["content"] == values["corrected_reply"]["value"] == "Corrected in the browser."
    else:
        pytest.fail(f"the corrected reply typed in the UI did not arrive: {values}")
