"""The search page at `/`, used in a real headless Chromium (Debian's, driven by Playwright)."""

import json
import os
import shutil

import pytest
from helpers import Server

from hicl_retrieval import BuildConfig, Retriever, build_index

pytest.importorskip("uvicorn", reason="install the [serve] extra: pip install 'hicl-retrieval[serve]'")
from hicl_retrieval.service.app import create_app  # noqa: E402
from hicl_retrieval.service.config import ServiceConfig  # noqa: E402

TOKEN = "page-token"
TWEET_ID = 1790000000000000000


def _browser_or_skip():
    """Playwright and a Chromium; CI installs both (the Makefile), so there a missing one fails."""
    def missing(what: str):
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing; `make test` installs it")
        pytest.skip(f"{what} is missing; `make test` installs it")

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (the [dev] extra)")
    executable = os.environ.get("HICL_CHROMIUM") or next(
        (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)
    if executable is None:
        missing("Chromium (apt-get install chromium)")
    return sync_playwright, executable


@pytest.fixture(scope="module")
def browser():
    sync_playwright, executable = _browser_or_skip()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_encoder):
    """A served index of posts with tweet ids, authors, times and hashtags, behind a token."""
    root = tmp_path_factory.mktemp("page")
    topics = ["river flooding downtown", "election vote counting", "wildfire smoke over the valley"]
    rows = [{"id": str(TWEET_ID + i), "text": f"{topics[i % 3]} report {i} #Topic{i % 3} #news",
             "author": f"reporter{i % 4}", "created_at": f"2024-05-{1 + i % 20:02d}T08:30:00Z"} for i in range(30)]
    rows.append({"id": "local-7", "text": "river flooding downtown, a post without a tweet id #Topic0"})
    (root / "posts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    build_index([root / "posts.jsonl"], root / "index", BuildConfig(encoder=tiny_encoder.config, progress=False),
                encoder=tiny_encoder)
    retriever = Retriever(root / "index", encoder=tiny_encoder)
    server = Server(create_app(root / "index", retriever=retriever,
                               config=ServiceConfig(max_k=20, max_query_chars=300, token=TOKEN)))
    yield f"http://127.0.0.1:{server.port}/", retriever
    server.stop()
    retriever.close()


@pytest.fixture
def page(browser, site):
    url, _ = site
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.fill("#token", TOKEN)
    yield page
    context.close()


def search(page, query: str, **fields) -> None:
    page.fill("#query", query)
    for field, value in fields.items():
        page.fill(f"#{field}", str(value))
    page.click("#go")
    page.wait_for_function("document.getElementById('status').textContent !== 'searching…'"
                           " || !document.getElementById('error').hidden")


def test_a_search_shows_the_hits_as_the_service_ranks_them(page, site):
    _, retriever = site
    search(page, "river flooding downtown", k=5)
    assert page.is_hidden("#error")
    assert page.inner_text("#status").startswith("5 hits in ")
    [expected] = retriever.search(["river flooding downtown"], k=5)
    items = page.locator("li.hit")
    assert items.count() == 5
    for number, hit in enumerate(expected.hits):
        item = items.nth(number)
        assert item.get_attribute("data-post-id") == hit.post_id
        assert item.locator(".text").inner_text() == hit.text
        assert item.locator(".score").inner_text() == f"{hit.score:.3f}"
        marked = item.locator("mark.hashtag").all_inner_texts()
        assert marked and [tag.lower() for tag in marked] == list(hit.hashtags)
        if hit.author:
            assert item.locator(".author").inner_text() == "@" + hit.author
            assert item.locator(".time").inner_text().startswith(hit.created_at.strftime("%Y-%m-%d %H:%M"))
        link = item.locator("a.link")
        if hit.post_id.isdigit():
            assert link.get_attribute("href") == f"https://twitter.com/i/web/status/{hit.post_id}"
        else:
            assert link.count() == 0 and item.locator(".post-id").inner_text() == f"id {hit.post_id}"


