"""Runs: the runs list, a run's page (report, confusion cells, top losses, calibration, label issues; a doctor's
findings; a comparison), its files and images, an image card, and what is done to a run from its page:
explain it, evaluate it on other data, export its model, compare it with others."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ...errors import ClasslabError
from ...safe_files import read_json
from ..bundle import bundle_zip
from ..forms import check_classes, choice, dataset_args, query_whole
from ..guard import resolve_run_file
from ..images import cell_members
from ..review import Review
from ..views import requested_image, run_view, runs_context

PNG_SIDES = (48, 96, 192)


def routes(bench) -> list[Route]:
    return _pages(bench) + _actions(bench)


def _pages(bench) -> list[Route]:
    """What a run shows: the list, its page, files, images, cells and cards."""
    async def runs_page(request: Request):
        every = bench.catalog.summaries()  # read once for the table and the command filter
        return bench.page(request, "runs.html", **runs_context(bench, request, every),
                          commands=bench.catalog.commands(every))

    async def runs_table(request: Request):
        return bench.page(request, "runs_table.html", **runs_context(bench, request))

    async def run_page(request: Request):
        name, context = await run_view(bench, bench.run_dir(request.path_params["run"]))
        if context.get("predicts"):
            bench.warm(context["run"]["id"])  # its model loads while the user reads the page, not on the first card
        return bench.page(request, name, **context)

    async def run_file(request: Request):
        path = resolve_run_file(bench.run_dir(request.path_params["run"]), request.path_params["rel"])
        return FileResponse(path, media_type="text/plain; charset=utf-8"
                            if path.suffix in (".md", ".txt", ".csv") else None)

    async def run_image(request: Request):
        run_dir = bench.run_dir(request.path_params["run"])
        side = request.query_params.get("side", "96")
        side = int(side) if side.isdigit() and int(side) in PNG_SIDES else 96
        png = await asyncio.to_thread(bench.datasets.thumbnail, run_dir, request.query_params.get("id", ""), side)
        if png is None:
            raise HTTPException(404, "no image with that id in this run's data")
        return Response(png, media_type="image/png", headers={"cache-control": "private, max-age=600"})

    async def cell(request: Request):
        run_dir = bench.run_dir(request.path_params["run"])
        t, p = query_whole(request.query_params.get("t")), query_whole(request.query_params.get("p"))
        members = await asyncio.to_thread(cell_members, run_dir, t, p)
        return bench.page(request, "cell.html", run_id=run_dir.name, cell=members)

    async def card(request: Request):
        run_id, item, explainer, found = await requested_image(bench, request)
        later = request.headers.get("hx-request") == "true" and not explainer.neighbours_ready
        result = await asyncio.to_thread(explainer.card, found[0], 5, not later)
        result["neighbours_later"] = later  # the card comes first; its neighbours follow (card_neighbours)
        name = "card_partial.html" if request.headers.get("hx-request") == "true" else "card.html"
        review = Review(bench.run_dir(run_id))  # the card's keep / relabel / drop, as on the review page
        return bench.page(request, name, run_id=run_id, item=item, label=found[1], card=result, review=review,
                          decision=review.decision(item), classes=review.class_names)

    async def gallery_page(request: Request):
        from ..gallery import SORTS, Filters, embedding_map, gallery, test_outputs

        run_dir = bench.run_dir(request.path_params["run"])
        names = (await asyncio.to_thread(test_outputs, run_dir))["names"]
        filters = Filters.from_query(request.query_params, len(names))
        shown = await asyncio.to_thread(gallery, run_dir, filters)
        points = await asyncio.to_thread(embedding_map, run_dir)
        return bench.page(request, "gallery.html", run_id=run_dir.name, g=shown, f=filters, sorts=SORTS,
                          emap=points, query=request.query_params)

    async def charts_json(request: Request):
        from ..charts import chart_data

        run_dir = bench.run_dir(request.path_params["run"])
        return JSONResponse(await asyncio.to_thread(chart_data, run_dir))

    async def card_neighbours(request: Request):
        run_id, _, explainer, found = await requested_image(bench, request)
        near = await asyncio.to_thread(explainer.neighbours, found[0])
        return bench.page(request, "card_neighbours.html", run_id=run_id, neighbours=near)

    return [Route("/", runs_page), Route("/runs", runs_page), Route("/runs-table", runs_table),
            Route("/runs/{run}", run_page), Route("/runs/{run}/files/{rel:path}", run_file),
            Route("/runs/{run}/image", run_image), Route("/runs/{run}/cell", cell), Route("/runs/{run}/card", card),
            Route("/runs/{run}/card/neighbours", card_neighbours), Route("/runs/{run}/gallery", gallery_page),
            Route("/runs/{run}/charts.json", charts_json)]


def _actions(bench) -> list[Route]:
    """What is done to a run from its page: explain, evaluate on other data, export, compare."""
    async def explain_run(request: Request):
        run_dir = bench.run_dir(request.path_params["run"])
        job = bench.jobs.submit(["explain", str(run_dir)], f"explain {run_dir.name}")
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    async def evaluate_run(request: Request):
        from ...commands.evaluate import SPLITS

        run_dir = bench.run_dir(request.path_params["run"])
        if not any(r["predicts"] for r in bench.catalog.query() if r["id"] == run_dir.name):
            raise ClasslabError("only a run with a model (train, transfer, k-NN or the NumPy MLP) can be evaluated "
                                "on other data")
        form = await request.form()
        dataset = str(form.get("dataset", "digits"))
        split = choice(form, "split", SPLITS, "auto", "split")
        args = ["evaluate", str(run_dir), *dataset_args(bench.data_dir, dataset), "--split", split]
        classes = (read_json(run_dir / "metrics.json") or {}).get("class_names")
        if isinstance(classes, list):
            await asyncio.to_thread(check_classes, bench.data_dir, dataset, [str(c) for c in classes])
        args += ["--drop-seen"] if form.get("drop_seen") == "on" else []
        job = bench.jobs.submit(args, f"evaluate {run_dir.name} on {dataset}", after=run_dir.name)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    async def export(request: Request):
        from ...trained.export import FORMATS  # torch: only once a model is to be exported

        run_dir = bench.run_dir(request.path_params["run"])
        fmt = choice(await request.form(), "format", FORMATS, "onnx", "export format")
        data = await asyncio.to_thread(bundle_zip, run_dir, fmt)
        return Response(data, media_type="application/zip",
                        headers={"content-disposition": f'attachment; filename="{run_dir.name}-{fmt}.zip"'})

    async def compare(request: Request):
        from ... import api

        form = await request.form()
        ids = [str(v) for v in form.getlist("runs")]
        ticked = [t for t in str(form.get("ticked", "")).split(",") if t]
        if sorted(ticked) == sorted(ids):  # the order the boxes were ticked in: its first is the baseline
            ids = ticked
        if len(ids) < 2:
            raise ClasslabError("select at least two runs to compare (the first selected is the baseline)")
        dirs = [bench.run_dir(i) for i in ids]
        result = await asyncio.to_thread(api.compare, *dirs, common=form.get("common") == "on",
                                         runs_dir=bench.runs_dir)
        return RedirectResponse(f"/runs/{result.run_dir.name}", status_code=303)

    return [Route("/runs/{run}/explain", explain_run, methods=["POST"]),
            Route("/runs/{run}/evaluate", evaluate_run, methods=["POST"]),
            Route("/runs/{run}/export", export, methods=["POST"]), Route("/compare", compare, methods=["POST"])]
