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


def serve(runs: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "classlab", "serve", "--port", "0", "--runs-dir", str(runs)],
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

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    try:
        urllib.request.build_opener(NoRedirect).open(request, timeout=30)
    except urllib.error.HTTPError as e:
        assert e.code == 303, e.read()[:500]
        return e.headers["location"]
    raise AssertionError("expected a redirect to the job's page")


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
        entry = json.loads((runs / ".jobs" / f"{job_id}.json").read_text())
        assert entry["status"] == "failed" and entry["returncode"] == -9
    finally:
        server.terminate()
        server.wait(10)
