"""``classlab serve``: the workbench app. A thin layer over the Python API and the run directories.

``create_app(runs_dir)`` builds the Starlette app: the pages (``pages``), the actions (``actions``), the
vendored static files (htmx, CSS, one small script), all behind ``guard.Guard``. Nothing is fetched from
another host; torch is imported only when a page needs a model.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..errors import ClasslabError
from .catalog import RunCatalog
from .guard import LOOPBACK_NAMES, Guard, resolve_run
from .images import DatasetCache
from .jobs import JobQueue

HERE = Path(__file__).parent


@dataclass
class Workbench:
    """What every request handler shares: the served folders, the caches and the job queue."""

    runs_dir: Path
    data_dir: Path | None = None
    token: str | None = None
    catalog: RunCatalog = field(init=False)
    datasets: DatasetCache = field(default_factory=DatasetCache)
    jobs: JobQueue = field(init=False)
    explainers: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)  # id -> (run id, rows) of the last predictions, for CSV
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.runs_dir = Path(self.runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = RunCatalog(self.runs_dir)
        self.jobs = JobQueue(self.runs_dir)

    def run(self, run_id: str) -> Path:
        return resolve_run(self.runs_dir, run_id)

    def explainer(self, run_id: str):
        """The run's RunExplainer (built once; built again when the run's model file changed)."""
        from .cards import RunExplainer

        run_dir = self.run(run_id)
        stamp = tuple((run_dir / n).stat().st_mtime_ns if (run_dir / n).exists() else 0
                      for n in ("best.pt", "calibration.json", "split.csv"))
        with self.lock:
            cached = self.explainers.get(run_id)
            if cached is None or cached[0] != stamp:
                cached = (stamp, RunExplainer(run_dir, self.datasets))
                self.explainers = {run_id: cached, **{k: v for k, v in list(self.explainers.items())[:2]}}
            return cached[1]


def templates() -> Jinja2Templates:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * v:.2f}%"
    env.filters["num"] = lambda v, d=4: "" if v is None else f"{v:.{d}f}"
    return Jinja2Templates(env=env)


MAX_BODY = 256 << 20  # a request larger than this (uploads of many images) is refused before it is read


def lifespan(bench: Workbench):
    @contextlib.asynccontextmanager
    async def serving(app):
        yield
        bench.jobs.shutdown()  # a running job's process ends with the server; its run resumes from last.pt
    return serving


def create_app(runs_dir: str | Path = "runs", *, data_dir: str | Path | None = None, token: str | None = None,
               allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES) -> Starlette:
    """The workbench over ``runs_dir``. ``token``: required on every request (set it when binding an address
    other than the loopback); without one only loopback Host names are answered."""
    from . import actions, pages

    bench = Workbench(Path(runs_dir), Path(data_dir) if data_dir else None, token)
    tpl = templates()

    async def not_found(request: Request, exc: HTTPException):
        return tpl.TemplateResponse(request, "error.html", {"title": "Not found" if exc.status_code == 404 else "Error",
                                                            "message": exc.detail}, status_code=exc.status_code)

    async def refused(request: Request, exc: ClasslabError):
        return tpl.TemplateResponse(request, "error.html", {"title": "Cannot do that", "message": str(exc)},
                                    status_code=400)

    async def broken(request: Request, exc: Exception):
        return HTMLResponse("<h1>Internal error</h1><p>the workbench could not answer; see the terminal that runs "
                            "classlab serve</p>", status_code=500)

    routes = pages.routes(bench, tpl) + actions.routes(bench, tpl) + [
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static")]
    app = Starlette(routes=routes, middleware=[Middleware(Guard, token=token, allowed_hosts=allowed_hosts)],
                    exception_handlers={HTTPException: not_found, ClasslabError: refused, Exception: broken},
                    lifespan=lifespan(bench), max_body_size=MAX_BODY)
    app.state.bench = bench
    return app
