"""results.html in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Playwright never downloads a browser here: it launches the system's Chromium by path. The tests skip only where
no Chromium or no Playwright can be had; CI installs Chromium (.ci/run) and Playwright (the ``test`` extra).
"""

from __future__ import annotations

import os
import shutil

import pytest

from agentkit.eval.report import summarize, summary_rows
from agentkit.eval.report_html import page_data, render_html

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def chromium_path() -> str | None:
    candidates = [os.environ.get("AGENTKIT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]
    return next((shutil.which(c) for c in candidates if c and shutil.which(c)), None)


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium, or set AGENTKIT_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser):
    """Open a file in a fresh page; collect console errors and uncaught exceptions in ``page.errors``."""
    pages = []

    def open_(path):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.errors = []
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(path.as_uri())
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.close()


def shows(page, text: str) -> None:
    """The list's count reads ``text`` (waiting for the page, as events such as a details toggle are async)."""
    sync_api.expect(page.locator("#count")).to_have_text(text)


def test_page_loads_without_errors_and_filters_change_what_is_shown(report_run, open_page):
    page = open_page(report_run / "results.html")
    shows(page, "8 of 8 questions")
    assert page.locator(".row").count() == 8
    page.select_option("#outcome", label="failed: sandbox_error")
    shows(page, "1 of 8 questions")
    assert page.text_content(".row .q").startswith("Mia owes $45")
    page.select_option("#method", "cot")
    shows(page, "0 of 8 questions")
    assert "No question matches" in page.text_content("#detail")
    page.select_option("#outcome", label="wrong answer")
    shows(page, "1 of 8 questions")  # cot's 1,450,001 for 1,450,000
    page.select_option("#method", "")
    page.select_option("#outcome", label="everything")
    page.fill("#search", "baker")
    shows(page, "2 of 8 questions")
    page.fill("#search", "")
    page.select_option("#outcome", label="cot right, pal not")
    shows(page, "2 of 8 questions")
    page.click("button.pairfilter >> nth=0")  # direct vs cot, both right
    shows(page, "4 of 8 questions")
    assert page.errors == []


def test_untrusted_text_shows_as_text(report_run, open_page):
    page = open_page(report_run / "results.html")
    page.fill("#search", "Tom has 3 pens")
    detail = page.text_content("#detail")
    assert "<script>window.__xss = 'question'</script> Tom has 3 pens" in detail
    assert "<script>window.__xss = 'thought'</script> Let me look." in detail  # a ReAct thought
    assert '<script>window.__xss = "stdout"</script>' in detail  # PAL's stdout
    assert page.evaluate("() => window.__xss") is None
    assert page.locator("#detail script, #list script, .qtext *, .row .q *").count() == 0
    page.fill("#search", "A tank holds")
    assert "(</script><b>bold?</b>)" in page.text_content("#detail .qtext")
    assert page.errors == []


def test_the_detail_shows_every_method_side_by_side(report_run, open_page):
    page = open_page(report_run / "results.html")
    page.fill("#search", "Mia owes")
    cards = page.locator("#detail .card")
    assert [cards.nth(i).locator("h3").text_content().split()[0] for i in range(5)] == [
        "direct",
        "cot",
        "pal",
        "pal-sc",
        "react",
    ]
    pal = cards.nth(2).text_content()
    assert "return owed / 0" in pal and "ZeroDivisionError" in pal
    page.click("#detail summary >> text=sample 1")
    sync_api.expect(cards.nth(3)).to_contain_text("ZeroDivisionError")  # built when the sample is opened
    page.fill("#search", "9 birds")
    react = page.locator("#detail .card").nth(4).text_content()
    assert "ran out of steps (forced finish)" in react and "Search[Nothing Such Exists]" in react
    page.keyboard.press("Escape")
    assert page.errors == []


def failed(i: int, k: int) -> bool:
    return (i + k) % 3 == 2 and (i + k) % 7 == 0  # some of the wrong ones


def big_run(n_questions: int, methods: list[str]) -> dict[str, list[dict]]:
    """Synthetic records the size of a full GSM8K test run."""
    out = {}
    for k, m in enumerate(methods):
        out[m] = [
            {
                "id": f"line-{i + 1}",
                "index": i,
                "method": m,
                "question": f"Question {i}: " + "words " * 40,
                "gold": str(i),
                "answer": str(i + (i + k) % 3 // 2),
                "correct": (i + k) % 3 != 2,
                "failure": "no_answer" if failed(i, k) else None,
                "completions": ["reasoning " * 80],
                "prompt_tokens": 500,
                "completion_tokens": 100,
                "timing": {"duration": 1.0},
            }
            for i in range(n_questions)
        ]
    return out


def test_a_full_size_run_renders_only_the_rows_in_view(tmp_path, open_page):
    methods = big_run(1319, ["direct", "cot", "pal", "pal-sc"])
    page_text = render_html(
        config={"dataset": "gsm8k", "model": "m", "shots": 4},
        data=page_data(methods),
        table=summary_rows([summarize(m, r) for m, r in methods.items()]),
        comparisons=[],
    )
    path = tmp_path / "results.html"
    path.write_text(page_text, encoding="utf-8")
    page = open_page(path)
    shows(page, "1319 of 1319 questions")
    assert 0 < page.locator(".row").count() < 80  # virtual: the rows in view, not 1,319
    page.eval_on_selector("#list", "el => { el.scrollTop = el.scrollHeight; }")
    page.wait_for_function("() => [...document.querySelectorAll('.row .idx')].some(e => e.textContent === '1319')")
    assert page.locator(".row").count() < 80
    page.select_option("#outcome", label="failed: no_answer")
    shows(page, f"{sum(any(failed(i, k) for k in range(4)) for i in range(1319))} of 1319 questions")
    assert page.errors == []


def test_the_policy_runs_only_the_pages_own_script(report_run, open_page, tmp_path):
    """Defence in depth: even a script that got into the page some other way would not run."""
    page_text = (report_run / "results.html").read_text(encoding="utf-8")
    tampered = tmp_path / "tampered.html"
    tampered.write_text(
        page_text.replace("<h2>Examples</h2>", "<h2>Examples</h2><script>window.__csp = 1</script>"), encoding="utf-8"
    )
    page = open_page(tampered)
    assert page.evaluate("() => window.__csp") is None
    shows(page, "8 of 8 questions")  # the page's own script still ran
    assert any("Content Security Policy" in e for e in page.errors)
