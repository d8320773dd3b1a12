"""Keeping runs: a run's name and note, moving a run to the trash, and the Trash page that restores it
(web/manage.py; nothing is deleted outright)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from ..manage import move_to_trash, restore, trashed, write_notes


def routes(bench) -> list[Route]:
    async def save_notes(request: Request):
        run_dir = bench.run_dir(request.path_params["run"])
        form = await request.form()
        await asyncio.to_thread(write_notes, run_dir, str(form.get("name", "")), str(form.get("note", "")))
        return RedirectResponse(f"/runs/{run_dir.name}", status_code=303)

    async def trash_run(request: Request):
        run_dir = bench.run_dir(request.path_params["run"])
        await asyncio.to_thread(move_to_trash, bench.runs_dir, run_dir, busy_runs(bench))
        return RedirectResponse(f"/trash?moved={run_dir.name}", status_code=303)

    async def trash_page(request: Request):
        return bench.page(request, "trash.html", rows=await asyncio.to_thread(trashed, bench.runs_dir),
                          moved=request.query_params.get("moved", ""))

    async def restore_run(request: Request):
        target = await asyncio.to_thread(restore, bench.runs_dir, request.path_params["run"])
        return RedirectResponse(f"/runs/{target.name}", status_code=303)

    return [Route("/runs/{run}/notes", save_notes, methods=["POST"]),
            Route("/runs/{run}/trash", trash_run, methods=["POST"]), Route("/trash", trash_page),
            Route("/trash/{run}/restore", restore_run, methods=["POST"])]


def busy_runs(bench) -> set[str]:
    """Runs an unfinished job writes or reads: its own run, and the run it explains, evaluates or retrains."""
    busy = set()
    for job in bench.jobs.listing():
        if not job.finished:
            run_dir = bench.jobs.run_dir(job)
            busy |= {run_dir.name} if run_dir else set()
            busy |= {job.source_run} if job.source_run else set()
    return busy
