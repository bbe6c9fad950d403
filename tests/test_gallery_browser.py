"""The gallery in a real browser: Debian's headless Chromium, driven by Playwright, the page opened from file://.

What the page shows at a sim is compared with the tree ``imagecluster cluster --sim``
writes at that sim, at round values and at values equal to merge heights.
"""

import json
import os
import re
import subprocess
import sys

import _gallery_lib as lib
import pytest
from playwright.sync_api import sync_playwright

from imagecluster.gallery import write_gallery
from imagecluster.gallery._build import display_name

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

if not os.path.exists(CHROMIUM):
    if os.environ.get("IMAGECLUSTER_REQUIRE_CHROMIUM"):  # CI (.ci/run) installs it: there the tests must run
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium")
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)




@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery") / "photos"
    names = lib.make_gallery_library(root, count=24)
    subprocess.run([sys.executable, "-m", "imagecluster", "show", str(root), "-q"], check=True,
                   capture_output=True, timeout=120)
    return root, names


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, library):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems, requests = [], []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("request", lambda request: requests.append(request.url))
    page.goto((library[0] / "clusters-gallery/index.html").as_uri())
    page.wait_for_load_state("load")
    yield page
    context.close()
    assert not problems, problems
    assert all(url.startswith("file://") for url in requests), [u for u in requests if not u.startswith("file://")]


def _rows(page):
    """Each row's photos (their full names, as the page titles them), top to bottom."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('section.cluster'),
        s => Array.from(s.querySelectorAll('figcaption'), f => f.title))""")


def _cli_clusters(root, sim, out):
    """The clusters of `imagecluster cluster --sim`, in the order of its tree, as display names."""
    subprocess.run([sys.executable, "-m", "imagecluster", "cluster", str(root), "--sim", repr(sim), "--out", str(out),
                    "-q"], check=True, capture_output=True, timeout=120)
    found = []
    for size_dir in out.glob("cluster_with_*"):
        for cluster_dir in size_dir.iterdir():
            k = int(cluster_dir.name.split("_")[1])
            paths = sorted(os.path.relpath(os.readlink(link), root) for link in cluster_dir.iterdir())
            found.append((-int(size_dir.name.rsplit("_", 1)[1]), k, [display_name(p) for p in paths]))
    return [paths for _, _, paths in sorted(found)]


def _set_sim(page, value, *, slider=False):
    if slider:
        page.locator("#sim-range").fill(str(value))
    else:
        page.locator("#sim").fill(repr(value))
        page.locator("#sim").press("Enter")


def test_every_thumbnail_decodes_from_file_urls(page, library):
    page.locator("#unclustered summary").click()  # the collapsed photos too
    # Rows are drawn as they scroll into view: take the images in rounds, scrolling on, until every photo's
    # is there or 10 s of rounds brought no more (one snapshot missed rows drawn late on a loaded machine).
    sizes = page.evaluate("""async (expected) => {
        const seen = new Map();
        for (let round = 0; round < 100; round++) {
            const fresh = Array.from(document.querySelectorAll('img')).filter(img => !seen.has(img));
            for (const img of fresh) {
                img.scrollIntoView();
                await img.decode();
                seen.set(img, [img.alt, img.naturalWidth, img.naturalHeight, img.src]);
            }
            if (seen.size >= expected) break;
            window.scrollTo(0, document.body.scrollHeight);
            await new Promise(done => requestAnimationFrame(() => setTimeout(done, 100)));
        }
        return Array.from(seen.values());
    }""", len(library[1]))
    assert len(sizes) == len(library[1]), sorted(set(library[1]) - {alt for alt, *_ in sizes})
    assert all(w > 0 and h > 0 and src.startswith("file://") for _, w, h, src in sizes)
    upright = {alt: (w, h) for alt, w, h, _ in sizes}["2023/shot_01.jpg"]  # stored sideways, EXIF orientation 6
    assert upright == (256, 192)


