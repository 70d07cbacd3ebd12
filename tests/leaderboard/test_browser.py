"""The HTML board in a real headless browser: Debian's chromium driven by Playwright (never Playwright's own).

Needs the apt package ``chromium`` (or FILTERBENCH_CHROMIUM pointing at a Chromium binary): without it the tests
skip, saying so (``.ci/run`` installs it and fails when it cannot).  The pip package ``playwright`` is a dev
dependency and imported plainly: a broken install fails here instead of skipping.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import playwright.sync_api as sync_api
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


# -- a crowded board: 30 recipes, close scores, long names --------------------------------------------------

def _crowded_names() -> list[str]:
    stems = ("clip_score", "image_based_clip_score_l14_top30", "negcliploss_normsim", "dfn_ft_top15",
             "m_flyt")
    return [f"{stems[i % len(stems)]}_variant_{i:02d}" for i in range(30)]


@pytest.fixture()
def crowded_board(fake_record, records_dir, no_reference, tmp_path) -> Path:
    for i, recipe in enumerate(_crowded_names()):
        for seed in range(3):
            # averages 0.001 apart with a shared seed effect: the scatter plots crowd every point together
            average = 0.30 + 0.001 * i + 0.01 * seed + 0.0005 * ((i * 7 + seed * 3) % 5)
            groups = {"ImageNet": 0.05 + 0.0007 * i + 0.004 * seed, "VTAB": 0.2 + 0.001 * (i % 7),
                      "Retrieval": 0.1 + 0.002 * (i % 4), "Average": average}
            metrics = {"imagenet1k": groups["ImageNet"], "vtab/cifar100": 0.2 + 0.01 * seed}
            write_record(fake_record(recipe=recipe, seed=seed, groups=groups, metrics=metrics), records_dir)
    return build_leaderboard(records_dir, tmp_path / "out", reference_csv=no_reference)[-1]


def _overlapping(boxes: list[dict]) -> list[tuple[str, str]]:
    """Pairs of text boxes that intersect by more than half a pixel each way."""
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if (min(a["right"], b["right"]) - max(a["left"], b["left"]) > 0.5
                    and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 0.5):
                out.append((a["text"], b["text"]))
    return out


_TEXT_BOXES = """svg => Array.from(svg.querySelectorAll('text')).map(t => {
  const r = t.getBoundingClientRect();
  return {text: t.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom};
})"""


def _pixel_colours(png: bytes, points: list[tuple[float, float]]) -> list[tuple[int, int, int]]:
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(png)).convert("RGB")
    return [image.getpixel((round(x), round(y))) for x, y in points]


def test_thirty_recipes_stay_readable(crowded_board):
    executable = _chromium()
    names = _crowded_names()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(20_000)
            page.goto(crowded_board.as_uri(), wait_until="load")

            # the new sections are there, with a row per recipe
            titles = page.eval_on_selector_all("h4", "hs => hs.map(h => h.textContent)")
            for title in ("Paired differences", "Resolving power", "Which differences are real",
                          "Tasks at chance", "Pairwise differences (Average)", "Per-task scores"):
                assert title in titles
            assert page.locator("#pairwise-0 tbody tr").count() == 30
            assert page.locator("#tasks-0 tbody tr").count() == 30
            assert page.locator("#board-0 thead th", has_text="Δ Average vs").count() == 0  # no reference ran

            plots = page.locator("svg.plot")
            assert plots.count() == 3
            for k in range(plots.count()):
                plot = plots.nth(k)
                plot.scroll_into_view_if_needed()
                # every label (point numbers, legend, ticks) is clear of every other, and inside its plot
                boxes = plot.evaluate(_TEXT_BOXES)
                assert _overlapping(boxes) == [], plot.get_attribute("class")
                frame = plot.bounding_box()
                assert all(b["right"] <= frame["x"] + frame["width"] + 0.5 for b in boxes), "legend clipped"
                legend = [b["text"].split(". ", 1)[1] for b in boxes if ". " in b["text"]]
                assert sorted(legend) == sorted(names)  # every name shown whole
                # one colour per recipe, as drawn: sample each legend swatch's centre on a screenshot
                swatches = plot.evaluate("""svg => Array.from(svg.querySelectorAll('circle'))
                    .filter(c => c.nextElementSibling && c.nextElementSibling.classList.contains('legend'))
                    .map(c => { const r = c.getBoundingClientRect(); return [r.left + r.width / 2,
                                                                              r.top + r.height / 2]; })""")
                assert len(swatches) == 30
                png = page.screenshot()
                colours = _pixel_colours(png, swatches)
                assert len(set(colours)) == 30, colours
                closest = min(sum((a - b) ** 2 for a, b in zip(c1, c2)) ** 0.5
                              for i, c1 in enumerate(colours) for c2 in colours[i + 1:])
                assert closest >= 20, f"two recipes' colours are only {closest:.0f} apart in RGB"

            # heatmap cells: legible text on their backgrounds (WCAG contrast of at least 3, large-text AA)
            ratios = page.eval_on_selector_all("table.heat td[style]", """cells => cells.map(td => {
                const lum = c => { const v = c.match(/\\d+/g).slice(0, 3).map(x => x / 255)
                    .map(x => x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4));
                    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
                const s = getComputedStyle(td), a = lum(s.color), b = lum(s.backgroundColor);
                return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); })""")
            assert ratios and min(ratios) >= 3, min(ratios)
            sizes = page.eval_on_selector_all("table.heat td, svg.plot text",
                                              "els => els.map(e => parseFloat(getComputedStyle(e).fontSize))")
            assert min(sizes) >= 11
        finally:
            browser.close()
