"""The workbench under load (issue 31): locust's simulated users against a real ``classlab serve`` over a runs
folder of real small runs and their copies, first with no job, then while a training job runs.

    .venv/bin/python benchmarks/load.py                 # 20 users, 200 runs, 60 s a phase; pip install locust
    .venv/bin/python benchmarks/load.py --users 20 --runs 200 --seconds 120

Users browse the runs list, run pages, confusion cells and image cards of random runs; ``--predictors`` of them
upload an image to Predict instead. Reported per page kind: requests, failures, p50 / p95 / p99 latency; the
server's peak resident memory; the training job's images per second alone and under the load.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

PY = sys.executable


def make_runs(root: Path, count: int) -> list[str]:
    """One real digits CNN run (explained), copied to ``count`` runs under new ids."""
    subprocess.run([PY, "-m", "classlab", "train", "digits", "--model", "cnn", "--epochs", "3", "--runs-dir",
                    str(root)], check=True, capture_output=True)
    original = next(root.glob("*-train-digits"))
    subprocess.run([PY, "-m", "classlab", "explain", str(original)], check=True, capture_output=True)
    ids = [original.name]
    for k in range(1, count):
        copy = root / f"20260101-{k:06d}-train-digits"
        shutil.copytree(original, copy)
        ids.append(copy.name)
    return ids


def serve(root: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([PY, "-m", "classlab", "serve", "--port", "0", "--runs-dir", str(root)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = re.search(r"(http://127\.0\.0\.1:\d+)/", process.stdout.readline()).group(1)
    return process, url


def post(url: str, path: str, form: dict) -> str:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    request = urllib.request.Request(url + path, data=urllib.parse.urlencode(form).encode(), method="POST",
                                     headers={"Origin": url})
    try:
        urllib.request.build_opener(NoRedirect).open(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 303:
            return e.headers["location"]
        raise SystemExit(f"POST {path} answered {e.code}: {e.read()[:300]!r}") from None
    raise SystemExit(f"POST {path} did not start a job")


def job_status(url: str, job: str) -> str:
    with urllib.request.urlopen(url + job + "/panel", timeout=60) as response:
        return re.search(r'id="job-status">(\w+)<', response.read().decode()).group(1)


def job_speed(root: Path, job: str, skip: int = 0) -> float | None:
    """Mean images/s over the epochs of a job's run (found by the job id its config.json records; its
    progress.json, written every epoch, also for a cancelled job), after the first ``skip`` epochs."""
    job_id = job.rsplit("/", 1)[1]
    for run in root.iterdir():
        if not (run / "config.json").is_file():
            continue
        config = json.loads((run / "config.json").read_text())
        if config.get("job") == job_id and (run / "progress.json").is_file():  # written every epoch
            history = json.loads((run / "progress.json").read_text())["history"]
            rates = [float(r["images_per_s"]) for r in history][skip:]
            return sum(rates) / len(rates) if rates else None
    return None


def load_phase(url: str, ids: list[str], users: int, predictors: int, seconds: float) -> dict:
    import gevent
    from locust import HttpUser, between, task
    from locust.env import Environment

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(__import__("numpy").random.default_rng(0).integers(0, 255, (32, 32), dtype="uint8")).save(buf, "PNG")
    png = buf.getvalue()
    image_ids = [f"all/{k:05d}" for k in range(1797)]

    class Browser(HttpUser):
        wait_time = between(0.5, 2.0)

        @task(2)
        def runs_list(self):
            self.client.get("/runs", name="runs list")

        @task(3)
        def run_page(self):
            self.client.get(f"/runs/{random.choice(ids)}", name="run page")

        @task(2)
        def cell(self):
            t, p = random.randrange(10), random.randrange(10)
            self.client.get(f"/runs/{random.choice(ids)}/cell?t={t}&p={p}", name="confusion cell",
                            headers={"HX-Request": "true"})

        @task(3)
        def card(self):
            with self.client.get(f"/runs/{random.choice(ids)}/card?id={random.choice(image_ids)}",
                                 name="image card", headers={"HX-Request": "true"}, catch_response=True) as r:
                if r.status_code == 404:  # an id outside the run's test split: a fair answer, not a failure
                    r.success()

        @task(2)
        def thumbnail(self):
            self.client.get(f"/runs/{random.choice(ids)}/image?id={random.choice(image_ids)}", name="thumbnail")

    class Predictor(HttpUser):
        wait_time = between(1.0, 3.0)
        fixed_count = predictors

        @task
        def predict(self):
            self.client.post("/predict", data={"run": random.choice(ids)}, files={"images": ("x.png", png, "image/png")},
                             headers={"Origin": url}, name="predict upload")

    env = Environment(user_classes=[Browser, Predictor], host=url)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users)
    gevent.spawn_later(seconds, runner.quit)
    runner.greenlet.join()
    table = {}
    for name, entry in sorted(env.stats.entries.items()):
        stat = entry
        table[name[0]] = {"requests": stat.num_requests, "failures": stat.num_failures,
                          "p50_ms": stat.get_response_time_percentile(0.5),
                          "p95_ms": stat.get_response_time_percentile(0.95),
                          "p99_ms": stat.get_response_time_percentile(0.99)}
    total = env.stats.total
    table["all"] = {"requests": total.num_requests, "failures": total.num_failures,
                    "p50_ms": total.get_response_time_percentile(0.5), "p95_ms": total.get_response_time_percentile(0.95),
                    "p99_ms": total.get_response_time_percentile(0.99)}
    return table


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--predictors", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    try:
        import locust  # noqa: F401
    except ImportError:
        raise SystemExit("pip install locust (the bench extra) first")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        t0 = time.perf_counter()
        ids = make_runs(root, args.runs)
        print(f"{len(ids)} runs made in {time.perf_counter() - t0:.0f} s", flush=True)
        server, url = serve(root)
        try:
            alone = post(url, "/jobs", {"command": "train", "dataset": "digits", "model": "cnn", "epochs": "15"})
            while job_status(url, alone) not in ("done", "failed"):
                time.sleep(1)
            speed_alone = job_speed(root, alone, skip=1)  # its first epoch warms up
            quiet = load_phase(url, ids, args.users, args.predictors, args.seconds)
            busy_job = post(url, "/jobs", {"command": "train", "dataset": "digits", "model": "cnn", "epochs": "1000"})
            time.sleep(5)
            busy = load_phase(url, ids, args.users, args.predictors, args.seconds)
            speed_busy = job_speed(root, busy_job, skip=3)  # the epochs before the users arrived left out
            post(url, busy_job + "/cancel", {})
            peak = peak_rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(30)
    print(f"\n{args.users} users ({args.predictors} uploading to Predict), {len(ids)} runs, {args.seconds:.0f} s a phase")
    print("| page | phase | requests | failed | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|---|---|")
    for phase, table in (("no job, cold caches", quiet), ("a job training, warm caches", busy)):
        for name, row in table.items():
            print(f"| {name} | {phase} | {row['requests']} | {row['failures']} | {row['p50_ms']:.0f} | "
                  f"{row['p95_ms']:.0f} | {row['p99_ms']:.0f} |")
    print(f"\nserver peak resident memory: {peak:.0f} MB")
    print(f"training job (digits CNN): {speed_alone or float('nan'):.0f} images/s alone, "
          f"{speed_busy or float('nan'):.0f} images/s under the load")


if __name__ == "__main__":
    main()
