"""The workbench in a real browser: Playwright for Python driving Debian's Chromium against
``classlab serve --port 0`` on a digits runs folder. Any request to another host fails the test (route
guard), as does any console error; every test leaves a screenshot in its tmp dir (and in
$CLASSLAB_SCREENSHOTS when set: ``CLASSLAB_SCREENSHOTS=docs pytest -m browser`` renews the README's)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
README_SHOTS = {"runs_page": "runs", "run_page_confusion_cell_opens_its_images_and_a_card": "run",
                "compare_page_shows_verdicts_and_disagreements": "compare",
                "the_gallery_and_the_embedding_maps_image_under_the_pointer": "gallery",
                "interactive_curves_smooth_zoom_log_and_overlay": "curves",
                "predict_an_uploaded_image": "predict", "train_from_the_form_and_watch_epochs_arrive": "train",
                "review_a_label_with_the_keyboard": "review", "make_a_dataset_class_by_class": "collect"}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
if not CHROMIUM.exists():
    pytest.skip("Debian's Chromium is not installed (apt-get install chromium; .ci/run installs it)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def server(digits_runs, tmp_path_factory):
    from classlab import api

    root = tmp_path_factory.mktemp("browser") / "runs"
    shutil.copytree(digits_runs["root"], root)
    doctor = api.check("digits", runs_dir=root)
    compared = api.compare(root / digits_runs["mlp"], root / digits_runs["cnn"], runs_dir=root)
    data = root.parent / "data"  # where datasets made in the browser go
    data.mkdir()
    no_weights = root.parent / "torch-home-without-weights"  # as on a fresh offline machine
    process = subprocess.Popen([sys.executable, "-m", "classlab", "serve", "--port", "0", "--runs-dir", str(root),
                                "--data-dir", str(data)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "TORCH_HOME": str(no_weights), "CLASSLAB_OFFLINE": "1"})
    line = process.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    assert match, line
    yield {"url": match.group(1), "root": root, "data": data, "check": doctor.run_dir.name, "compare": compared.run_dir.name,
           **{k: v for k, v in digits_runs.items() if k != "root"}}
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server, tmp_path, request):
    """A fresh browser context (a new profile) whose every request must go to the server, and whose console
    must stay free of errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    allowed = urlsplit(server["url"]).netloc
    foreign, errors = [], []

    def guard(route):
        parts = urlsplit(route.request.url)
        if parts.scheme in ("data", "blob") or parts.netloc == allowed:
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()
    context.route("**/*", guard)
    pg = context.new_page()
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    pg.wait_for_load_state("networkidle")  # thumbnails arrive after the page: the screenshot shows them
    name = request.node.name.removeprefix("test_")
    pg.screenshot(path=str(tmp_path / f"{name}.png"), full_page=False)
    if os.environ.get("CLASSLAB_SCREENSHOTS") and name in README_SHOTS:
        from PIL import Image

        folder = Path(os.environ["CLASSLAB_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shot = Image.open(tmp_path / f"{name}.png").convert("RGB").quantize(128)  # small files for the README
        shot.save(folder / f"workbench-{README_SHOTS[name]}.png", optimize=True)
    context.close()
    assert not foreign, f"requests to other hosts: {foreign}"
    assert not errors, f"console errors: {errors}"


def test_runs_page(page, server):
    page.goto(server["url"] + "/")
    page.wait_for_selector("table.runs")
    assert page.locator(f'a[href="/runs/{server["cnn"]}"]').count() == 1
    page.fill("#q", "zzz-nothing")
    page.wait_for_selector("text=No runs here yet")
    page.fill("#q", "")
    page.wait_for_selector(f'a[href="/runs/{server["cnn"]}"]')


def test_run_page_confusion_cell_opens_its_images_and_a_card(page, server):
    page.goto(f"{server['url']}/runs/{server['cnn']}")
    cells = page.locator("td.hot a[data-cell]")
    target = cells.first if cells.count() else page.locator("td.diag a[data-cell]").first
    target.click()
    page.wait_for_selector("#cell-images img")
    assert page.locator("#cell-images img").count() >= 1
    assert page.locator("table.confusion td.selected").count() == 1  # the chosen cell stays marked
    assert page.locator("table.confusion td.selected a").get_attribute("data-cell") == target.get_attribute("data-cell")
    page.locator("#cell-images a.thumb").first.click()
    page.wait_for_selector("#image-card", timeout=60_000)
    assert "what the model saw" in page.inner_text("#image-card")
    page.wait_for_function("() => { const r = document.querySelector('#card-panel').getBoundingClientRect();"
                           " return r.top < window.innerHeight && r.bottom > 0; }")  # opened in view
    caption = page.locator("#image-card figcaption.attribution")  # a CNN's card has its Grad-CAM
    assert float(caption.first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) >= 14


def test_predict_an_uploaded_image(page, server, tmp_path):
    from test_web import digit_png

    image = tmp_path / "three.png"
    image.write_bytes(digit_png(3, 64))
    page.goto(f"{server['url']}/predict?run={server['cnn']}")
    page.set_input_files("#images", str(image))
    page.wait_for_selector("text=1 file(s) chosen")
    page.click("#predict-form button[type=submit]")
    page.wait_for_selector("#results h3", timeout=60_000)
    assert page.inner_text("#results h3").startswith("three.png: ")
    assert page.locator("#results .topk").count() == 1


def test_predict_asks_for_a_file_and_a_long_file_name_does_not_widen_the_page(page, server, tmp_path):
    from test_web import digit_png

    page.goto(f"{server['url']}/predict?run={server['cnn']}")
    page.click("#predict-form button[type=submit]")  # no file: the browser asks for one, nothing is sent
    assert page.evaluate("() => document.querySelector('#images').validationMessage") != ""
    assert page.inner_text("#results") == ""
    image = tmp_path / ("a-very-long-name-" * 14 + ".png")  # 240 characters
    image.write_bytes(digit_png(5, 32))
    page.set_input_files("#images", str(image))
    page.click("#predict-form button[type=submit]")
    page.wait_for_selector("#results h3", timeout=60_000)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280


def test_the_first_run_ticked_is_the_comparisons_baseline(page, server):
    page.goto(server["url"] + "/runs")
    later, first = server["mlp"], server["cnn"]  # ticked in this order: cnn, then mlp
    page.check(f'input[name=runs][value="{first}"]')
    page.check(f'input[name=runs][value="{later}"]')
    assert first in page.inner_text("#baseline-hint")
    page.click("#compare-form button[type=submit]")
    page.wait_for_selector("h1:text('Comparison')")
    assert first in page.inner_text("table.runs tr:nth-child(2)") and "baseline" in page.inner_text("table.runs tr:nth-child(2)")


def test_the_gallery_and_the_embedding_maps_image_under_the_pointer(page, server):
    page.goto(f"{server['url']}/runs/{server['cnn']}/gallery?correct=wrong")
    page.wait_for_selector("#gallery a.tile")
    dot = page.locator("#embedding-map a.dot").first
    dot.hover()
    page.wait_for_selector("#map-preview:not([hidden]) img")
    assert page.inner_text("#map-preview span") == dot.get_attribute("data-id")
    page.wait_for_function("() => document.querySelector('#map-preview img').naturalWidth > 0")  # it loaded
    page.locator("#gallery a.tile").first.click()
    page.wait_for_selector("#image-card", timeout=60_000)


def test_interactive_curves_smooth_zoom_log_and_overlay(page, server):
    page.goto(f"{server['url']}/runs/{server['cnn']}")
    page.wait_for_selector("#curve-charts .uplot")
    assert page.locator("#curve-charts .uplot").count() == 2  # loss and accuracy
    assert page.locator("#perclass-chart .uplot").count() == 1 and page.locator("#calibration-chart .uplot").count() == 1
    page.check("#log-loss")
    page.wait_for_selector("text=loss (log scale)")
    page.fill("#smoothing", "0.6")
    page.select_option("#overlay", server["mlp"])
    page.wait_for_function("() => document.querySelectorAll('#curve-charts .uplot .u-legend tr').length >= 5")
    legend = page.inner_text("#curve-charts .uplot .u-legend")
    assert server["mlp"][:19] in legend  # the other run's curves are drawn beside this one's
    chart = page.locator("#curve-charts .uplot .u-over").first  # drag across: the x axis zooms in
    box = chart.bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 50)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 50)
    page.mouse.up()


