"""The workbench's routes through Starlette's TestClient: every page and action, bad input included, and the
security rules (loopback Host, token, same-origin POSTs, paths that stay inside the served folders, escaping)."""

import io
import html
import json
from pathlib import Path
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from classlab.web.app import create_app  # noqa: E402

from conftest import make_class_folder, png_bytes  # noqa: E402

ORIGIN = {"origin": "http://127.0.0.1"}


@pytest.fixture(scope="module")
def runs(digits_runs, tmp_path_factory):
    """A private copy of the digits runs (the tests here write corrections and new runs into it)."""
    root = tmp_path_factory.mktemp("web") / "runs"
    shutil.copytree(digits_runs["root"], root)
    return {**digits_runs, "root": root}


@pytest.fixture(scope="module")
def client(runs):
    with TestClient(create_app(runs["root"]), base_url="http://127.0.0.1") as c:
        yield c


def digit_png(value: int = 8, side: int = 32) -> bytes:
    from sklearn.datasets import load_digits

    d = load_digits()
    image = (d.images[np.flatnonzero(d.target == value)[0]] * 255 / 16).astype(np.uint8)
    return png_bytes(np.array(Image.fromarray(image).resize((side, side))))


def wait_for(job_page: str, client, timeout: float = 120) -> str:
    """The job's panel once the job has finished: waits on the queue's status changes (no polling)."""
    jobs = client.app.state.bench.jobs
    job = jobs.jobs[job_page.rstrip("/").rsplit("/", 1)[1]]
    assert jobs.wait_for(job, ("done", "failed", "cancelled"), timeout), f"{job_page} did not finish in {timeout} s"
    return client.get(job_page + "/panel").text


# -- pages --------------------------------------------------------------------------------------------

def test_runs_page_lists_sorts_and_filters(client, runs):
    page = client.get("/")
    assert page.status_code == 200
    assert runs["cnn"] in page.text and runs["mlp"] in page.text
    assert '<script src="/static/htmx.min.js"' in page.text
    by_accuracy = client.get("/runs-table?sort=accuracy&order=asc").text
    accuracies = [float(a) for a in re.findall(r'class="num">([\d.]+)%<', by_accuracy)]
    assert accuracies == sorted(accuracies) and len(accuracies) == 2
    only_mlp = client.get("/runs-table?q=mlp").text
    assert runs["mlp"] in only_mlp and runs["cnn"] not in only_mlp
    assert "No runs here yet" in client.get("/runs-table?q=nothing-matches-this").text
    assert client.get("/runs-table?sort=evil&order=up").status_code == 200  # unknown keys fall back


def test_run_page_shows_report_confusion_cells_and_explanations(client, runs):
    page = client.get(f"/runs/{runs['cnn']}").text
    for expected in ("Test results", "95% CI", "Confusion matrix", "Per class", "Top losses", "Calibration",
                     "Label issues", "curves.png", "reliability.png"):
        assert expected in page, expected
    metrics = json.loads((runs["root"] / runs["cnn"] / "metrics.json").read_text())
    from html import escape

    from classlab.notebook import headline_rows, metrics_html

    rows = headline_rows(metrics)  # the one metrics table: the page and the notebook display show the same rows
    assert [r[0] for r in rows][:2] == ["accuracy", "macro F1"] and rows[0][1] == f"{100 * metrics['accuracy']:.2f}%"
    for name, value, interval in rows:
        assert f"<th>{escape(name)}</th><td>{escape(value)}</td>" in page and escape(value) in metrics_html(metrics)
    cm = np.array(metrics["confusion_matrix"])
    t, p = map(int, np.argwhere(cm - np.diag(np.diag(cm)) > 0)[0]) if (cm.sum() - np.trace(cm)) else (0, 0)
    cell = client.get(f"/runs/{runs['cnn']}/cell?t={t}&p={p}")
    assert cell.status_code == 200
    shown = re.findall(r'href="[^"]*card\?id=([^"&]+)"', cell.text)
    assert len(shown) == min(cm[t, p], 48)
    losses = [float(x) for x in re.findall(r"loss ([\d.]+)<", cell.text)]
    assert losses == sorted(losses, reverse=True)  # worst first
    assert client.get(f"/runs/{runs['cnn']}/cell?t=99&p=0").status_code == 400
    assert client.get(f"/runs/{runs['cnn']}/cell?t=x&p=0").status_code == 400


def test_image_and_card(client, runs):
    run = runs["cnn"]
    image = client.get(f"/runs/{run}/image?id=all/00000&side=48")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (48, 48)  # 8x8 digits, enlarged sharp
    assert client.get(f"/runs/{run}/image?id=../../etc/passwd").status_code == 404
    card = client.get(f"/runs/{run}/card?id=all/00000")
    assert card.status_code == 200
    for expected in ("original", "what the model saw", "Grad-CAM", "Nearest training images", "Top 5"):
        assert expected in card.text, expected
    partial = client.get(f"/runs/{run}/card?id=all/00000", headers={"hx-request": "true"})
    assert partial.text.lstrip().startswith("<section")


def test_files_are_served_from_inside_the_run_only(client, runs, tmp_path):
    run = runs["cnn"]
    assert client.get(f"/runs/{run}/files/curves.png").status_code == 200
    assert client.get(f"/runs/{run}/files/explain/reliability.png").status_code == 200
    for bad in ("../../../etc/passwd", "..%2F..%2Fconfig.json", "%2e%2e/%2e%2e/etc/passwd", "/etc/passwd",
                "best.pt", ".hidden.json", "explain/..%2F..%2Fmetrics.json"):
        assert client.get(f"/runs/{run}/files/{bad}").status_code == 404, bad
    outside = tmp_path / "secret.json"
    outside.write_text("{}")
    (runs["root"] / run / "leak.json").symlink_to(outside)
    assert client.get(f"/runs/{run}/files/leak.json").status_code == 404
    for bad_run in ("%2e%2e", "..%2Fruns", "%2E%2E%2F%2E%2E", "nope", ".hidden", "..."):
        assert client.get(f"/runs/{bad_run}").status_code == 404, bad_run
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(runs["root"] / runs["mlp"], elsewhere)
    (runs["root"] / "linked-run").symlink_to(elsewhere)
    assert client.get("/runs/linked-run").status_code == 404  # a link leading out of the runs folder