def test_rows_regroup_exactly_as_the_cli_at_each_sim(page, library, tmp_path):
    root, names = library
    data = json.loads(page.evaluate("document.getElementById('gallery-data').textContent"))
    assert _rows(page) == _cli_clusters(root, 0.7, tmp_path / "tree-default")  # the page opens at --sim 0.7
    heights = sorted(set(data["ms"]))
    picked = [h for h in heights[:: max(1, len(heights) // 5)] if h <= 1.0]
    assert len(picked) >= 3
    for k, sim in enumerate([0.5, 0.8, 0.93, 1.0, *picked]):
        _set_sim(page, sim, slider=k < 4 and round(sim, 2) == sim)
        shown = _rows(page)
        assert shown == _cli_clusters(root, sim, tmp_path / f"tree-{k}"), sim
        clustered = sum(len(r) for r in shown)
        assert f"{len(shown)} clusters with {clustered} photos" in page.locator("#summary").text_content()


def test_keyboard_moves_between_clusters_and_enter_or_a_click_opens_the_photo(page, library):
    page.locator("h1").click()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    current = page.evaluate("[document.activeElement.dataset.index, document.querySelector('.current').dataset.index]")
    assert current == ["1", "1"]
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.querySelector('section.current').dataset.index") == "0"
    first = page.locator("section.current a").first.get_attribute("href")
    with page.context.expect_page() as opened:
        page.keyboard.press("Enter")
    photo = opened.value
    photo.wait_for_load_state()
    assert photo.url == first and first.startswith("file://") and first.endswith(".jpg")
    photo.close()
    link = page.locator("section.cluster").nth(1).locator("a").nth(1)
    with page.context.expect_page() as opened:
        link.locator("img").click()
    assert opened.value.url == link.get_attribute("href")
    opened.value.close()


def test_hostile_file_names_show_as_text(page, library):
    root, names = library
    _set_sim(page, 0.5)
    page.evaluate("document.getElementById('unclustered').open = true")  # what is left unclustered, shown too
    assert page.evaluate("window.pwned") is None
    shown = page.evaluate("Array.from(document.querySelectorAll('figcaption'), f => [f.title, f.textContent])")
    titles = dict(shown)
    for name in lib.HOSTILE:
        full = display_name("odd/" + name)
        assert full in titles, full
        assert titles[full] == full.rsplit("/", 1)[1]
    assert page.evaluate("document.querySelectorAll('img').length") == len(names)  # none injected
    assert page.evaluate("document.querySelectorAll('script').length") == 2
    hrefs = page.evaluate("Array.from(document.querySelectorAll('a'), a => a.getAttribute('href'))")
    assert (root / "odd").as_uri() + "/caf%E9%20latin-1.jpg" in hrefs
    assert all(re.fullmatch(r"file:///[!-~]*", h) for h in hrefs)  # percent-encoded: no space, quote or byte >= 0x80


def test_a_large_library_renders_rows_on_demand(browser, tmp_path):
    """20,000 photos (no files: no thumbnails, placeholders): the page opens with a few rows and adds more on scroll."""
    import numpy as np

    from imagecluster import Store

    root = tmp_path / "big"
    root.mkdir()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4000, 128)).astype(np.float32)  # bursts of 5, unrelated to each other
    vectors = centres[np.repeat(np.arange(4000), 5)] + 0.3 * rng.standard_normal((20000, 128)).astype(np.float32)
    Store(root).put("lite0", [(f"p{k:05d}.jpg", 1, 1, v) for k, v in enumerate(vectors)])
    gallery = write_gallery(root, tmp_path / "gallery", sim=0.7)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(gallery.index.as_uri())
    page.wait_for_load_state("load")
    first = page.evaluate("document.querySelectorAll('section.cluster').length")
    total = len(gallery.clusters)
    assert 0 < first < 200 < total
    for _ in range(5):
        page.mouse.wheel(0, 20000)
        page.wait_for_timeout(100)
    assert page.evaluate("document.querySelectorAll('section.cluster').length") > first
    page.locator("#sim").fill("0.95")
    page.locator("#sim").press("Enter")
    assert page.evaluate("document.querySelectorAll('section.cluster').length") < 200
    context.close()
