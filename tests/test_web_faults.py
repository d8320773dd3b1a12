"""The workbench under faults, with real processes and real signals: the server killed with SIGKILL while a
job trains (the job is shown interrupted and resumes to the end; queued jobs are kept), and a job whose own
process is killed (marked failed, with the last lines of its output)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="signals and /proc as on Linux")


def serve(runs: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "classlab", "serve", "--port", "0", "--runs-dir", str(runs),
                                *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = process.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    assert match, line
    return process, match.group(1)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def post(url: str, form: dict) -> str:
    """POST a form as the page would; the job's page it redirects to (its path)."""
    origin = re.match(r"http://[^/]+", url).group(0)
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST",
                                     headers={"Origin": origin})
    try:
        send_unredirected(request)
    except urllib.error.HTTPError as e:
        assert e.code == 303, e.read()[:500]
        return e.headers["location"]
    raise AssertionError("expected a redirect to the job's page")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def send_unredirected(request: urllib.request.Request, timeout: float = 60) -> int:
    """The response's status, a redirect not followed (urllib raises HTTPError for it and for 4xx/5xx)."""
    with urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout) as response:
        return response.status


def until(condition, timeout: float, what: str):
    """A real process's progress, checked every 0.1 s (there is no event to wait on across processes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen in {timeout} s")


def epochs_done(runs: Path) -> int:
    for progress in runs.glob("*-train-*/progress.json"):
        try:
            return int(json.loads(progress.read_text())["epoch"])
        except (ValueError, KeyError, OSError):
            return 0
    return 0


def test_a_server_killed_while_a_job_trains_shows_it_interrupted_and_resumes_it(tmp_path):
    runs = tmp_path / "runs"
    server, url = serve(runs)
    try:
        job = post(url + "/jobs", {"command": "train", "dataset": "digits", "model": "cnn", "epochs": "40"})
        queued = post(url + "/jobs", {"command": "check", "dataset": "digits"})
        until(lambda: epochs_done(runs) >= 2, 120, "two epochs")
    finally:
        server.send_signal(signal.SIGKILL)  # no cleanup of any kind
        server.wait(10)
    run = next(runs.glob("*-train-digits"))
    server, url = serve(runs)
    try:
        page = get(url + job)
        assert 'id="job-status">interrupted<' in page and "Resume the run" in page
        assert f"classlab train --resume {run}" in page
        assert (run / "last.pt").is_file() and (run / "config.json").is_file()  # the run folder is intact
        assert not [p for p in Path("/proc").glob("[0-9]*") if _job_process(p, job.rsplit("/", 1)[1])]
        # the queued job was kept and runs now
        until(lambda: 'id="job-status">done<' in get(url + queued + "/panel"), 120, "the queued check")
        resumed = post(url + job + "/resume", {})
        panel = until(lambda: (lambda p: p if re.search(r'id="job-status">(done|failed)<', p) else None)(
            get(url + resumed + "/panel")), 300, "the resumed run")
        assert 'id="job-status">done<' in panel, panel[-1500:]
        history = (run / "history.csv").read_text().strip().splitlines()
        assert len(history) == 41 and json.loads((run / "metrics.json").read_text())["accuracy"] > 0.5
    finally:
        server.terminate()
        server.wait(10)


def _job_process(proc: Path, job_id: str) -> bool:
    try:
        return f"CLASSLAB_JOB={job_id}".encode() in (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def test_a_job_whose_process_is_killed_is_marked_failed_with_the_end_of_its_output(tmp_path):
    runs = tmp_path / "runs"
    server, url = serve(runs)
    try:
        job = post(url + "/jobs", {"command": "train", "dataset": "digits", "model": "cnn", "epochs": "200"})
        until(lambda: epochs_done(runs) >= 1, 120, "an epoch")
        job_id = job.rsplit("/", 1)[1]
        pid = until(lambda: min((int(p.name) for p in Path("/proc").glob("[0-9]*") if _job_process(p, job_id)),
                                default=None), 30, "the job's process")  # the leader: the lowest pid
        os.kill(pid, signal.SIGKILL)
        panel = until(lambda: (lambda p: p if 'id="job-status">failed<' in p else None)(get(url + job + "/panel")),
                      60, "the job marked failed")
        assert "exit status -9" in panel and "<details open>" in panel and "epoch" in panel.split('class="log"')[1]
        journal = runs / ".jobs" / f"{job_id}.json"  # written just after the status the page shows
        entry = until(lambda: (lambda e: e if e["status"] != "running" else None)(json.loads(journal.read_text())),
                      10, "the journal updated")
        assert entry["status"] == "failed" and entry["returncode"] == -9
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def full_disk(tmp_path):
    """A real 16 MB filesystem (tmpfs; needs the right to mount, else the test is skipped)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_up(folder: Path) -> None:
    """Take every free byte of the filesystem under ``folder``."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass
    for n in range(100):  # the last few blocks, in small files
        try:
            (folder / f"filler-{n}").write_bytes(b"\0" * 512)
        except OSError:
            break


def tree_digest(folder: Path) -> dict:
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_full_disk_loses_nothing_says_what_was_not_written_and_the_server_keeps_serving(digits_runs, full_disk):
    import shutil

    from starlette.testclient import TestClient

    from classlab.web.app import create_app

    runs = full_disk / "runs"
    run = digits_runs["cnn"]
    shutil.copytree(digits_runs["root"] / run, runs / run)
    (runs / run / "corrections.csv").write_text("id,action,label\nall/00005,drop,\n")
    with TestClient(create_app(runs), base_url="http://127.0.0.1") as client:
        fill_up(full_disk)
        before = tree_digest(runs)
        origin = {"origin": "http://127.0.0.1"}
        decided = client.post(f"/runs/{run}/card/decide", data={"id": "all/00003", "action": "drop"}, headers=origin)
        assert decided.status_code == 400 and "cannot write" in decided.text and "corrections.csv" in decided.text
        noted = client.post(f"/runs/{run}/notes", data={"name": "x"}, headers=origin)
        assert noted.status_code == 400 and "workbench.json" in noted.text
        assert client.get("/runs").status_code == 200 and client.get(f"/runs/{run}").status_code == 200
        assert tree_digest(runs) == before  # nothing already there changed, no half-written file left
    # a training run on the full disk: refused in one line, exit status 2, the runs already there untouched
    out = subprocess.run([sys.executable, "-m", "classlab", "train", "digits", "--model", "mlp", "--epochs", "1",
                          "--runs-dir", str(runs)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "cannot write" in out.stderr and "Traceback" not in out.stderr
    assert {k: v for k, v in tree_digest(runs).items() if k.startswith(run)} == before
    # a report written into a run already there (explain's): refused in one line, the run's files unchanged
    fill_up(full_disk)  # again: the refused run above may have left a few blocks free
    before = tree_digest(runs / run)
    out = subprocess.run([sys.executable, "-m", "classlab", "explain", str(runs / run), "--top", "8"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "cannot write" in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert tree_digest(runs / run) == before


def test_runs_deleted_edited_or_swapped_for_links_under_the_server_give_clear_pages(digits_runs, tmp_path):
    """A run folder deleted or its files edited by hand while the server has it cached, a run swapped for a
    link to somewhere else, and a runs folder of 5,000 runs: pages answer in words, never a 500."""
    import shutil

    from starlette.testclient import TestClient

    from classlab.web.app import create_app

    runs = tmp_path / "runs"
    shutil.copytree(digits_runs["root"], runs)
    cnn, mlp = digits_runs["cnn"], digits_runs["mlp"]
    outside = tmp_path / "elsewhere"
    shutil.copytree(runs / mlp, outside)
    with TestClient(create_app(runs), base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        assert client.get(f"/runs/{cnn}/card", params={"id": "all/00003"}).status_code == 200  # cached now
        shutil.rmtree(runs / cnn)
        for path in (f"/runs/{cnn}", f"/runs/{cnn}/card?id=all/00003", f"/runs/{cnn}/gallery",
                     f"/runs/{cnn}/image?id=all/00003", f"/runs/{cnn}/charts.json"):
            response = client.get(path)
            assert response.status_code == 404 and "no such run" in response.text, (path, response.status_code)
        (runs / mlp / "metrics.json").write_text("{ not json")  # edited by hand
        (runs / mlp / "history.csv").write_bytes(b"\xff\xfe garbage\x00")
        for path in (f"/runs/{mlp}", f"/runs/{mlp}/charts.json", "/runs", f"/runs/{mlp}/gallery"):
            assert client.get(path).status_code < 500, path
        shutil.rmtree(runs / mlp)
        (runs / mlp).symlink_to(outside)  # swapped for a link leading out of the runs folder
        assert client.get(f"/runs/{mlp}").status_code == 404
        assert client.get(f"/runs/{mlp}/files/config.json").status_code == 404
        for k in range(5000):
            folder = runs / f"20250101-{k:06d}-train-many"
            folder.mkdir()
            (folder / "config.json").write_text('{"command": "train", "data": "digits", "created": "2025-01-01"}')
        page = client.get("/runs")
        assert page.status_code == 200 and "5,0" in page.text  # "5,00x runs"
        assert client.get("/runs-table", params={"q": "many", "sort": "epochs"}).status_code == 200


def test_two_tabs_deciding_labels_of_one_run_at_once_keep_every_decision_once(digits_runs, tmp_path):
    """Two clients (two tabs) relabel and drop images of the same run at the same time: corrections.csv ends
    with every decision exactly once (one writer at a time; each write reads the file it replaces)."""
    import shutil
    import threading

    from starlette.testclient import TestClient

    from classlab.data.corrections import read_corrections
    from classlab.web.app import create_app

    runs = tmp_path / "runs"
    run = digits_runs["cnn"]
    shutil.copytree(digits_runs["root"] / run, runs / run)
    (runs / run / "corrections.csv").unlink(missing_ok=True)
    app = create_app(runs)
    ids = [f"all/{k:05d}" for k in range(40)]
    errors = []

    def tab(mine: list[str], action: str):
        client = TestClient(app, base_url="http://127.0.0.1")
        for item in mine:
            response = client.post(f"/runs/{run}/card/decide", data={"id": item, "action": action},
                                   headers={"origin": "http://127.0.0.1"})
            if response.status_code != 200:
                errors.append((item, response.status_code))
    tabs = [threading.Thread(target=tab, args=(ids[0::2], "drop")), threading.Thread(target=tab, args=(ids[1::2], "keep"))]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join(120)
    assert not errors
    kept = read_corrections(runs / run / "corrections.csv")
    assert sorted(c.id for c in kept) == ids  # each once
    assert {c.id: c.action for c in kept} == {i: ("drop" if k % 2 == 0 else "keep") for k, i in enumerate(ids)}


def test_two_servers_and_four_tabs_uploading_into_one_made_dataset_keep_every_image_once(tmp_path):
    """Two `classlab serve` processes on one data folder, two clients each, all adding images named alike
    (phones call every photo IMG_0001.jpg) to the same class of the same new dataset at once, plus one image
    that every client sends: each distinct image is kept exactly once, none replaced by another."""
    import hashlib
    import threading
    import uuid

    from test_web import digit_png

    def upload(url: str, image: bytes) -> int:
        """POST one image to Make-a-dataset as the page's form does (multipart), the redirect not followed."""
        boundary = uuid.uuid4().hex
        fields = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                  for k, v in (("dataset", "race"), ("class_name", "digits"))]
        body = b"".join(fields) + (f'--{boundary}\r\nContent-Disposition: form-data; name="images"; '
                                   f'filename="IMG_0001.png"\r\nContent-Type: image/png\r\n\r\n').encode() \
            + image + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(url + "/data/new", data=body, method="POST", headers={
            "Origin": url, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            return send_unredirected(request)
        except urllib.error.HTTPError as e:
            return e.code

    data = tmp_path / "data"
    servers = [serve(tmp_path / f"runs{k}", "--data-dir", str(data)) for k in range(2)]
    shared = digit_png(5, 40)
    sent, errors = [shared], []

    def tab(url: str, digit: int):
        mine = [digit_png(digit, 12 + i) for i in range(10)]
        sent.extend(mine)
        for image in mine + [shared]:
            status = upload(url, image)
            if status != 303:
                errors.append(status)
    try:
        tabs = [threading.Thread(target=tab, args=(url, digit)) for digit, (_, url) in enumerate(servers * 2)]
        for t in tabs:
            t.start()
        for t in tabs:
            t.join(120)
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(10)
    assert not errors
    kept = sorted((data / "race" / "digits").iterdir())
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in kept]
    assert sorted(digests) == sorted({hashlib.sha256(b).hexdigest() for b in sent})  # each exactly once
    assert len(kept) == 41 and all(p.suffix == ".png" and not p.name.startswith(".") for p in kept)
    assert sorted(p.name for p in (data / "race").iterdir()) == [".classlab-dataset.json", "digits"]


def test_a_full_disk_during_an_upload_names_what_was_not_written_and_leaves_no_part(full_disk, tmp_path):
    from starlette.testclient import TestClient

    from test_web import digit_png
    from test_web_collect import digits_zip

    from classlab.web.app import create_app

    data = full_disk / "data"
    with TestClient(create_app(tmp_path / "runs", data_dir=data), base_url="http://127.0.0.1") as client:
        origin = {"origin": "http://127.0.0.1"}
        first = client.post("/data/new", data={"dataset": "mine", "class_name": "eight"}, headers=origin,
                            files={"images": ("a.png", digit_png(8, 20), "image/png")}, follow_redirects=False)
        assert first.status_code == 303
        fill_up(full_disk)
        before = tree_digest(data)
        more = client.post("/data/new", data={"dataset": "mine", "class_name": "eight"}, headers=origin,
                           files=[("images", (f"b{k}.png", digit_png(8, 24 + k), "image/png")) for k in range(3)])
        assert more.status_code == 400
        assert all(f"b{k}.png: not written (No space left on device)" in more.text for k in range(3))
        new_class = client.post("/data/new", data={"dataset": "mine", "class_name": "nine"}, headers=origin,
                                files={"images": ("c.png", digit_png(9, 20), "image/png")})
        assert new_class.status_code == 400 and "c.png: not written (No space left on device)" in new_class.text
        assert not (data / "mine" / "nine").exists()  # no empty class folder left to read as a class
        archive = client.post("/data/new/zip", data={"dataset": "zipped"}, headers=origin,
                              files={"archive": ("z.zip", digits_zip({"zero": 0, "one": 1}), "application/zip")})
        assert archive.status_code == 400 and "cannot write to the data folder" in archive.text
        assert "Traceback" not in more.text + new_class.text + archive.text
        assert tree_digest(data) == before  # nothing changed, no part file left
        assert client.get("/data/new?dataset=mine").status_code == 200


def test_a_full_disk_mid_training_stops_in_one_line_keeps_the_last_checkpoint_and_resume_finishes(full_disk, tmp_path):
    """The disk fills while a training run writes its checkpoints: the run stops in one line (exit 2) naming
    the file, its last.pt stays whole, and once space is freed --resume finishes the run."""
    from classlab.checkpoint import load_checkpoint

    runs = full_disk / "runs"
    env = {**os.environ, "CLASSLAB_CACHE": str(tmp_path / "cache")}
    process = subprocess.Popen([sys.executable, "-m", "classlab", "train", "digits", "--model", "mlp", "--epochs", "400",
                                "--runs-dir", str(runs)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    until(lambda: epochs_done(runs) >= 2, 120, "two epochs")
    fill_up(full_disk)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err[-2000:]
    assert "cannot write" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3
    run = next(runs.glob("*-train-*"))
    saved = load_checkpoint(run / "last.pt")  # whole: a weights_only load of a complete file
    assert 2 <= saved["fit_state"]["epoch"] < 400
    (full_disk / "filler").unlink()
    resumed = subprocess.run([sys.executable, "-m", "classlab", "train", "--resume", str(run)], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["accuracy"] > 0.8