def test_train_from_the_form_and_watch_epochs_arrive(page, server):
    page.goto(server["url"] + "/train")
    page.select_option("#command", "train")
    page.select_option("select[name=model]", "mlp")
    page.fill("input[name=epochs]", "4")
    page.click("form.grid-form button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/\w+$"))
    seen, statuses = set(), set()
    for _ in range(1200):  # the page is never reloaded: server-sent events replace the panel
        text = page.inner_text("#job-panel")
        statuses.add(page.inner_text("#job-status").strip())
        epoch = re.search(r"epoch\s+(\d+)\s+of\s+4", text)
        if epoch:
            seen.add(int(epoch.group(1)))
        if "done" in statuses or "failed" in statuses:
            break
        page.wait_for_timeout(100)
    assert page.inner_text("#job-status") == "done", page.inner_text("#job-panel")
    assert "running" in statuses and 4 in seen and page.locator("#job-panel svg.chart").count() == 1
    assert page.locator("#job-panel table.epochs tr").count() == 5  # header + 4 epochs


def test_evaluate_a_model_from_its_run_page(page, server):
    page.goto(f"{server['url']}/runs/{server['mlp']}")
    page.check("#evaluate-form input[name=drop_seen]")
    page.click("#evaluate-form button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/\w+$"))
    page.wait_for_selector("#job-status:text('done')", timeout=120_000)
    page.locator("#job-panel a[href^='/runs/']").first.click()
    page.wait_for_selector("text=scored on")
    note = page.inner_text("p.note")
    assert server["mlp"] in note and "were left out" in note
    page.click(f"a[href='/runs/{server['mlp']}']")
    page.wait_for_selector("text=Evaluations of this model")


