"""``classlab serve``: the workbench app. A thin layer over the Python API and the run directories.

``create_app(runs_dir)`` builds the Starlette app: the routes, one module per resource (``web/routes``), and
the vendored static files (htmx, CSS, one small script), all behind ``guard.Guard``. ``Workbench`` is what
every handler shares: the served folders, the caches (``recent.Recent``), the job queue and ``page()``, which
renders a template. Nothing is fetched from another host; torch is imported only when a page needs a model.
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
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..errors import ClasslabError
from ..notebook import headline_rows
from ..progress import counted
from .catalog import RunCatalog
from .guard import LOOPBACK_NAMES, Guard, resolve_run
from .images import DatasetCache
from .jobs import JobQueue
from .recent import Recent

HERE = Path(__file__).parent
EXPLAINERS_KEPT = 3  # each holds a model, its data and a training-image search
PREDICTIONS_KEPT = 20


@dataclass
class Workbench:
    """What every request handler shares: the served folders, the caches and the job queue."""

    runs_dir: Path
    data_dir: Path | None = None
    token: str | None = None
    catalog: RunCatalog = field(init=False)
    datasets: DatasetCache = field(default_factory=DatasetCache)
    jobs: JobQueue = field(init=False)
    explainers: Recent = field(default_factory=lambda: Recent(EXPLAINERS_KEPT))  # run id -> (stamps, RunExplainer)
    predictions: Recent = field(default_factory=lambda: Recent(PREDICTIONS_KEPT))  # id -> (run id, rows), for CSV
    lock: threading.Lock = field(default_factory=threading.Lock)
    warming: threading.Lock = field(default_factory=threading.Lock)  # one run's model loads ahead at a time
    building: dict = field(default_factory=dict)  # run id -> the lock its explainer is built under
    templates: Jinja2Templates = field(init=False)

    def __post_init__(self):
        self.runs_dir = Path(self.runs_dir)
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ClasslabError(f"cannot use {self.runs_dir} as the runs folder ({e.strerror or e}); choose "
                                "another with --runs-dir") from None
        self.catalog = RunCatalog(self.runs_dir)
        self.jobs = JobQueue(self.runs_dir)
        self.templates = templates()

    def page(self, request: Request, name: str, status_code: int = 200, **context) -> Response:
        """The template ``name`` rendered with ``context`` (and the token its forms carry)."""
        return self.templates.TemplateResponse(request, name, {"token": self.token, **context},
                                               status_code=status_code)

    def run_dir(self, run_id: str) -> Path:
        """The folder of the served run ``run_id`` (a 404 for anything else: guard.resolve_run)."""
        return resolve_run(self.runs_dir, run_id)

    def explainer(self, run_id: str):
        """The run's RunExplainer (built once; built again when the run's model file changed)."""
        from .cards import RunExplainer

        run_dir = self.run_dir(run_id)
        stamp = tuple((run_dir / n).stat().st_mtime_ns if (run_dir / n).exists() else 0
                      for n in ("best.pt", "calibration.json", "split.csv"))
        with self.lock:  # held for lookups only: building one run's explainer (seconds) stalls no other run
            building = self.building.setdefault(run_id, threading.Lock())
        with building:
            cached = self.explainers.get(run_id)
            if cached is None or cached[0] != stamp:  # new, or its model or split changed: build it again
                cached = (stamp, RunExplainer(run_dir, self.datasets))
                self.explainers.put(run_id, cached)
            return cached[1]


    def warm(self, run_id: str) -> None:
        """Load a run's model in a background thread while its page is read, so the first image card does not
        wait for torch and the model (seconds on a photo model). One at a time; a run whose model cannot load
        is left alone here: its card says why when asked."""
        if not self.warming.acquire(blocking=False):
            return

        def work():
            try:
                self.explainer(run_id).warm()
            except Exception:  # noqa: BLE001 - the card request reports the same failure in words
                pass
            finally:
                self.warming.release()
        threading.Thread(target=work, name=f"warm-{run_id}", daemon=True).start()


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def seconds_text(value) -> str:
    """A duration with the digits it needs: 512, 3.4, 0.042 (a tiny dataset's epoch is not "0.0" seconds)."""
    if not _is_number(value):
        return ""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}" if value >= 0.001 else "< 0.001"


def templates() -> Jinja2Templates:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    # numbers from run files: anything missing or not a number (a workshop stop without a score) shows blank
    env.filters["pct"] = lambda v: f"{100 * v:.2f}%" if _is_number(v) else ""
    env.filters["num"] = lambda v, d=4: f"{v:.{d}f}" if _is_number(v) else ""
    env.filters["secs"] = seconds_text
    env.filters["counted"] = counted
    env.globals["headline_rows"] = headline_rows  # the metrics table the notebook display shows too
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
    from .routes import all_routes

    bench = Workbench(Path(runs_dir), Path(data_dir) if data_dir else None, token)
    tpl = bench.templates

    def error_page(request: Request, title: str, message: str, status: int):
        # an htmx request swaps its answer into part of a page (base.html lets 4xx swap): the message alone
        name = "error_partial.html" if request.headers.get("hx-request") == "true" else "error.html"
        return tpl.TemplateResponse(request, name, {"title": title, "message": message}, status_code=status)

    async def not_found(request: Request, exc: HTTPException):
        return error_page(request, "Not found" if exc.status_code == 404 else "Error", exc.detail, exc.status_code)

    async def refused(request: Request, exc: ClasslabError):
        return error_page(request, "Cannot do that", str(exc), 400)

    async def broken(request: Request, exc: Exception):
        return HTMLResponse("<h1>Internal error</h1><p>the workbench could not answer; see the terminal that runs "
                            "classlab serve</p>", status_code=500)

    routes = all_routes(bench) + [Mount("/static", StaticFiles(directory=HERE / "static"), name="static")]
    app = Starlette(routes=routes, middleware=[Middleware(Guard, token=token, allowed_hosts=allowed_hosts)],
                    exception_handlers={HTTPException: not_found, ClasslabError: refused, Exception: broken},
                    lifespan=lifespan(bench), max_body_size=MAX_BODY)
    app.state.bench = bench
    return app
