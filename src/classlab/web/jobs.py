"""Training jobs started from the workbench: one at a time, the rest queued, each a plain ``classlab``
command line in its own process writing a normal run directory (resumable with ``classlab train --resume``).
The job's run is found by the id the job puts in its environment (``CLASSLAB_JOB``, recorded in the run's
config.json); its epochs are read from the run's ``progress.json``.

Jobs outlive the server: each is journalled in ``RUNS/.jobs/ID.json`` (written atomically at every change)
beside its log. A server started again after a crash or ``kill -9`` lists them: queued jobs queued again,
a job that was running marked ``interrupted`` (its process, if it outlived the server, stopped; its run
keeps last.pt), with the command that resumes it."""

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

from ..errors import ClasslabError
from ..fileio import write_json
from ..safe_files import read_json

COMMANDS = ("train", "transfer", "workshop", "check", "explain", "evaluate")
JOURNAL = ".jobs"  # in the runs folder: one JSON entry and one log per job
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
    pid: int | None = None  # the job's process (the leader of its process group) while it runs
    process: subprocess.Popen | None = field(default=None, repr=False)

    def record(self) -> dict:
        """What the journal keeps (everything but the live process)."""
        return {"id": self.id, "args": self.args, "title": self.title, "status": self.status,
                "submitted": self.submitted, "started": self.started, "ended": self.ended,
                "returncode": self.returncode, "after": self.after, "pid": self.pid,
                "found_run": str(self.found_run) if self.found_run else None}

    @classmethod
    def from_record(cls, data: dict, log: Path) -> "Job | None":
        try:
            job = cls(str(data["id"]), [str(a) for a in data["args"]], str(data["title"]), str(data["status"]),
                      float(data["submitted"]), data.get("started"), data.get("ended"), data.get("returncode"),
                      log, data.get("after"), Path(data["found_run"]) if data.get("found_run") else None,
                      data.get("pid"))
        except (KeyError, TypeError, ValueError):
            return None  # a damaged entry: left on disk, not listed
        return job if job.args and job.args[0] in COMMANDS else None

    @property
    def resume_args(self) -> list[str] | None:
        """The command that continues an interrupted train job's run (its last.pt), or None."""
        if self.command == "train" and self.found_run is not None and (self.found_run / "last.pt").is_file():
            return ["train", "--resume", str(self.found_run)]
        return None

    @property
    def command(self) -> str:
        return self.args[0]

    @property
    def retrains(self) -> bool:
        """A retrain with corrections: its run is compared with the run it started from when it is done."""
        return self.command == "train" and self.after is not None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled", "interrupted")

    @property
    def source_run(self) -> str | None:
        """The run this job works on (explain, evaluate, a retrain): its page is where the user goes back to."""
        if self.after:
            return self.after
        return Path(self.args[1]).name if self.command == "explain" and len(self.args) > 1 else None

    def phase(self) -> str:
        """The newest progress line of the job's output (classlab.progress): 'Decoding images: 12,000/60,000
        images (20%), ...', what a job does before its first epoch and between them."""
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
        self.work_dir = self.runs_dir / JOURNAL
        try:
            self.work_dir.mkdir(exist_ok=True)
        except OSError:  # a read-only runs folder: jobs live as long as the server
            self.work_dir = Path(tempfile.mkdtemp(prefix="classlab-jobs-"))
        self._stopping = False
        self._recover()
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
            self._journal(job)
        self._wake.set()
        return job

    def _journal(self, job: Job) -> None:
        """The job's entry on disk, renewed (called under the lock at every change). A full disk or a read-only
        folder costs the entry, never the job."""
        try:
            write_json(self.work_dir / f"{job.id}.json", job.record())
        except (OSError, ClasslabError):  # write_json says a full disk as a ClasslabError
            pass

    def _recover(self) -> None:
        """The jobs of an earlier server, from the journal: finished ones listed, queued ones queued again in
        their order, running ones marked interrupted (a process that outlived the server is stopped first)."""
        found = []
        for path in sorted(self.work_dir.glob("*.json")):
            data = read_json(path, 1 << 20)
            job = Job.from_record(data, self.work_dir / f"{path.stem}.log") if isinstance(data, dict) else None
            if job is not None and job.id == path.stem:
                found.append(job)
        for job in sorted(found, key=lambda j: j.submitted):
            if job.status == "running":
                _stop_group(job.pid, job.id)
                job.status, job.ended, job.pid = "interrupted", job.ended or time.time(), None
                self.run_dir(job)  # found now, while its config.json names the job
                self._journal(job)
            elif job.status == "queued":
                self._queue.append(job.id)
            self.jobs[job.id] = job
        if self._queue:
            self._wake.set()

    def cancel(self, job_id: str) -> Job | None:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.finished:
                return job
            if job.status == "queued":
                self._queue.remove(job.id)
                job.status, job.ended = "cancelled", time.time()
                self._journal(job)
                self._lock.notify_all()
                return job
            process = job.process
            job.status = "cancelled"
            self._journal(job)
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
                    self._journal(job)
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
                    self._journal(job)
                    self._lock.notify_all()
                return
            with self._lock:
                job.process, job.pid = process, process.pid
                cancelled = job.status == "cancelled"
                self._journal(job)
            if cancelled:
                os.killpg(process.pid, signal.SIGTERM)
            code = process.wait()
        self.run_dir(job)
        with self._lock:
            job.returncode, job.ended, job.process, job.pid = code, time.time(), None, None
            if job.status != "cancelled":
                job.status = "done" if code == 0 else "failed"
            self._journal(job)
            self._lock.notify_all()


def _stop_group(pid, job_id: str) -> None:
    """Stop a job's process group left running by a server that died (SIGTERM: training saves last.pt), when
    that process is still the job's (its environment names the job: a reused pid is someone else's)."""
    if not isinstance(pid, int) or pid <= 1:
        return
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not Linux: nothing of ours to stop
        return
    if f"CLASSLAB_JOB={job_id}".encode() not in environ.split(b"\0"):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError, OSError):
        return
    for _ in range(100):  # up to 10 s for it to write last.pt and leave
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError, OSError):
            return
        time.sleep(0.1)


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
