"""The workbench's speed targets: the runs page with 500 runs under 200 ms, ``classlab serve`` answering within
2 s of its start (no torch import until a page needs a model).

Baseline, measured in the same run: ``classlab.runs.list_runs`` (what ``classlab runs`` does: read every
config.json and metrics.json, no cache) on the same 500 runs.

    python benchmarks/workbench.py [--runs 500] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def make_runs(root: Path, n: int) -> None:
    """n run directories shaped like real ones (config.json, metrics.json of a 10-class run, a few files)."""
    from classlab import api

    real = api.train("digits", "mlp", epochs=1, runs_dir=root / "seed", progress=False).run_dir
    config, metrics = json.loads((real / "config.json").read_text()), (real / "metrics.json").read_text()
    for i in range(n):
        run = root / "runs" / f"20260101-{i:06d}-train-digits"
        run.mkdir(parents=True)
        config["created"] = f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}"
        config["options"]["train"]["model"] = ("mlp", "cnn", "lenet", "resnet18")[i % 4]
        (run / "config.json").write_text(json.dumps(config))
        (run / "metrics.json").write_text(metrics.replace('"accuracy": 0.', f'"accuracy": 0.{i % 10}', 1))
        for name in ("report.md", "history.csv", "predictions.csv"):
            shutil.copy(real / name, run / name)


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def serve_start(runs: Path) -> float:
    """Seconds from starting ``classlab serve`` to its first answered page."""
    t = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "classlab", "serve", "--port", "0", "--runs-dir", str(runs)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = process.stdout.readline().split(" on ", 1)[1].strip()
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
        return time.perf_counter() - t
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    from starlette.testclient import TestClient

    from classlab.runs import list_runs
    from classlab.web.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_runs(root, args.runs)
        runs = root / "runs"
        baseline = timed(lambda: list_runs(runs), args.repeat)
        with TestClient(create_app(runs), base_url="http://127.0.0.1") as client:
            first = timed(lambda: client.get("/"), 1)[0]
            warm = timed(lambda: client.get("/"), args.repeat)
            sorted_page = timed(lambda: client.get("/runs-table?sort=accuracy&q=cnn"), args.repeat)
            assert client.get("/").text.count("/runs/2026") >= args.runs
        starts = [serve_start(runs) for _ in range(3)]
    median = statistics.median
    print(f"{args.runs} runs")
    print(f"baseline list_runs (no cache, no HTML): {1000 * median(baseline):7.1f} ms")
    print(f"runs page, first request (cold cache): {1000 * first:7.1f} ms")
    print(f"runs page, cached summaries:           {1000 * median(warm):7.1f} ms  "
          f"({median(baseline) / median(warm):.1f}x the baseline's speed)  target < 200 ms")
    print(f"runs table sorted + filtered:          {1000 * median(sorted_page):7.1f} ms")
    print(f"classlab serve to first page:          {median(starts):7.2f} s   target < 2 s")


if __name__ == "__main__":
    main()