def test_the_filters_reach_the_service(page, site):
    search(page, "smoke", k=20, hashtag="#topic2", author="@reporter1, reporter3",
           since="2024-05-05", until="2024-05-15")
    items = page.locator("li.hit")
    assert items.count() > 0 and page.is_hidden("#error")
    for number in range(items.count()):
        item = items.nth(number)
        assert "#topic2" in [tag.lower() for tag in item.locator("mark.hashtag").all_inner_texts()]
        assert item.locator(".author").inner_text() in ("@reporter1", "@reporter3")
        assert "2024-05-05" <= item.locator(".time").inner_text()[:10] < "2024-05-15"
    search(page, "smoke", hashtag="#nosuchtag")
    assert page.locator("li.hit").count() == 0 and page.inner_text("#status") == "no post matches (check the filters)"


def test_errors_are_shown_not_swallowed(page):
    search(page, "x" * 400)
    assert page.is_visible("#error")
    assert page.inner_text("#error") == "query 1 has 400 characters; at most 300"
    assert page.locator("li.hit").count() == 0
    search(page, "river", hashtag="#")
    assert page.inner_text("#error") == "a hashtag filter needs a tag, not '#'"
    search(page, "river", hashtag="")  # a good search clears the error
    assert page.is_hidden("#error") and page.locator("li.hit").count() > 0


def wait_for_about(page):
    """Wait until the page has shown the index's size (its first text also names posts)."""
    page.wait_for_function(r"/^\d[\d,.\s]* posts/.test(document.getElementById('about').textContent)")


def test_without_the_token_the_page_asks_for_it(browser, site):
    url, retriever = site
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#token-box", state="visible")
    search(page, "river")
    assert page.inner_text("#error").startswith("a bearer token is required")
    page.fill("#token", TOKEN)
    search(page, "river")
    assert page.is_hidden("#error") and page.locator("li.hit").count() == 10
    page.reload()  # the token is kept for the tab's session
    wait_for_about(page)
    assert page.inner_text("#about").startswith(f"{retriever.manifest.count} posts")
    context.close()


def test_a_service_without_a_token_asks_for_none(browser, site, tiny_encoder):
    _, served = site
    retriever = Retriever(served.directory.path, encoder=tiny_encoder)
    server = Server(create_app(served.directory.path, retriever=retriever))
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.port}/")
        wait_for_about(page)
        assert page.is_hidden("#token-box")
        search(page, "wildfire smoke", k=3)
        assert page.locator("li.hit").count() == 3
        context.close()
    finally:
        server.stop()
        retriever.close()


READ_SHAPE = """() => {
  const texts = (selector) => [...document.querySelectorAll(selector)].map((node) => node.textContent);
  const rows = (id) => [...document.querySelectorAll(`#${id} g.row`)].map((g) => ({
    label: g.querySelector("text.label title").textContent, shown: g.querySelector("text.label").textContent,
    count: g.querySelector("text.count").textContent,
    bar: g.querySelector("rect.bar").getBBox().width,
    deleted: g.querySelector("rect.deleted") ? g.querySelector("rect.deleted").getBBox().width : 0}));
  return {status: document.getElementById("shape-status").textContent,
          periods: texts("#over-time rect.period > title"),
          heights: [...document.querySelectorAll("#over-time rect.period")].map((r) => r.getBBox().height),
          axis: texts("#over-time text.axis"),
          hashtags: rows("hashtags"), authors: rows("authors"), segments: rows("segments"),
          markup: document.querySelectorAll("#charts img, #charts script, #charts b").length};
}"""