def test_compare_from_the_runs_page(client, runs):
    response = client.post("/compare", data={"runs": [runs["mlp"], runs["cnn"]]}, headers=ORIGIN,
                           follow_redirects=False)
    assert response.status_code == 303
    page = client.get(response.headers["location"]).text
    assert "Comparison" in page and "McNemar" in page and "baseline" in page
    assert re.search(rf'<b>baseline</b> <a href="/runs/{runs["mlp"]}">.*?</td><td>train</td><td>mlp</td><td>digits</td>', page)
    assert "<h2>cnn · digits vs mlp · digits</h2>" in page  # runs named by model and data, not by id alone
    verdicts = re.findall(r"<p>((?:No significant|\S.*? is significantly).*?)</p>", page)
    assert len(verdicts) == 2 and all("mlp · digits" in v and "cnn · digits" in v for v in verdicts), verdicts
    assert not any(runs["mlp"] in v or runs["cnn"] in v for v in verdicts)
    # the boxes ticked cnn first: cnn is the baseline, whatever the table's order
    ticked = client.post("/compare", data={"runs": [runs["mlp"], runs["cnn"]], "ticked": f"{runs['cnn']},{runs['mlp']}"},
                         headers=ORIGIN)
    assert re.search(rf'<b>baseline</b> <a href="/runs/{runs["cnn"]}">', ticked.text)
    assert client.post("/compare", data={"runs": [runs["cnn"]]}, headers=ORIGIN).status_code == 400
    assert client.post("/compare", data={"runs": [runs["cnn"], "../x"]}, headers=ORIGIN).status_code == 404


def test_predict_uploads(client, runs):
    files = [("images", ("eight.png", digit_png(8), "image/png")), ("images", ("two.png", digit_png(2), "image/png")),
             ("images", ("notes.txt", b"not an image", "text/plain")), ("images", ("empty.png", b"", "image/png"))]
    page = client.post("/predict", data={"run": runs["cnn"]}, files=files, headers=ORIGIN)
    assert page.status_code == 200
    titles = re.findall(r"<h3>(.*?)</h3>", page.text)
    assert [t.split(":")[0] for t in titles] == ["eight.png", "two.png"]
    assert "notes.txt: not a readable image" in page.text and "empty.png: the file is empty" in page.text
    key = re.search(r'/predictions/(\w+)\.csv', page.text).group(1)
    csv_text = client.get(f"/predictions/{key}.csv").text.splitlines()
    assert csv_text[0].startswith("file,label1,prob1") and len(csv_text) == 3
    assert client.get("/predictions/nope.csv").status_code == 404
    none = client.post("/predict", data={"run": runs["cnn"]}, headers=ORIGIN)
    assert none.status_code == 400 and "choose one or more image files" in none.text


def test_uploads_too_big_or_too_many_pixels_are_refused(client, runs):
    big = np.zeros((7000, 7000), np.uint8)  # 49 M pixels, a small PNG
    files = [("images", ("huge.png", png_bytes(big), "image/png")),
             ("images", ("heavy.png", b"\x89PNG" + os.urandom(21 << 20), "image/png"))]
    page = client.post("/predict", data={"run": runs["cnn"]}, files=files, headers=ORIGIN)
    assert "huge.png: 7000x7000 pixels is over" in page.text
    assert "heavy.png: larger than the 20 MB upload limit" in page.text


# -- security -----------------------------------------------------------------------------------------