def test_review_a_label_with_the_keyboard(page, server):
    page.goto(f"{server['url']}/runs/{server['cnn']}/review")
    # the CNN has 12 planted wrong labels (conftest.digits_runs): there is always more than one item
    first = page.get_attribute(".review-item", "data-id")
    page.keyboard.press("k")
    page.wait_for_selector("text=kept 1")
    assert page.locator(".review-item").count() == 1 and page.get_attribute(".review-item", "data-id") != first
    assert f"{first},keep," in (server["root"] / server["cnn"] / "corrections.csv").read_text()


def test_compare_page_shows_verdicts_and_disagreements(page, server):
    page.goto(server["url"] + "/")
    page.check(f'input[value="{server["mlp"]}"]')
    page.check(f'input[value="{server["cnn"]}"]')
    page.click("text=Compare selected")
    page.wait_for_selector("h1:has-text('Comparison')")
    text = page.inner_text("main")
    assert "McNemar" in text and "baseline" in text
    assert page.locator("div.thumbs img").count() >= 1  # fixed or broken images, side by side with the baseline
    page.wait_for_load_state("networkidle")
    assert page.evaluate("[...document.querySelectorAll('div.thumbs img')].every(i => i.complete && i.naturalWidth > 0)")


def test_doctor_page(page, server):
    page.goto(server["url"] + "/data")
    page.click(f'a[href="/runs/{server["check"]}"]')
    page.wait_for_selector("svg.bars")
    assert "Dataset doctor: digits" in page.inner_text("h1")
    assert page.locator("svg.bars rect").count() == 10


