"""Training jobs started from the workbench: one at a time, the rest queued, each a plain ``classlab``
command line in its own process writing a normal run directory (resumable with ``classlab train --resume``).
The job's run is found by the id the job puts in its environment (``CLASSLAB_JOB``, recorded in the run's
config.json); its epochs are read from the run's ``progress.json``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..safe_files import read_json

COMMANDS = ("train", "transfer", "workshop", "check", "explain", "evaluate")
LOG_TAIL = 4000


@dataclass
class Job:
    id: str
    args: list[str]
    title: str
    status: str = "queued"  # queued, running, done, failed, cancelled
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    returncode: int | None = None
    log: Path | None = None
    after: str | None = None  # the run this job starts from: the one retrained with corrections, or evaluated
    found_run: Path | None = None  # the run directory, once found
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def command(self) -> str:
        return self.args[0]

    @property
    def retrains(self) -> bool:
        """A retrain with corrections: its run is compared with the run it started from when it is done."""
        return self.command == "train" and self.after is not None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    @property
    def source_run(self) -> str | None:
        """The run this job works on (explain, evaluate, a retrain): its page is where the user goes back to."""
        if self.after:
            return self.after
        return Path(self.args[1]).name if self.command == "explain" and len(self.args) > 1 else None

    def phase(self) -> str:
        """The newest progress line of the job's output (classlab.progress): 'Decoding images: 12,000/60,000
        img (20%), ...', what a job does before its first epoch and between them."""
        from ..progress import PREFIX

        lines = [ln for ln in self.log_tail().splitlines() if ln.startswith(PREFIX)]
        return lines[-1][len(PREFIX):] if lines else ""

    def log_tail(self) -> str:
        if self.log is None or not self.log.is_file():
            return ""
        with open(self.log, "rb") as f:
            f.seek(max(0, self.log.stat().st_size - LOG_TAIL))
            text = f.read().decode("utf-8", "replace")
        return text.replace("\r", "\n")


class JobQueue:
    """A worker thread runs queued jobs in order, one at a time. ``cancel`` ends a running job's process
    group (its run keeps last.pt: resume continues it) or takes a queued one off the queue."""

    def __init__(self, runs_dir: Path, python: str = sys.executable):
        self.runs_dir, self.python = Path(runs_dir), python
        self.jobs: dict[str, Job] = {}
        self._queue: deque[str] = deque()
        # one condition guards every job's status and is notified at each change (wait_for waits on it)
        self._lock, self._wake = threading.Condition(), threading.Event()
        self.work_dir = Path(tempfile.mkdtemp(prefix="classlab-jobs-"))
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name="classlab-jobs", daemon=True)
        self._worker.start()

    def submit(self, args: list[str], title: str, after: str | None = None) -> Job:
        if not args or args[0] not in COMMANDS:
            raise ValueError(f"jobs run one of {', '.join(COMMANDS)}")
        job = Job(uuid.uuid4().hex[:12], list(args), title, after=after)
        job.log = self.work_dir / f"{job.id}.log"
        with self._lock:
            self.jobs[job.id] = job
            self._queue.append(job.id)
        self._wake.set()
        return job

    def cancel(self, job_id: str) -> Job | None:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.finished:
                return job
            if job.status == "queued":
                self._queue.remove(job.id)
                job.status, job.ended = "cancelled", time.time()
                self._lock.notify_all()
                return job
            process = job.process
            job.status = "cancelled"
            self._lock.notify_all()
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        return job

    def wait_for(self, job: Job, statuses, timeout: float | None = None) -> bool:
        """Block until ``job``'s status is one of ``statuses`` (True), or ``timeout`` seconds pass (False):
        woken by each status change, never by polling."""
        with self._lock:
            return self._lock.wait_for(lambda: job.status in statuses, timeout)

    def listing(self) -> list[Job]:
        with self._lock:
            return sorted(self.jobs.values(), key=lambda j: j.submitted, reverse=True)

    def position(self, job: Job) -> int | None:
        with self._lock:
            return list(self._queue).index(job.id) + 1 if job.id in self._queue else None

    def run_dir(self, job: Job) -> Path | None:
        """The newest run directory the job's command created (found by its job id in config.json): a train
        job's run, or the step a workshop is on (its summary run once it is done)."""
        if job.started is None or (job.finished and job.found_run is not None):
            return job.found_run
        try:
            recent = sorted((p for p in self.runs_dir.iterdir() if p.is_dir()
                             and p.stat().st_mtime >= job.started - 2), key=lambda p: p.name)
        except OSError:
            return job.found_run
        mine = [p for p in recent if (read_json(p / "config.json", 4 << 20) or {}).get("job") == job.id]
        job.found_run = mine[-1] if mine else job.found_run
        return job.found_run

    def shutdown(self) -> None:
        self._stopping = True
        for job in self.listing():
            self.cancel(job.id)
        self._wake.set()

    def _work(self) -> None:
        while not self._stopping:
            self._wake.wait(1.0)
            self._wake.clear()
            while not self._stopping:
                with self._lock:
                    if not self._queue:
                        break
                    job = self.jobs[self._queue.popleft()]
                    job.status, job.started = "running", time.time()
                    self._lock.notify_all()
                self._run(job)

    def _run(self, job: Job) -> None:
        env = {**os.environ, "CLASSLAB_JOB": job.id, "PYTHONUNBUFFERED": "1", "CLASSLAB_RUNS": str(self.runs_dir)}
        argv = [self.python, "-m", "classlab", *job.args]
        with open(job.log, "wb") as log:
            try:
                process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=env, start_new_session=True)
            except OSError as e:
                log.write(f"cannot start the job: {e}\n".encode())
                with self._lock:
                    job.status, job.ended = "failed", time.time()
                    self._lock.notify_all()
                return
            with self._lock:
                job.process = process
                cancelled = job.status == "cancelled"
            if cancelled:
                os.killpg(process.pid, signal.SIGTERM)
            code = process.wait()
        with self._lock:
            job.returncode, job.ended, job.process = code, time.time(), None
            if job.status != "cancelled":
                job.status = "done" if code == 0 else "failed"
            self._lock.notify_all()


def progress(run_dir: Path | None) -> dict:
    """What a job's run has done so far: the newest progress.json under the run (transfer writes one per
    stage), with an ETA from the mean epoch time."""
    if run_dir is None:
        return {}
    files = sorted(run_dir.glob("**/progress.json"), key=lambda p: p.stat().st_mtime if p.exists() else 0)
    data = read_json(files[-1], 16 << 20) if files else None
    if not isinstance(data, dict) or not isinstance(data.get("history"), list):
        return {}
    history = [h for h in data["history"] if isinstance(h, dict)]
    seconds = [h.get("seconds") for h in history if isinstance(h.get("seconds"), (int, float))]
    epoch, epochs = data.get("epoch") or len(history), data.get("epochs") or len(history)
    eta = (sum(seconds) / len(seconds)) * max(0, epochs - epoch) if seconds and not data.get("stopped_early") else 0.0
    return {"epoch": epoch, "epochs": epochs, "history": history, "eta_seconds": eta,
            "stage": files[-1].parent.name if files[-1].parent != run_dir else ""}
