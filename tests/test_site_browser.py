"""The leaderboard in a real browser (Debian's chromium through playwright), from file://.

Skipped where playwright or chromium is missing, except under CI (env CI set), which
installs both and must not silently skip.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_site import HOSTILE, build_store, small_records

from bench.leaderboard import render_site

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu",
        "--no-first-run", "--disable-component-update", "--disable-sync"]


def _need(ok: bool, reason: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (required under CI)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None  # type: ignore[assignment]
    _need(sync_playwright is not None, "playwright is not installed (pip install playwright)")
    _need(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def expect(locator):
    from playwright.sync_api import expect as _expect

    return _expect(locator)


def column(page, table: str, col: str) -> list[str]:
    """Visible texts of one column, found by its data-col header."""
    return page.evaluate(
        """([table, col]) => {
            const t = document.getElementById(table);
            const i = Array.from(t.tHead.rows[0].cells).findIndex((th) => th.dataset.col === col);
            return Array.from(t.tBodies[0].rows).filter((r) => !r.hidden).map((r) => r.cells[i].textContent);
        }""",
        [table, col],
    )


def watched(browser, label: str, errors: list[str], foreign: list[str], **kw):
    """A new page that records console errors, page errors and any request off file://."""
    page = browser.new_page(**kw)
    page.on("console", lambda m: errors.append(f"{label}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"{label}: {e}"))
    page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith("file://") else None)
    return page


def test_site_in_browser(browser, tmp_path: Path) -> None:
    index = render_site(build_store(tmp_path / "results", small_records()), tmp_path / "site")
    errors: list[str] = []
    foreign: list[str] = []
    page = watched(browser, "index.html", errors, foreign, viewport={"width": 1600, "height": 1000})
    page.goto(index.as_uri())
    page.wait_for_selector("#cells tbody tr")

    n = len(small_records())
    assert len(column(page, "cells", "model")) == n

    # Clicking a header sorts numerically, ascending then descending; aria-sort follows.
    header = page.locator('#cells th[data-col="abs_gain"]')
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    gains = [float(v) for v in column(page, "cells", "abs_gain") if v != "\u2013"]
    assert gains == sorted(gains) and gains[0] < gains[-1]
    assert column(page, "cells", "abs_gain")[-1] == "\u2013"  # missing values last
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "descending"
    gains = [float(v) for v in column(page, "cells", "abs_gain") if v != "\u2013"]
    assert gains == sorted(gains, reverse=True)

    # Keyboard: focus a header and press Enter; eps sorts as numbers (2 < 16), not text.
    eps_button = page.locator('#cells th[data-col="eps"] button')
    eps_button.focus()
    page.keyboard.press("Enter")
    eps = [float(v) for v in column(page, "cells", "eps")]
    assert eps == sorted(eps) and 16.0 in eps
    page.keyboard.press("Space")
    assert page.locator('#cells th[data-col="eps"]').get_attribute("aria-sort") == "descending"

    # Filters hide rows in every table that has the column.
    page.select_option('select[data-filter="model"]', "dbcnn")
    assert set(column(page, "cells", "model")) == {"dbcnn"}
    assert 0 < len(column(page, "cells", "model")) < n
    assert set(column(page, "board", "model")) == {"dbcnn"}
    assert set(column(page, "board", "attack")) == {"all (worst)"}  # the leaderboard's default scope
    page.select_option('select[data-filter="eps"]', "16")
    assert column(page, "cells", "eps") == ["16"]
    page.click("button[type=reset]")
    expect(page.locator("#cells tbody tr:not([hidden])")).to_have_count(n)  # no eval: the page's CSP forbids it

    # The leaderboard: default order by rank; a header click and the keyboard reorder it;
    # the attack filter picks per-attack rows; the eps filter hides other budgets' columns.
    ranks = [int(v) for v in column(page, "board", "rank") if v != "\u2013"]
    assert ranks and ranks[0] == 1
    gain = page.locator('#board th[data-col="worst_abs_gain"] button')
    gain.click()
    worst = [float(v.split("[")[0].rstrip("\u26a0")) for v in column(page, "board", "worst_abs_gain") if v != "\u2013"]
    assert worst == sorted(worst)
    page.keyboard.press("Enter")
    worst = [float(v.split("[")[0].rstrip("\u26a0")) for v in column(page, "board", "worst_abs_gain") if v != "\u2013"]
    assert worst == sorted(worst, reverse=True) and worst[0] > worst[-1]
    marked = page.locator("#board tr.clean-loss")  # loses > 0.05 clean SROCC against none
    # columns: rank, model, weights, dataset, defense, ...
    assert marked.count() >= 1 and marked.first.locator("td").nth(4).text_content() in ("jpeg", HOSTILE)
    page.select_option('select[data-filter="attack"]', "pgd")
    assert set(column(page, "board", "attack")) == {"pgd"}
    page.select_option('select[data-filter="eps"]', "4")
    assert page.locator('#board th[data-eps="2"]').first.is_hidden()
    assert page.locator('#board th[data-eps="4"]').first.is_visible()
    page.click("button[type=reset]")

    # The hostile name is shown as text, and never ran.
    assert page.locator("#cells td", has_text=HOSTILE).count() == 1
    assert page.locator("#board td", has_text=HOSTILE).count() == 1
    assert page.evaluate("document.querySelectorAll('script').length") == 3  # site.js and two JSON blocks

    # Every page loads without errors; every local link and image on it resolves.
    for html in sorted(index.parent.glob("*.html")):
        other = watched(browser, html.name, errors, foreign)
        other.goto(html.as_uri())
        other.wait_for_load_state("load")
        links = other.evaluate("Array.from(document.querySelectorAll('[href],[src]'), (e) => e.href || e.src)")
        assert links, html
        for url in links:
            parsed = urlparse(url)
            if parsed.scheme == "https":  # a paper's reference link: never fetched by the page
                continue
            assert parsed.scheme == "file", (html.name, url)
            assert Path(unquote(parsed.path)).is_file(), (html.name, url)
        broken = other.evaluate("Array.from(document.images).filter((i) => !i.complete || i.naturalWidth === 0)"
                                ".map((i) => i.src)")
        assert not broken, (html.name, broken)
        if html.name.startswith("defense-script"):
            assert other.locator("h1", has_text=HOSTILE).count() == 1
        other.close()

    shot = tmp_path / "site.png"
    page.evaluate("window.scrollTo(0, 0)")  # the sticky filter bar would otherwise cover the plot
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert not errors, errors
    assert not foreign, foreign
    page.close()


def data_v(page, table: str, col: str) -> list[float | None]:
    """The numbers (data-v) of one column of a server-rendered table, in row order; None
    where a cell has no number."""
    return page.evaluate(
        """([table, col]) => {
            const t = document.getElementById(table);
            const i = Array.from(t.tHead.rows[0].cells).findIndex((th) => th.dataset.col === col);
            return Array.from(t.tBodies[0].rows).filter((r) => !r.hidden)
                .map((r) => r.cells[i].dataset.v === undefined ? null : Number(r.cells[i].dataset.v));
        }""",
        [table, col],
    )


def _ordered(values: list[float | None], descending: bool = False) -> bool:
    """Numbers in order, missing ones (None) after all of them, as site.js sorts."""
    nums = [v for v in values if v is not None]
    return nums == sorted(nums, reverse=descending) and values == nums + [None] * (len(values) - len(nums))


def test_compare_and_model_pages_sort_in_browser(browser, tmp_path: Path) -> None:
    """The claim page and each model page: every comparison table sorts by a clicked
    header, numerically, up then down, missing values last. (These pages have no filters
    and at most a few rows a table: nothing to page.)"""
    index = render_site(build_store(tmp_path / "results", small_records()), tmp_path / "site")
    errors: list[str] = []
    foreign: list[str] = []
    pages = [index.parent / "claim.html", *sorted(index.parent.glob("model-*.html"))]
    assert len(pages) == 3  # claim, cnniqa, dbcnn
    sorted_tables = 0
    for html in pages:
        page = watched(browser, html.name, errors, foreign, viewport={"width": 1600, "height": 1000})
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        assert page.locator("select[data-filter]").count() == 0
        ids = page.evaluate("Array.from(document.querySelectorAll('table.sortable'), (t) => t.id)")
        assert ids and all(i.startswith("compare-") for i in ids), (html.name, ids)
        for table in ids:
            rows = page.locator(f"#{table} tbody tr")
            n = rows.count()
            defenses = sorted(page.evaluate(f"Array.from(document.querySelectorAll('#{table} tbody tr'), "
                                            "(r) => r.cells[0].textContent)"))
            for col in ("srocc_clean", "abs_gain@8"):
                header = page.locator(f'#{table} th[data-col="{col}"]')
                if header.count() == 0:
                    continue
                before = data_v(page, table, col)
                header.locator("button").click()
                assert header.get_attribute("aria-sort") == "ascending"
                up = data_v(page, table, col)
                assert _ordered(up) and sorted(up, key=lambda v: (v is None, v or 0)) == up
                assert sorted(x for x in up if x is not None) == sorted(x for x in before if x is not None)
                header.locator("button").click()
                assert header.get_attribute("aria-sort") == "descending"
                down = data_v(page, table, col)
                assert _ordered(down, descending=True)
                # the other headers are unsorted again; no row lost or doubled
                assert page.locator(f'#{table} th[aria-sort="ascending"]').count() == 0
                assert rows.count() == n
                assert sorted(page.evaluate(f"Array.from(document.querySelectorAll('#{table} tbody tr'), "
                                            "(r) => r.cells[0].textContent)")) == defenses
                if len([v for v in up if v is not None]) > 1:
                    assert up != down
                    sorted_tables += 1
        page.close()
    assert sorted_tables >= 3
    assert not errors, errors
    assert not foreign, foreign


def test_defense_page_sorts_filters_and_pages_in_browser(browser, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A defense with 1,010 cells: its cells table attaches the first 1,000 (site.js's
    PAGE), says so, and shows all on request; sorting orders all rows, not only those
    shown; filters cut the rows and the count follows."""
    from test_site import make_record

    eps = [k / 4 for k in range(1, 102)]  # 0.25 ... 25.25: 101 budgets, numbers that sort unlike text
    recs = [make_record(m, "jpeg", a, e) for m in ("cnniqa", "dbcnn") for a in ("fgsm", "pgd", "apgd", "square",
                                                                                   "ifgsm") for e in eps]
    assert len(recs) == 1010
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", lambda fd: None)  # durability is not under test: write fast
        index = render_site(build_store(tmp_path / "results", recs, examples=False), tmp_path / "site")
    gains = sorted(r["metrics"]["abs_gain"] for r in recs)
    errors: list[str] = []
    foreign: list[str] = []
    page = watched(browser, "defense-jpeg", errors, foreign, viewport={"width": 1600, "height": 1000})
    (html,) = index.parent.glob("defense-jpeg*.html")
    page.goto(html.as_uri())
    page.wait_for_selector("#cells tbody tr")
    count = page.locator('[data-count-for="cells"]')

    # the first page: 1,000 rows attached, the count says so and offers the rest
    assert len(column(page, "cells", "model")) == 1000
    assert count.text_content() == "Showing 1000 of 1010 matching rows (1010 in all). show all (slow for many rows)"

    # sorting orders every row: the 1,000 shown are the 1,000 smallest gains
    gain = page.locator('#cells th[data-col="abs_gain"]')
    gain.locator("button").click()
    assert gain.get_attribute("aria-sort") == "ascending"
    assert column(page, "cells", "abs_gain") == [f"{g:.3f}" for g in gains[:1000]]
    gain.locator("button").click()
    assert column(page, "cells", "abs_gain") == [f"{g:.3f}" for g in gains[::-1][:1000]]

    # numbers sort as numbers (25.25 > 3 > 2.5), not as text
    page.locator('#cells th[data-col="eps"] button').click()
    shown = [float(v) for v in column(page, "cells", "eps")]
    assert shown[:10] == [0.25] * 10 and shown == sorted(shown) and shown[-1] == 25.0  # 1,000 of 1,010 rows

    # page forward: all rows
    count.locator("button").click()
    shown = [float(v) for v in column(page, "cells", "eps")]
    assert len(shown) == 1010 and shown == sorted(shown) and shown[-10:] == [25.25] * 10
    assert count.text_content() == "1010 rows."

    # filters: one model, then one budget of it; the count follows
    page.select_option('select[data-filter="model"]', "dbcnn")
    assert set(column(page, "cells", "model")) == {"dbcnn"} and len(column(page, "cells", "model")) == 505
    assert count.text_content() == "Showing 505 of 505 matching rows (1010 in all). "
    page.select_option('select[data-filter="eps"]', "2.5")
    assert column(page, "cells", "eps") == ["2.5"] * 5
    assert sorted(column(page, "cells", "attack")) == ["apgd", "fgsm", "ifgsm", "pgd", "square"]
    assert count.text_content() == "Showing 5 of 5 matching rows (1010 in all). "
    page.select_option('select[data-filter="attack"]', "pgd")
    assert column(page, "cells", "attack") == ["pgd"]
    page.click("button[type=reset]")
    expect(page.locator("#cells tbody tr:not([hidden])")).to_have_count(1010)  # "show all" still holds
    assert not errors, errors
    assert not foreign, foreign
    page.close()
