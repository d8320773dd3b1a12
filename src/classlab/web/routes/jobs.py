"""Jobs: the Train page (train, transfer, workshop or check on a dataset; transfer's weights settled first),
and a job's page: its phase, progress and live curves (server-sent events), its log, cancel."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, StreamingResponse
from starlette.routing import Route

from ...backbones.hub_cache import weights_status
from ...errors import ClasslabError
from ..forms import TRANSFER_BACKBONES, available_datasets, job_args
from ..views import job_context

JOBS_LISTED = 10
EVENT_INTERVAL = 0.5  # seconds between a job's progress checks while a page listens


def routes(bench) -> list[Route]:
    async def train_page(request: Request):
        from ...models import list_models

        return bench.page(request, "train.html", datasets=available_datasets(bench.data_dir), models=list_models(),
                          chosen=request.query_params.get("dataset", ""),
                          command=request.query_params.get("command", "train"), backbones=TRANSFER_BACKBONES,
                          weights=weights_status(TRANSFER_BACKBONES),
                          jobs=[job_context(bench, j) for j in bench.jobs.listing()[:JOBS_LISTED]])

    async def start_job(request: Request):
        form = await request.form(max_files=1)
        args, title = await asyncio.to_thread(job_args, bench.data_dir, form)  # may install an uploaded weights file
        job = bench.jobs.submit(args, title)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    async def job_page(request: Request):
        return bench.page(request, "job.html", **job_context(bench, _job(bench, request)))

    async def job_panel(request: Request):
        return bench.page(request, "job_panel.html", **job_context(bench, _job(bench, request)))

    async def job_events(request: Request):
        job = _job(bench, request)

        async def stream():
            last = None
            while True:
                html = bench.templates.get_template("job_panel.html").render(**job_context(bench, job),
                                                                             token=bench.token)
                if html != last:
                    last = html
                    yield "event: progress\ndata: " + html.replace("\n", "\ndata: ") + "\n\n"
                if job.finished:
                    yield "event: done\ndata: done\n\n"
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(EVENT_INTERVAL)
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    async def resume_job(request: Request):
        """Continue an interrupted train job's run from its last.pt, as a new job."""
        job = _job(bench, request)
        args = job.resume_args if job.status == "interrupted" else None
        if args is None:
            raise ClasslabError("only an interrupted train job whose run kept last.pt can be resumed here")
        new = bench.jobs.submit(args, f"resume {job.found_run.name}", after=job.after)
        return RedirectResponse(f"/jobs/{new.id}", status_code=303)

    async def cancel_job(request: Request):
        job = _job(bench, request)
        bench.jobs.cancel(job.id)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    return [Route("/train", train_page), Route("/jobs", start_job, methods=["POST"]),
            Route("/jobs/{job}", job_page), Route("/jobs/{job}/panel", job_panel),
            Route("/jobs/{job}/events", job_events), Route("/jobs/{job}/cancel", cancel_job, methods=["POST"]),
            Route("/jobs/{job}/resume", resume_job, methods=["POST"])]


def _job(bench, request: Request):
    job = bench.jobs.jobs.get(request.path_params["job"])
    if job is None:
        raise HTTPException(404, "no such job (finished runs are on the runs page)")
    return job