def test_make_a_dataset_class_by_class(page, server, tmp_path):
    """Teachable Machine's flow: a dataset named, each class's images chosen and added, then 'Train on it'."""
    from test_web import digit_png

    page.goto(server["url"] + "/data")
    with page.expect_navigation():
        page.click('a[href="/data/new"]')
    many = []
    for i in range(201):  # one more than an upload takes: said before anything is sent
        many.append(tmp_path / f"many-{i}.png")
        many[-1].write_bytes(digit_png(i % 10, 8))
    page.set_input_files("#images", [str(f) for f in many])
    page.wait_for_selector("#chosen.error")
    assert "201 file(s) chosen: at most 200 go in one upload" in page.inner_text("#chosen")
    for digit, name in ((0, "zero"), (1, "one")):
        files = []
        for size in (24, 32, 40):
            files.append(tmp_path / f"{name}-{size}.png")
            files[-1].write_bytes(digit_png(digit, size))
        page.fill('input[name="dataset"]', "my-digits")
        page.fill('input[name="class_name"]', name)
        page.set_input_files("#images", [str(f) for f in files])
        page.wait_for_selector("text=3 file(s) chosen")
        with page.expect_navigation():
            page.click("#collect-form button[type=submit]")
        assert f"3 images added to my-digits / {name}" in page.inner_text("#added")
    assert sorted(p.name for p in (server["data"] / "my-digits").iterdir()) == [".classlab-dataset.json", "one", "zero"]
    with page.expect_navigation():
        page.click('#made a[href^="/train?dataset=my-digits"]')
    assert page.input_value('select[name="dataset"]') == "my-digits" and page.input_value("#command") == "transfer"
    playwright_api.expect(page.locator('select[name="model"]')).to_be_hidden()  # the form's script has run
    assert page.locator('select[name="backbone"]').is_visible()
    notice = page.locator("#weights-notice")  # no pretrained weights on this machine: said before starting
    assert notice.is_visible() and "Pretrained weights not on this machine" in notice.inner_text()
    assert page.locator('input[name="weights_file"]').is_visible()
    with page.expect_navigation():
        page.click("#weights-notice a")  # the way on without weights: a CNN from scratch
    assert page.input_value("#command") == "train" and page.input_value('select[name="dataset"]') == "my-digits"
    playwright_api.expect(notice).to_be_hidden()
    assert page.locator('select[name="model"]').is_visible()
    page.go_back()
    page.go_back()  # the page the form redirected to: nothing is posted again
    assert "3 images added to my-digits / one" in page.inner_text("#added")
    assert len(list((server["data"] / "my-digits" / "one").iterdir())) == 3
    from test_web_collect import digits_zip

    archive = tmp_path / "pets.zip"
    archive.write_bytes(digits_zip({"zero": 0, "one": 1}))
    page.fill('#zip-form input[name="dataset"]', "zipped")
    page.set_input_files('#zip-form input[name="archive"]', str(archive))
    with page.expect_navigation():
        page.click("#zip-form button[type=submit]")
    assert "zipped.zip kept: 20 images in 2 classes" in page.inner_text("#uploaded")
    assert "zero (3)" in page.inner_text("#made") and "one (3)" in page.inner_text("#made")


def test_export_a_model_and_download_it(page, server, tmp_path):
    """Teachable Machine's last step: the run page's export button downloads the bundle as a .zip."""
    import zipfile

    page.goto(f"{server['url']}/runs/{server['cnn']}")
    page.select_option('#export-form select[name="format"]', "onnx")
    with page.expect_download(timeout=120_000) as download:
        page.click("#export-form button[type=submit]")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == f"{server['cnn']}-onnx.zip"
    names = zipfile.ZipFile(saved).namelist()
    assert f"{server['cnn']}-onnx/model.onnx" in names and f"{server['cnn']}-onnx/preprocessing.json" in names


def test_remove_and_restore_an_image_of_a_class(page, server):
    """A class's page shows its images; Remove moves one aside (kept, never deleted), Restore puts it back."""
    from test_web_collect import digits_of

    from classlab.web.collect import add_images

    add_images(server["data"], "to-prune", "seven", digits_of(7, 4))
    page.goto(server["url"] + "/data/new?dataset=to-prune")
    with page.expect_navigation():
        page.click('#made a[href^="/data/new/class?dataset=to-prune"]')
    page.wait_for_load_state("networkidle")
    assert page.locator("#class-images figure").count() == 4
    assert page.evaluate("[...document.querySelectorAll('#class-images img')].every(i => i.complete && i.naturalWidth > 0)")
    first = page.inner_text("#class-images figure figcaption >> nth=0")
    with page.expect_navigation():
        page.click("#class-images figure button >> nth=0")
    assert f"Removed {first}" in page.inner_text("#removed") and page.locator("#class-images figure").count() == 3
    assert (server["data"] / "to-prune" / ".classlab-removed" / "seven" / first).is_file()
    with page.expect_navigation():
        page.click("#removed-images figure button >> nth=0")
    assert f"Restored {first}" in page.inner_text("#restored") and page.locator("#class-images figure").count() == 4
