"""report.html in a real browser: Debian's chromium, headless, driven by Python playwright.

Uses the system chromium (``apt-get install chromium``, found on PATH) rather than ``playwright
install``: CI machines install it from Debian, and the browser must not be downloaded at test time.
Without one the tests skip, saying so (CI fails them instead: see ``system_tool``). The page is opened from
disk with every network request refused, as someone opening the CI artifact would. A full-page
screenshot is left in ``reports/screenshots/report.png`` for CI to keep.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, system_tool
from harness.report.html import cell_anchor, render_html
from test_report_html import enrich, run_seed

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SCREENSHOT = ROOT / "reports" / "screenshots" / "report.png"


@pytest.fixture(scope="module")
def browser():
    chromium = system_tool("chromium", "chromium-browser", "google-chrome", package="chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    matrix = enrich(run_seed(tmp_path_factory.mktemp("seed-run")))
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(render_html(matrix), encoding="utf-8")
    return path, matrix


@pytest.fixture
def page(browser, report_file):
    path, _ = report_file
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))
    # Nothing but the file itself may load: the page is meant to work with no network at all.
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://") else route.abort())
    page.goto(path.as_uri())
    yield page
    assert errors == [], errors
    assert all(url.startswith("file://") for url in requests), requests
    page.close()


def visible_rows(page) -> list[str]:
    return page.eval_on_selector_all("tr.row:not(.hidden)", "rows => rows.map(r => r.dataset.case)")


def test_matrix_and_verdict_render_and_screenshot(page, report_file):
    _, matrix = report_file
    assert page.locator("table.matrix").is_visible()
    banner = page.locator("#verdict .decision")
    assert banner.is_visible() and banner.inner_text() == "NO-GO"
    colour = banner.evaluate("e => getComputedStyle(e).color")
    assert colour == "rgb(207, 34, 46)"  # the red of a NO-GO
    assert page.locator("td.cell").count() == len(matrix["cells"]) == 40
    # Denrisi's missing classes on every stock column (Vast's hidden reason recovered from its catalogue).
    assert page.locator("td.cell.d-product").count() == 4
    assert page.locator("td.cell.d-infra").count() == 1
    assert page.locator("td.cell.unexpected").count() == 1
    assert page.locator("#f-count").inner_text() == "40 cells shown"
    assert page.locator("#drift").is_visible()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000


def test_filters_hide_other_rows(page, report_file):
    _, matrix = report_file
    assert visible_rows(page) == matrix["cases"]
    page.select_option("#f-outcome", "missing_node")
    assert visible_rows(page) == ["denrisi_zimage"]
    assert page.locator("#f-count").inner_text() == "4 cells shown"
    assert page.locator("td.cell.dim:visible").count() == 4  # the row's other cells are dimmed
    assert page.locator(f"#{cell_anchor('denrisi_zimage', 'stock')}").is_visible()
    assert page.locator(f"#{cell_anchor('sdxl_baseline', 'stock')}").is_hidden()
    page.select_option("#f-outcome", "")
    page.check("#f-unexpected")
    assert visible_rows(page) == ["smoke_invert"]
    page.uncheck("#f-unexpected")
    page.fill("#f-text", "fluxresolution")
    assert visible_rows(page) == ["denrisi_zimage"]
    page.fill("#f-text", "")
    page.select_option("#f-endpoint", "vast-stock")
    assert page.locator("th.col:visible").all_inner_texts() == ["vast-stock"]
    assert page.locator("td.cell:visible").count() == len(matrix["cases"])
    assert visible_rows(page) == matrix["cases"]


def test_clicking_a_cell_reveals_its_evidence(page):
    passed = page.locator(f"#{cell_anchor('sdxl_baseline', 'custom')} table.images")
    assert passed.is_hidden()  # passes are folded
    page.click(f"td[data-target='{cell_anchor('sdxl_baseline', 'custom')}']")
    assert passed.is_visible()
    assert page.locator(f"td.selected[data-target='{cell_anchor('sdxl_baseline', 'custom')}']").count() == 1
    assert page.evaluate("location.hash") == f"#{cell_anchor('sdxl_baseline', 'custom')}"
    failure = page.locator(f"#{cell_anchor('denrisi_zimage', 'stock')}")
    page.click(f"td[data-target='{cell_anchor('denrisi_zimage', 'stock')}']")
    assert failure.locator(".missing-classes").is_visible()
    assert "comfy node install controlaltai-nodes" in failure.inner_text()
    # The hostile message is shown as text, not run.
    assert "<script>alert('pwned')</script>" in failure.locator(".message").inner_text()
