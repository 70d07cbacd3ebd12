"""The HTML board in a real headless browser: Debian's chromium driven by Playwright (never Playwright's own).

Needs the apt package ``chromium`` (or FILTERBENCH_CHROMIUM pointing at a Chromium binary) and the pip package
``playwright``; without either the test is skipped, saying which one is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from filterbench.leaderboard.build import build_leaderboard
from filterbench.leaderboard.records import write_record

EVIL = "<script>alert(1)</script>"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# recipe -> (ImageNet, Average); the board order is Average descending
RECIPES = {"alpha": (0.030, 0.150), "bravo": (0.060, 0.140), EVIL: (0.045, 0.160), "charlie": (0.010, 0.120)}


def _chromium() -> str:
    path = os.environ.get("FILTERBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); the test needs it")
    return path


@pytest.fixture()
def board(fake_record, records_dir, no_reference, tmp_path) -> Path:
    for recipe, (imagenet, average) in RECIPES.items():
        for seed in (0, 1):
            groups = {"ImageNet": imagenet + 0.001 * seed, "VTAB": 0.1, "Average": average + 0.002 * seed}
            write_record(fake_record(recipe=recipe, seed=seed, groups=groups), records_dir)
    oracle = {"clean": {"total": 10, "kept": 8}, "misaligned": {"total": 10, "kept": 3}}
    write_record(fake_record(recipe="nano_method", scale="nano", groups={"Objects": 0.3, "Average": 0.2},
                             oracle=oracle), records_dir)
    return build_leaderboard(records_dir, tmp_path / "out", reference_csv=no_reference)[-1]


def _recipe_column(page) -> list[str]:
    return page.eval_on_selector_all("#board-0 tbody tr", "rows => rows.map(r => r.cells[1].textContent)")


def test_page_loads_sorts_and_shows_hostile_names_as_text(board):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip package playwright is not installed")
    executable = _chromium()
    problems: list[str] = []
    dialogs: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(board.as_uri(), wait_until="load")

            assert problems == [], problems
            by_average = sorted(RECIPES, key=lambda r: -RECIPES[r][1])
            assert _recipe_column(page) == by_average

            page.click("#board-0 thead th:has-text('Recipe')")
            assert _recipe_column(page) == sorted(RECIPES, key=str.lower)
            assert page.get_attribute("#board-0 thead th:has-text('Recipe')", "aria-sort") == "ascending"

            imagenet = page.locator("#board-0 thead th").filter(has_text=re.compile(r"^ImageNet$"))
            imagenet.click()
            assert _recipe_column(page) == sorted(RECIPES, key=lambda r: RECIPES[r][0])
            imagenet.click()
            assert _recipe_column(page) == sorted(RECIPES, key=lambda r: -RECIPES[r][0])

            cell = page.locator("#board-0 td", has_text=EVIL)
            assert cell.count() == 1 and cell.is_visible() and cell.text_content() == EVIL
            assert page.evaluate("document.scripts.length") == 1  # the record's "script" never became one
            assert page.locator("svg.plot").count() >= 3
            assert page.locator("#oracle-1").count() == 1  # small is section 0, nano section 1
            assert dialogs == [] and problems == [], (dialogs, problems)
        finally:
            browser.close()