def test_only_loopback_host_names_are_answered(client):
    assert client.get("/", headers={"host": "evil.example"}).status_code == 403  # DNS rebinding
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200
    page = client.get("/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_state_changes_need_a_same_origin_post(client, runs):
    for headers in ({}, {"origin": "http://evil.example"}, {"origin": "null"}, {"referer": "http://evil.example/x"}):
        r = client.post(f"/runs/{runs['cnn']}/review", data={"id": "x", "action": "keep"}, headers=headers)
        assert r.status_code == 403, headers
    assert client.get("/jobs").status_code == 405  # starting a job is never a GET


def test_token_is_required_when_set(runs):
    app = create_app(runs["root"], token="s3cret", allowed_hosts=("0.0.0.0",))
    with TestClient(app, base_url="http://192.168.1.5") as c:
        assert c.get("/").status_code == 403
        assert c.get("/?token=wrong").status_code == 403
        first = c.get("/?token=s3cret")
        assert first.status_code == 200 and "HttpOnly" in first.headers["set-cookie"]
        assert c.get("/runs").status_code == 200  # the cookie carries it from now on
    with TestClient(app, base_url="http://192.168.1.5") as fresh:  # no cookie: the header alone
        assert fresh.get("/runs", headers={"authorization": "Bearer s3cret"}).status_code == 200


def test_user_content_is_escaped(tmp_path):
    """Class and file names are the user's: a class called <img onerror> must show as text."""
    from classlab import api

    hostile = "<img src=x onerror=alert(1)>"
    data = make_class_folder(tmp_path / "data", classes=(hostile, "plain"), per_class=4, size=(20, 20))
    (data / "plain" / "001.png").rename(data / "plain" / '"><svg onload=alert(2)>.png')
    result = api.check(data, runs_dir=tmp_path / "runs")
    with TestClient(create_app(tmp_path / "runs"), base_url="http://127.0.0.1") as c:
        page = c.get(f"/runs/{result.run_dir.name}").text
    i = page.find(hostile)
    assert i < 0, page[i - 300:i + 50]
    assert "&lt;img src=x" in page  # shown, as text
    assert "<svg onload" not in page


# -- jobs, review, corrections ------------------------------------------------------------------------

def test_train_job_runs_with_live_progress(client, runs):
    form = {"command": "train", "dataset": "digits", "model": "mlp", "epochs": "2"}
    start = client.post("/jobs", data=form, headers=ORIGIN, follow_redirects=False)
    assert start.status_code == 303
    job = start.headers["location"]
    panel = wait_for(job, client)
    assert 'id="job-status">done<' in panel, panel[-2000:]
    assert "epoch <b id=\"job-epoch\">2</b> of 2" in panel and "<svg" in panel
    run_id = re.search(r'run <a href="/runs/([^"]+)"', panel).group(1)
    config = json.loads((runs["root"] / run_id / "config.json").read_text())
    assert config["job"] == job.rsplit("/", 1)[1] and config["options"]["train"]["epochs"] == 2
    # a finished job says how it scored and where to go next
    metrics = json.loads((runs["root"] / run_id / "metrics.json").read_text())
    outcome = panel.split('id="job-outcome"')[1]
    assert f"Test accuracy <b>{100 * metrics['accuracy']:.2f}%</b>" in outcome
    assert f"on {metrics['n']} test images" in outcome
    for link in (f'href="/runs/{run_id}"', f'href="/predict?run={run_id}"', f'href="/runs/{run_id}#export-form"',
                 f'action="/runs/{run_id}/explain"'):
        assert link in outcome, link
    with client.stream("GET", job + "/events") as events:  # a finished job: one progress event, then done
        body = "".join(events.iter_text())
    assert body.startswith("event: progress") and "event: done" in body
    assert client.get("/train").text.count("/jobs/") >= 1


@pytest.mark.parametrize("form, message", [
    ({"command": "rm", "dataset": "digits"}, "choose train, transfer, workshop, check"),
    ({"command": "train", "dataset": "digits", "model": "nope"}, "unknown model"),
    ({"command": "train", "dataset": "digits", "epochs": "-3"}, "epochs must be a whole number"),
    ({"command": "train", "dataset": "../../etc"}, "no data folder is served"),
    ({"command": "transfer", "dataset": "digits", "backbone": "evil"}, "unknown backbone"),
])
def test_bad_job_forms_are_refused(client, form, message):
    response = client.post("/jobs", data=form, headers=ORIGIN)
    assert response.status_code == 400 and message in response.text


def test_queued_job_can_be_cancelled(runs):
    from classlab.web.jobs import JobQueue

    queue = JobQueue(runs["root"], python=sys.executable)
    try:
        first = queue.submit(["train", "digits", "--model", "mlp", "--epochs", "200"], "long")
        second = queue.submit(["train", "digits", "--model", "mlp", "--epochs", "1"], "waiting")
        assert queue.position(second) in (1, 2)
        assert queue.cancel(second.id).status == "cancelled"
        assert queue.wait_for(first, ("running",), 30)
        queue.cancel(first.id)
        assert queue.wait_for(first, ("cancelled",), 30)
        assert first.status == "cancelled" and second.status == "cancelled"
    finally:
        queue.shutdown()


def test_review_writes_corrections_and_retrain_compares(client, runs):
    run = runs["cnn"]
    issues = [line.split(",")[1] for line in
              (runs["root"] / run / "explain" / "label_issues.csv").read_text().splitlines()[1:]]
    # the CNN trained on digits with 12 labels planted wrong (conftest.digits_runs): explain finds them
    assert len(set(issues) & set(runs["planted"])) >= 6, (issues[:20], runs["planted"])
    page = client.get(f"/runs/{run}/review").text
    first = re.search(r'data-id="([^"]+)"', page).group(1)
    relabel = client.post(f"/runs/{run}/review", data={"id": first, "action": "relabel", "label": ""},
                          headers={**ORIGIN, "hx-request": "true"})
    second = re.search(r'data-id="([^"]+)"', relabel.text).group(1)
    assert second != first and "relabelled 1" in relabel.text
    client.post(f"/runs/{run}/review", data={"id": second, "action": "drop"}, headers=ORIGIN)
    rows = (runs["root"] / run / "corrections.csv").read_text().splitlines()
    assert rows[0] == "id,action,label" and rows[1].startswith(f"{first},relabel,") and rows[2] == f"{second},drop,"
    assert client.post(f"/runs/{run}/review", data={"id": "not-queued", "action": "keep"}, headers=ORIGIN).status_code == 400
    assert client.post(f"/runs/{run}/review", data={"id": first, "action": "burn"}, headers=ORIGIN).status_code == 400
    start = client.post(f"/runs/{run}/retrain", headers=ORIGIN, follow_redirects=False)
    panel = wait_for(start.headers["location"], client, timeout=180)
    assert 'id="job-status">done<' in panel, panel[-2000:]
    new_run = re.search(r'run <a href="/runs/([^"]+)"', panel).group(1)
    assert (runs["root"] / new_run / "corrections_applied.csv").is_file()
    assert "Compare before and after" in panel
    compared = client.post("/compare", data={"runs": [run, new_run]}, headers=ORIGIN)
    assert compared.status_code == 200 and "McNemar" in compared.text  # the same test images
    # the retrained run has the first one's model and data: the names tell them apart by the runs' times
    heading = re.search(r"<h2>(.*?) vs (.*?)</h2>", compared.text).groups()
    assert heading[0] != heading[1] and all(h.startswith("cnn · digits (") for h in heading), heading


def test_data_page_and_doctor_findings(client, runs, tmp_path):
    assert "Run the dataset doctor" in client.get("/data").text
    start = client.post("/jobs", data={"command": "check", "dataset": "digits"}, headers=ORIGIN, follow_redirects=False)
    panel = wait_for(start.headers["location"], client)
    run_id = re.search(r'run <a href="/runs/([^"]+)"', panel).group(1)
    page = client.get(f"/runs/{run_id}").text
    assert "Dataset doctor: digits" in page and "Class distribution" in page
    assert run_id in client.get("/data").text


def test_static_html_report(runs, tmp_path):
    from classlab.cli import main

    out = tmp_path / "site"
    assert main(["report", str(runs["root"] / runs["cnn"]), "--html", str(out)]) == 0
    index = (out / "index.html").read_text()
    assert "Confusion matrix" in index and "<form" not in index and 'href="/' not in index and 'src="/' not in index
    for link in re.findall(r'(?:src|href)="([^"#][^"]*)"', index):
        if link.startswith("data:"):
            continue
        assert (out / link).exists(), link
    cells = list((out / "cells").glob("cell_*.html"))
    assert cells and all('src="../images/' in c.read_text() or "loss" in c.read_text() for c in cells)
    assert main(["report", str(runs["root"] / runs["cnn"]), "--html", str(out)]) == 2  # never over a folder


def test_serve_starts_without_torch_and_prints_its_url(runs, tmp_path):
    code = "import sys, classlab.web.app, classlab.cli.web; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    env = {k: v for k, v in os.environ.items() if k != "CLASSLAB_DATA"}
    process = subprocess.Popen([sys.executable, "-m", "classlab", "serve", "--port", "0", "--runs-dir", str(runs["root"])],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        line = process.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/)", line).group(1)
        assert f"datasets from {tmp_path / 'data'};" in process.stdout.readline()  # ./data unless told
        import urllib.request

        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200 and runs["cnn"] in response.read().decode()
        with urllib.request.urlopen(url + "data/new", timeout=10) as response:
            assert 'id="collect-form"' in response.read().decode()  # somewhere to keep a dataset made here
    finally:
        process.terminate()
        process.wait(10)
    busy = subprocess.run([sys.executable, "-m", "classlab", "serve", "--host", "203.0.113.7", "--port", "1"],
                          capture_output=True, text=True, timeout=30)
    assert busy.returncode == 2 and "cannot listen on 203.0.113.7:1" in busy.stderr


def test_explain_job_from_the_run_page(client, runs):
    run = runs["mlp"]
    assert "Explain this run" in client.get(f"/runs/{run}").text
    start = client.post(f"/runs/{run}/explain", headers=ORIGIN, follow_redirects=False)
    panel = wait_for(start.headers["location"], client)
    assert 'id="job-status">done<' in panel, panel[-2000:]
    assert f'for run <a href="/runs/{run}">' in panel  # the explain job links back to the run it explained
    page = client.get(f"/runs/{run}").text
    assert "Top losses" in page and "Explain again" in page
    card = client.get(f"/runs/{run}/card?id=all/00003")
    assert card.status_code == 200 and "Occlusion" in card.text  # an MLP has no convolution for Grad-CAM


def test_evaluate_job_from_the_run_page(client, runs):
    run = runs["cnn"]
    page = client.get(f"/runs/{run}").text
    assert 'action="/runs/' + run + '/evaluate"' in page and "Evaluate on" in page
    start = client.post(f"/runs/{run}/evaluate", data={"dataset": "digits", "split": "all", "drop_seen": "on"},
                        headers=ORIGIN, follow_redirects=False)
    panel = wait_for(start.headers["location"], client)
    assert 'id="job-status">done<' in panel, panel[-2000:]
    assert "Compare before and after" not in panel  # that is for retraining with corrections, not other data
    evaluated = sorted(runs["root"].glob("*-evaluate-digits"))[-1]
    metrics = json.loads((evaluated / "metrics.json").read_text())
    own = json.loads((runs["root"] / run / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(own["accuracy"]) and metrics["evaluate"]["seen_left_out"]
    source_page = client.get(f"/runs/{run}").text
    assert "Evaluated: " in source_page  # the run page links the job, and lists the evaluation run
    assert "Evaluations of this model" in source_page and f'href="/runs/{evaluated.name}"' in source_page
    row = re.search(rf"{evaluated.name}.*?</tr>", client.get("/runs-table", params={"q": "evaluate"}).text, re.S)
    assert row and ">cnn<" in row.group(0)  # the evaluation's row names the evaluated model
    assert f'href="/runs/{run}"' in client.get(f"/runs/{evaluated.name}").text
    for bad in ({"dataset": "../etc", "split": "all"}, {"dataset": "digits", "split": "everything"}):
        assert client.post(f"/runs/{run}/evaluate", data=bad, headers=ORIGIN).status_code == 400
    assert client.post(f"/runs/{evaluated.name}/evaluate", data={"dataset": "digits"}, headers=ORIGIN).status_code == 400


def test_cancel_a_job_from_its_page(client):
    start = client.post("/jobs", data={"command": "train", "dataset": "digits", "model": "mlp", "epochs": "500"},
                        headers=ORIGIN, follow_redirects=False)
    job = start.headers["location"]
    assert client.post(job + "/cancel", headers=ORIGIN, follow_redirects=False).status_code == 303
    panel = wait_for(job, client)
    assert 'id="job-status">cancelled<' in panel
    assert client.get("/jobs/nope").status_code == 404


def test_serve_on_another_address_prints_a_token_url(runs):
    import urllib.error
    import urllib.request

    process = subprocess.Popen([sys.executable, "-m", "classlab", "serve", "--host", "0.0.0.0", "--port", "0",
                                "--runs-dir", str(runs["root"])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        port, token = re.search(r"http://0\.0\.0\.0:(\d+)/\?token=([\w-]{20,})", line).groups()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
        assert refused.value.code == 403
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?token={token}", timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        process.wait(10)


def test_doctor_page_shows_the_embedding_findings(tmp_path):
    """A check.json with an embedding pass (as `classlab check --embeddings` writes it) renders its pairs,
    outliers and neighbour disagreements with thumbnails by id."""
    from classlab import api

    data = make_class_folder(tmp_path / "data", classes=("cat", "dog"), per_class=4, size=(20, 20))
    result = api.check(data, runs_dir=tmp_path / "runs")
    check_file = result.run_dir / "check.json"
    report = json.loads(check_file.read_text())
    report["embeddings"] = {"backbone": "mobilenet_v2", "threshold": 0.93,
                            "near_duplicates": {"across_splits": [], "within_split": [
                                {"files": ["cat/000.png", "cat/001.png"], "splits": [None, None],
                                 "classes": ["cat", "cat"], "similarity": 0.97}]},
                            "outliers": [{"file": "dog/003.png", "split": None, "class": "dog"}],
                            "neighbours_disagree": [{"file": "dog/002.png", "split": None, "class": "dog",
                                                     "neighbours_say": "cat"}]}
    check_file.write_text(json.dumps(report))
    with TestClient(create_app(tmp_path / "runs"), base_url="http://127.0.0.1") as c:
        page = c.get(f"/runs/{result.run_dir.name}").text
        assert "Embedding pass (mobilenet_v2)" in page and "cosine 0.970" in page
        assert "Outliers: far from every other image (1)" in page and "dog → cat?" in page
        assert c.get(f"/runs/{result.run_dir.name}/image?id=dog/003.png").status_code == 200


def test_serve_with_an_unusable_runs_folder_is_one_line(tmp_path, capsys):
    from classlab.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["serve", "--runs-dir", str(blocker / "runs"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("classlab: error: cannot use") and "Traceback" not in err


def test_the_workshop_run_of_make_demo_renders_with_a_link_per_stop(tmp_path, monkeypatch):
    """What `make demo` leaves: a workshop run whose explore stop has no score (it once crashed the page), with
    the text report's step-by-step table, the link to its comparison run and the note that a stop was skipped."""
    from classlab import api

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))  # as offline: the transfer stop is skipped
    result = api.workshop("digits", runs_dir=tmp_path / "runs")
    with TestClient(create_app(tmp_path / "runs"), base_url="http://127.0.0.1") as c:
        page = c.get(f"/runs/{result.run_dir.name}")
        assert page.status_code == 200 and "The workshop's path" in page.text
        stops = re.findall(r'<td><a href="/runs/([^"]+)">', page.text)
        assert len(stops) >= 4 and all(c.get(f"/runs/{s}").status_code == 200 for s in stops)
        steps = re.findall(r"<tr><td>([^<]+ → [^<]+)</td>", page.text.split('id="workshop-steps"')[1])
        assert steps == [f"{st['from']} → {st['to']}" for st in result.details["steps"]] and len(steps) >= 3
        compare_run = re.search(r'<a href="/runs/([^"]+)">the comparison run</a>', page.text).group(1)
        assert "Comparison" in c.get(f"/runs/{compare_run}").text
        notes = page.text.split('id="workshop-notes"')[1]
        assert "Transfer learning skipped: MobileNetV2" in notes and "No budget; the path took" in notes


def test_durations_show_the_digits_they_need():
    """A digits epoch takes milliseconds: the job table shows 0.0423 s, not 0.0."""
    from classlab.web.app import seconds_text

    assert [seconds_text(v) for v in (512.3, 99.94, 3.4, 0.0423, 0.0004, None, True, "x")] == \
        ["512", "99.9", "3.4", "0.0423", "< 0.001", "", "", ""]


@pytest.mark.parametrize("epochs, expected", [("", []), ("7", ["--head-epochs", "7"])])
def test_a_transfer_job_leaves_the_heads_epochs_to_its_default_unless_given(epochs, expected, torch_home):
    """An empty Epochs field lets transfer size the head's training (about 100 steps on a small folder)."""
    from classlab.web.forms import job_args

    form = {"command": "transfer", "dataset": "digits", "backbone": "mobilenet_v2", "mode": "features",
            "epochs": epochs}
    args, _ = job_args(None, form)
    assert args[:2] == ["transfer", "digits"] and "--mode" in args
    assert [a for i, a in enumerate(args) if a == "--head-epochs" or args[i - 1] == "--head-epochs"] == expected


def test_a_run_without_label_issues_says_none_were_found_and_how_they_were_looked_for(client, runs):
    """Issue 30, item 13: an explained run whose search flagged nothing, and a run never explained, each say
    so on the run page and the review page (instead of "every suspected label issue is reviewed")."""
    root = runs["root"]
    clean = root / (runs["cnn"] + "-no-issues")
    shutil.copytree(root / runs["cnn"], clean)
    (clean / "corrections.csv").unlink(missing_ok=True)
    header = (clean / "explain" / "label_issues.csv").read_text().splitlines()[0]
    (clean / "explain" / "label_issues.csv").write_text(header + "\n")
    findings = json.loads((clean / "explain" / "explain.json").read_text())
    findings["label_issues"] = {**findings["label_issues"], "flagged": 0}
    (clean / "explain" / "explain.json").write_text(json.dumps(findings))
    searched = findings["label_issues"]["searched"]
    review = client.get(f"/runs/{clean.name}/review").text
    assert "No suspected label issues were found" in review and f"each of {searched} training images" in review
    assert "Every suspected label issue is reviewed" not in review
    page = client.get(f"/runs/{clean.name}").text
    assert 'id="no-label-issues">None found' in page and f"each of {searched} training images" in page
    unexplained = root / (runs["mlp"] + "-unexplained")  # (another test here may explain the MLP run itself)
    shutil.copytree(root / runs["mlp"], unexplained, ignore=shutil.ignore_patterns("explain", "corrections.csv"))
    never = client.get(f"/runs/{unexplained.name}/review").text
    assert "has not been explained yet" in never and f'action="/runs/{unexplained.name}/explain"' in never


def test_evaluate_offers_the_runs_own_data_first_and_refuses_other_classes_before_starting(runs, tmp_path):
    """A digits model offered a folder of cat and dog photos: the page selects digits (what it trained on),
    and choosing the photos is refused at once, in words, with no job started (it used to fail 15 s in)."""
    data = tmp_path / "data"
    make_class_folder(data / "pets", ("cat", "dog"), per_class=3)
    with TestClient(create_app(runs["root"], data_dir=data), base_url="http://127.0.0.1") as c:
        run = runs["cnn"]
        page = c.get(f"/runs/{run}").text
        options = re.findall(r'<option value="([^"]*)">([^<]*)</option>', page.split('id="evaluate-form"')[1])
        assert options[0] == ("digits", "digits (scikit-learn&#39;s 8x8 digits, embedded) · the data it trained on")
        assert ("pets", "pets/ (image folder)") in options
        before = len(c.app.state.bench.jobs.listing())
        refused = c.post(f"/runs/{run}/evaluate", data={"dataset": "pets", "split": "all"}, headers=ORIGIN)
        assert refused.status_code == 400
        assert "pets has classes this model does not know (cat, dog); its classes are 0, 1, 2" in refused.text
        assert len(c.app.state.bench.jobs.listing()) == before
        # asked by htmx, the refusal is the message alone, for the page to show where the answer goes
        partial = c.post(f"/runs/{run}/evaluate", data={"dataset": "pets"}, headers={**ORIGIN, "HX-Request": "true"})
        assert partial.status_code == 400 and partial.text.startswith('<p class="error" role="alert">Cannot do that:')
        assert "<html" not in partial.text


def test_pages_say_1_image_and_let_htmx_show_refusals():
    from classlab.progress import counted

    assert [counted(1, "image"), counted(2, "image"), counted(1024, "class"), counted(3, "query")] == \
        ["1 image", "2 images", "1,024 classes", "3 queries"]
    import classlab.web

    base = (Path(classlab.web.__file__).parent / "templates" / "base.html").read_text()
    config = json.loads(re.search(r"name=\"htmx-config\" content='([^']*)'", base).group(1))
    assert {"code": "4..", "swap": True, "error": True} in config["responseHandling"]  # a 400's words are shown
    assert 'hx-indicator="#busy"' in base and 'id="busy"' in base


def test_a_long_jobs_phase_shows_before_its_first_epoch_and_its_table_stays_short(tmp_path):
    """What a running job's page says before progress.json exists (the newest progress line of its output:
    decoding, features), and a 129-epoch history shown as its last 10 rows with a curve that is not squeezed
    into the left of a 400-epoch axis."""
    from classlab.progress import PREFIX
    from classlab.web.charts import curves_svg
    from classlab.web.jobs import Job
    from classlab.web.views import EPOCH_ROWS, job_context

    log = tmp_path / "job.log"
    log.write_text(f"loading\n{PREFIX}Reading headers: 60,000 img in 4 s\n"
                   f"{PREFIX}Decoding images: 12,000/60,000 images (20%), 1,200 images/s, about 40 s left\nwarning: x\n")
    job = Job("j1", ["transfer", "cifar10"], "transfer cifar10", status="running", started=1.0, log=log)
    assert job.phase() == "Decoding images: 12,000/60,000 images (20%), 1,200 images/s, about 40 s left"
    assert Job("j2", ["explain", "/runs/20261206-1-train-digits"], "explain").source_run == "20261206-1-train-digits"

    class Bench:  # what job_context reads of the workbench
        class jobs:
            run_dir = staticmethod(lambda job: run_dir)
            position = staticmethod(lambda job: 0)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    history = [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.5, "val_loss": 1 / e, "val_acc": 0.5, "seconds": 1}
               for e in range(1, 130)]
    (run_dir / "progress.json").write_text(json.dumps({"epoch": 129, "epochs": 400, "history": history}))
    context = job_context(Bench, job)
    assert context["phase"].startswith("Decoding images") and [r["epoch"] for r in context["rows"]] == \
        list(range(130 - EPOCH_ROWS, 130)) and context["hidden_rows"] == 129 - EPOCH_ROWS
    assert "epoch 162</text>" in context["chart"]  # the axis runs a quarter past the epochs done, not to 400
    assert "epoch 10</text>" in curves_svg(history[:3], 400) and "epoch 5</text>" in curves_svg(history[:3], 5)


def test_progress_lines_in_logs_are_quiet_for_quick_phases_and_say_rate_and_time_left():
    import io

    from classlab.progress import LogBar

    now = [0.0]
    out = io.StringIO()
    quick = LogBar(total=100, desc="Decoding images", unit="img", clock=lambda: now[0], out=out)
    quick.update(100)
    quick.close()
    assert out.getvalue() == ""  # under QUIET_FOR seconds: nothing
    slow = LogBar(total=1000, desc="features", unit="image", clock=lambda: now[0], out=out)
    for t, n in ((1, 50), (4, 150), (10, 100), (20, 200), (30, 500)):
        now[0] = t
        slow.update(n)
    slow.close()
    assert out.getvalue().splitlines() == [
        "[phase] features: 200/1,000 images (20%), 50 images/s, about 16 s left",
        "[phase] features: 500/1,000 images (50%), 25 images/s, about 20 s left",
        "[phase] features: 1,000 images in 30 s"]
    now[0] = 100
    batches = LogBar(total=None, desc="epoch 1/3", unit="batch", clock=lambda: now[0], out=out)
    batches.update(4)
    assert batches.line(110) == "[phase] epoch 1/3: 4 batches, 0.4 batches/s"  # counts in plural, never '4 batch'
    batches.set_postfix(**{"loss": "0.4100", "images/s": "28"})
    assert batches.line(110).endswith("0.4 batches/s, loss 0.4100, 28 images/s")
    one = LogBar(total=None, desc="epoch 1/3", unit="batch", clock=lambda: now[0], out=out)
    one.update(1)
    assert one.line(now[0] + 10).startswith("[phase] epoch 1/3: 1 batch,")


def test_the_doctor_page_shows_every_finding_of_check_txt(tmp_path):
    """A folder with a grayscale image among RGB ones, a corrupt file, a stray file and images too small for
    the near-duplicate search: every line check.txt gives a finding is on the page, warnings and notes
    included (the page once said 'warnings 2' and showed one)."""
    from classlab import api

    root = make_class_folder(tmp_path / "d", ("cat", "dog"), per_class=4, size=(12, 12))
    (root / "cat" / "gray.png").write_bytes(png_bytes(np.full((12, 12), 90, np.uint8)))
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (root / "notes.txt").write_text("not an image")
    runs_root = tmp_path / "runs"
    result = api.check(str(root), runs_dir=runs_root)
    text = (result.run_dir / "check.txt").read_text()
    assert "mixed colour modes" in text and "near-duplicate search skipped" in text and "ERROR files with an image" in text
    with TestClient(create_app(runs_root), base_url="http://127.0.0.1") as c:
        page = c.get(f"/runs/{result.run_dir.name}").text
    shown = [html.unescape(re.sub(r"<[^>]+>", "", li)).split(":")[0].strip()
             for li in re.findall(r'<li class="finding [a-z]+">(.*?)(?:<details>|</li>)', page, re.S)]
    listed = [ln for ln in text.split("\n\n")[1].splitlines() if not ln.startswith("  ")]
    assert len(shown) == len(listed) >= 4
    for line, item in zip(listed, shown):
        title = line.removeprefix("ERROR ").removeprefix("warning: ").split(":")[0]
        assert item.split(" ", 1)[1].startswith(title[:40]), (line, item)


def test_runs_are_named_noted_trashed_and_restored_never_deleted(runs, tmp_path):
    """The runs list shows the settings people filter on; a run gets a name and a note (searchable), moves to
    the trash (its folder intact, off the list) and comes back from the Trash page under its own id."""
    from classlab.web.jobs import Job

    root = tmp_path / "runs"
    shutil.copytree(runs["root"], root)
    run = runs["cnn"]
    files_before = sorted(p.relative_to(root / run) for p in (root / run).rglob("*"))
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        table = c.get("/runs-table").text
        config = json.loads((root / run / "config.json").read_text())["options"]["train"]
        row = re.search(rf'href="/runs/{run}".*?</tr>', table, re.S).group(0)
        assert ">8x8<" in row and f'>{config["epochs"]}<' in row and f">{config['lr']:g}<" in row
        for header in ("image size", "epochs", "learning rate", "model / backbone"):
            assert header in table
        saved = c.post(f"/runs/{run}/notes", data={"name": "  small  CNN\tbaseline ", "note": "filters 8, 16\r\nno aug"},
                       headers=ORIGIN, follow_redirects=False)
        assert saved.status_code == 303
        assert json.loads((root / run / "workbench.json").read_text()) == {"name": "small CNN baseline",
                                                                            "note": "filters 8, 16\nno aug"}
        page = c.get(f"/runs/{run}").text
        assert "<h1>small CNN baseline</h1>" in page and 'id="run-note">filters 8, 16' in page
        assert "small CNN baseline" in c.get("/runs-table?q=baseline").text
        assert f'href="/runs/{run}"' in c.get("/runs-table?q=no aug").text
        assert f'href="/runs/{run}"' not in c.get("/runs-table?q=zzz").text
        too_long = c.post(f"/runs/{run}/notes", data={"name": "x" * 121}, headers=ORIGIN)
        assert too_long.status_code == 400 and "at most 120 characters" in too_long.text
        # the trash: off the list, on the Trash page, the folder intact, restored under its own id
        moved = c.post(f"/runs/{run}/trash", headers=ORIGIN, follow_redirects=False)
        assert moved.status_code == 303 and moved.headers["location"] == f"/trash?moved={run}"
        assert not (root / run).exists() and f'href="/runs/{run}"' not in c.get("/runs-table").text
        assert c.get(f"/runs/{run}").status_code == 404
        trash = c.get("/trash").text
        assert "small CNN baseline" in trash and f'action="/trash/{run}/restore"' in trash
        kept = sorted(p.relative_to(root / ".trash" / run) for p in (root / ".trash" / run).rglob("*"))
        assert kept == sorted([*files_before, Path("workbench.json")])  # every file kept
        back = c.post(f"/trash/{run}/restore", headers=ORIGIN, follow_redirects=False)
        assert back.headers["location"] == f"/runs/{run}" and c.get(f"/runs/{run}").status_code == 200
        assert "The trash is empty" in c.get("/trash").text
        for bad in ("../" + run, "..", ".trash", f"{run}~x"):
            assert c.post(f"/trash/{bad}/restore", headers=ORIGIN).status_code in (400, 404)
        # a run a job is writing stays where it is
        c.app.state.bench.jobs.jobs["busy"] = Job("busy", ["explain", str(root / run)], "explain", status="running")
        try:
            refused = c.post(f"/runs/{run}/trash", headers=ORIGIN)
            assert refused.status_code == 400 and "being written by a running job" in refused.text
        finally:
            del c.app.state.bench.jobs.jobs["busy"]
        assert (root / run / "best.pt").is_file()


def test_an_image_card_relabels_keeps_or_drops_its_image_as_the_review_page_does(runs, tmp_path):
    from classlab.data.corrections import read_corrections

    root = tmp_path / "runs"
    shutil.copytree(runs["root"], root)
    run = runs["cnn"]
    (root / run / "corrections.csv").unlink(missing_ok=True)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        card = c.get(f"/runs/{run}/card", params={"id": "all/00003"}, headers={"HX-Request": "true"}).text
        assert f'hx-post="/runs/{run}/card/decide"' in card and "Keep “3”" in card  # all/00003 is a 3
        decided = c.post(f"/runs/{run}/card/decide", data={"id": "all/00003", "action": "relabel", "label": "8"},
                         headers={**ORIGIN, "HX-Request": "true"})
        assert decided.status_code == 200 and "Relabelled <b>3</b> → <b>8</b>" in decided.text
        assert [(x.id, x.action, x.label) for x in read_corrections(root / run / "corrections.csv")] == \
            [("all/00003", "relabel", "8")]
        assert '<option value="8" selected>' in c.get(f"/runs/{run}/card", params={"id": "all/00003"}).text
        same = c.post(f"/runs/{run}/card/decide", data={"id": "all/00003", "action": "relabel", "label": "3"},
                      headers=ORIGIN)  # relabelled as its own label: kept
        assert "Kept as <b>3</b>" in same.text
        c.post(f"/runs/{run}/card/decide", data={"id": "all/00005", "action": "drop"}, headers=ORIGIN)
        kept = {x.id: x.action for x in read_corrections(root / run / "corrections.csv")}
        assert kept == {"all/00003": "keep", "all/00005": "drop"}
        for bad, code in (({"id": "all/00003", "action": "relabel", "label": "cat"}, 400),
                          ({"id": "all/00003", "action": "burn"}, 400), ({"id": "no/such", "action": "drop"}, 404)):
            assert c.post(f"/runs/{run}/card/decide", data=bad, headers=ORIGIN).status_code == code
        assert len(read_corrections(root / run / "corrections.csv")) == 2


def test_a_cards_neighbours_follow_it_when_the_training_images_are_not_embedded_yet(runs, tmp_path):
    """The first card of a run comes without waiting for every training image to be embedded: it asks for its
    nearest training images in a second request; once they are built, cards carry them at once. Opening a
    run's page loads its model in the background."""
    root = tmp_path / "runs"
    shutil.copytree(runs["root"], root)
    run = runs["cnn"]
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        bench = c.app.state.bench
        c.get(f"/runs/{run}")
        assert bench.warming.acquire(timeout=120)  # the page's background load finished
        bench.warming.release()
        assert bench.explainers.get(run)[1]._model is not None
        first = c.get(f"/runs/{run}/card", params={"id": "all/00003"}, headers={"HX-Request": "true"}).text
        assert f'hx-get="/runs/{run}/card/neighbours?id=all/00003"' in first and "Nearest training images" in first
        near = c.get(f"/runs/{run}/card/neighbours", params={"id": "all/00003"}).text
        assert near.count('class="thumb"') == 5
        second = c.get(f"/runs/{run}/card", params={"id": "all/00004"}, headers={"HX-Request": "true"}).text
        assert "card/neighbours" not in second and second.count('class="thumb"') == 5
        assert c.get(f"/runs/{run}/card/neighbours", params={"id": "nope"}).status_code == 404
    # the embedded training images are kept in the run: the next server (or explain) reads them, until the
    # model changes
    from classlab.commands.explain import TrainSpace
    from classlab.data.options import load_and_split, saved_options
    from classlab.runs import RunResult

    assert (root / run / "train_space.npz").is_file()
    ds, split = load_and_split(saved_options(root / run))
    kept = TrainSpace(RunResult.load(root / run), ds, split.indices("train"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TrainSpace, "embed", lambda self, images: pytest.fail("embedded again"))
        again = TrainSpace(RunResult.load(root / run), ds, split.indices("train"))
    assert np.array_equal(again.vectors, kept.vectors) and again.metric == "cosine"
    os.utime(root / run / "best.pt", ns=(1, 1))  # a new model: computed again
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TrainSpace, "embed", lambda self, images: (_ for _ in ()).throw(RuntimeError("recomputed")))
        with pytest.raises(RuntimeError, match="recomputed"):
            TrainSpace(RunResult.load(root / run), ds, split.indices("train"))


def test_the_gallery_filters_sorts_and_pages_a_runs_test_images_beside_its_embedding_map(client, runs):
    import numpy as np

    run = runs["cnn"]
    assert f'href="/runs/{run}/gallery"' in client.get(f"/runs/{run}").text
    with np.load(runs["root"] / run / "probabilities.npz") as z:
        ids, y, proba = z["test_ids"].astype(str), z["test_labels"], z["test_probs"]
    loss = -np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1))
    page = client.get(f"/runs/{run}/gallery").text
    shown = re.findall(r'class="tile[^"]*" href="/runs/[^/]+/card\?id=([^"]+)"', page)
    assert len(shown) == 48 and f"{len(ids)} images of {len(ids)}" in page  # a page of 48, worst first
    assert [s.replace("%2F", "/") for s in shown] == list(ids[np.argsort(-loss, kind="stable")][:48])
    wrong = client.get(f"/runs/{run}/gallery", params={"correct": "wrong", "sort": "-confidence"}).text
    tiles = re.findall(r'class="tile ([^"]*)"', wrong)
    mistakes = int((proba.argmax(1) != y).sum())
    assert len(tiles) == mistakes and set(tiles) == {"wrong"}
    threes = client.get(f"/runs/{run}/gallery", params={"true": "3", "predicted": "3", "min": "0.9"}).text
    expected = int(((y == 3) & (proba.argmax(1) == 3) & (proba.max(1) >= 0.9)).sum())
    assert len(re.findall(r'class="tile', threes)) == expected and expected > 0
    last = client.get(f"/runs/{run}/gallery", params={"page": "99"}).text  # beyond the end: the last page
    assert f"page {-(-len(ids) // 48)} of {-(-len(ids) // 48)}" in last
    odd = client.get(f"/runs/{run}/gallery", params={"true": "x", "min": "nan", "sort": "evil", "page": "-1"})
    assert odd.status_code == 200  # malformed filters fall back to none
    # explained runs carry their map: a dot per test image, linked to its card
    assert 'id="embedding-map"' in page and page.count('class="dot c') == len(ids)
    assert "suspected label issue (0)" in page  # the test labels of digits are clean: confident learning flags none
    # the same run with 5 test labels made wrong (images the model is sure of, given the next class): the gallery
    # flags exactly what confident learning's rule, computed here independently, flags -- the 5 among them
    import shutil

    wrong_run = f"{run}-mislabelled"
    shutil.copytree(runs["root"] / run, runs["root"] / wrong_run)
    try:
        _gallery_flags_mislabelled_test_images(client, runs["root"], run, wrong_run, ids, y, proba)
    finally:  # other tests of this module count the runs
        shutil.rmtree(runs["root"] / wrong_run)


def _gallery_flags_mislabelled_test_images(client, root, run, wrong_run, ids, y, proba):
    import numpy as np

    sure = np.flatnonzero((proba.argmax(1) == y) & (proba.max(1) > 0.99))[:5]
    assert len(sure) == 5
    bad = y.copy()
    bad[sure] = (y[sure] + 1) % proba.shape[1]
    with np.load(root / run / "probabilities.npz") as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(root / wrong_run / "probabilities.npz", **{**arrays, "test_labels": bad})
    thresholds = np.array([proba[bad == j, j].mean() for j in range(proba.shape[1])])
    confident = np.where(proba >= thresholds, proba, -1)
    suspect = ids[(confident.max(1) >= 0) & (confident.argmax(1) != bad)]
    flagged = client.get(f"/runs/{wrong_run}/gallery", params={"issue": "1", "sort": "id"}).text
    shown = [s.replace("%2F", "/") for s in re.findall(r'class="tile[^"]*" href="/runs/[^/]+/card\?id=([^"]+)"', flagged)]
    assert set(ids[sure]) <= set(shown) and shown == sorted(suspect)[:48], (ids[sure], shown[:8])
    assert f"suspected label issue ({len(suspect)})" in flagged and flagged.count(">label?</b>") == len(shown)


def test_the_run_pages_chart_data_comes_from_its_files(client, runs):
    """charts.json (what the vendored uPlot draws): history.csv's columns, per-class scores and calibration
    bins, equal to the run's own files."""
    import csv

    run = runs["cnn"]
    page = client.get(f"/runs/{run}").text
    assert '<script src="/static/uplot.min.js" defer></script>' in page and 'id="perclass-chart"' in page
    assert client.get("/static/uplot.min.js").status_code == 200 and "uPlot" in client.get("/static/uplot.LICENSE").text
    data = client.get(f"/runs/{run}/charts.json").json()
    history = list(csv.DictReader((runs["root"] / run / "history.csv").open()))
    assert data["curves"]["training"]["val_loss"] == [float(r["val_loss"]) for r in history]
    assert data["curves"]["training"]["epoch"] == [float(r["epoch"]) for r in history]
    metrics = json.loads((runs["root"] / run / "metrics.json").read_text())
    assert data["per_class"]["f1"] == [c["f1"] for c in metrics["per_class"]]
    reliability = json.loads((runs["root"] / run / "explain" / "explain.json").read_text())["calibration"]["reliability"]
    assert sum(data["calibration"]["count"]) == sum(reliability["count"]) and min(data["calibration"]["count"]) > 0
    assert "<script" not in client.get("/runs-table").text  # pages without charts load no chart code
    assert "uplot" not in client.get("/runs").text


def test_one_runs_slow_load_does_not_stall_other_runs():
    """A run's dataset (or explainer) being built holds only that run's lock: another run's entry is served
    meanwhile, and two requests for the slow one build it once."""
    import threading

    from classlab.web.recent import Recent

    cache, release, calls = Recent(4), threading.Event(), []

    def slow():
        calls.append("a")
        assert release.wait(30)
        return "A"
    first = threading.Thread(target=lambda: cache.get_or_make("a", slow, serialise=True))
    second = threading.Thread(target=lambda: cache.get_or_make("a", slow, serialise=True))
    first.start()
    second.start()
    done = threading.Event()
    other = threading.Thread(target=lambda: (cache.get_or_make("b", lambda: "B", serialise=True), done.set()))
    other.start()
    assert done.wait(5), "run b waited for run a's load"
    release.set()
    for t in (first, second, other):
        t.join(10)
    assert calls == ["a"] and cache.get("a") == "A" and cache.get("b") == "B"