def open_shape(page) -> dict:
    """Open the index view, wait until its four figures are drawn, and read its labels and bars."""
    page.click("#shape > summary")
    page.wait_for_function("document.querySelectorAll('#charts figure').length === 4")
    return page.evaluate(READ_SHAPE)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_the_index_view_draws_what_stats_says_and_follows_a_delete(browser, tmp_path, tiny_encoder):
    markup = '<img src=x onerror="document.title=1">'
    rows = [{"id": str(TWEET_ID + i), "text": f"post {i} about the river #Flood{i % 3}" + " #news" * (i % 2),
             "author": f"reporter{i % 4}" if i % 5 else markup, "created_at": f"2024-05-{1 + i % 9:02d}T08:30:00Z"}
            for i in range(40)]
    rows.append({"id": "undated", "text": "a post without a time or an author #flood0"})
    (tmp_path / "posts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    build_index([tmp_path / "posts.jsonl"], tmp_path / "index", BuildConfig(encoder=tiny_encoder.config,
                progress=False), encoder=tiny_encoder)
    retriever = Retriever(tmp_path / "index", encoder=tiny_encoder)
    server = Server(create_app(tmp_path / "index", retriever=retriever, config=ServiceConfig(writable=True)))
    url = f"http://127.0.0.1:{server.port}/"
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(url)
        wait_for_about(page)
        assert page.locator("#charts figure").count() == 0  # read only when opened
        drawn = open_shape(page)
        stats = server.call("GET", "/stats")[1]
        assert drawn["status"] == (f"41 posts, 40 with a time, 2024-05-01 to 2024-05-09; 0 deleted rows in "
                                   f"{len(stats['segments'])} segment" + ("s" if len(stats["segments"]) > 1 else ""))
        assert [title.split(": ") for title in drawn["periods"]] == [
            [period, f"{n} posts"] for period, n in stats["over_time"]]
        assert len(drawn["periods"]) == 9 and drawn["axis"][0] == str(max(n for _, n in stats["over_time"]))
        tallest = max(drawn["heights"])
        for height, (_, n) in zip(drawn["heights"], stats["over_time"]):  # heights in proportion to counts
            assert height == pytest.approx(tallest * n / max(m for _, m in stats["over_time"]), rel=1e-3)
        assert [(row["label"], number(row["count"])) for row in drawn["hashtags"]] == [
            (tag, n) for tag, n in stats["hashtags"]]
        assert [(row["label"], number(row["count"])) for row in drawn["authors"]] == [
            ("@" + author, n) for author, n in stats["authors"]]
        assert ("@" + markup, 8) in [(row["label"], number(row["count"])) for row in drawn["authors"]]
        assert drawn["markup"] == 0 and page.title() == "hicl-retrieval"  # an author's markup is text, not HTML
        widest = max(row["bar"] for row in drawn["hashtags"])
        for row, (_, n) in zip(drawn["hashtags"], stats["hashtags"]):
            assert row["bar"] == pytest.approx(widest * n / stats["hashtags"][0][1], rel=1e-3)
        assert [row["count"] for row in drawn["segments"]] == [
            f"{s['posts']} rows, 0 deleted" for s in stats["segments"]]

        assert server.call("POST", "/delete", {"post_ids": [str(TWEET_ID), str(TWEET_ID + 9)]})[0] == 200
        page.reload()
        wait_for_about(page)
        after = open_shape(page)
        changed = server.call("GET", "/stats")[1]
        assert changed["deleted"] == 2 and after["status"].startswith("39 posts, 38 with a time")
        assert [title.split(": ") for title in after["periods"]] == [
            [period, f"{n} posts"] for period, n in changed["over_time"]]
        assert [row["count"] for row in after["segments"]] == [
            f"{s['posts']} rows, {s['deleted']} deleted" for s in changed["segments"]]
        assert sum(row["deleted"] > 0 for row in after["segments"]) >= 1
        context.close()
    finally:
        server.stop()
        retriever.close()


def test_the_index_view_says_what_an_index_lacks(browser, tmp_path, tiny_encoder):
    (tmp_path / "posts.txt").write_text("a post with no tag\nanother plain post\n", encoding="utf-8")
    build_index([tmp_path / "posts.txt"], tmp_path / "index", BuildConfig(encoder=tiny_encoder.config,
                progress=False), encoder=tiny_encoder)
    retriever = Retriever(tmp_path / "index", encoder=tiny_encoder)
    server = Server(create_app(tmp_path / "index", retriever=retriever))
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.port}/")
        wait_for_about(page)
        open_shape(page)
        assert page.locator("#charts figure .empty").all_inner_texts() == [
            "no post has a time", "no post has a hashtag", "no post has an author"]
        assert page.locator("#segments g.row").count() == 1
        context.close()
    finally:
        server.stop()
        retriever.close()
