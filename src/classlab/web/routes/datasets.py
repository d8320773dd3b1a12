"""Datasets: the data page (the doctor's runs, the datasets served), and Make a dataset (collect.py does the
work): add one class's images, upload a .zip of class folders, see each class's latest images, set an image
aside and back. A successful POST redirects to the page with its result, so a reload or Back never posts
again."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ...errors import ClasslabError
from ..collect import add_images, add_zip, class_files, made_here, remove_image, restore_image, sample_strip, thumbnail
from ..forms import MAX_FILES, available_datasets, read_upload_form, read_uploads
from ..recent import Recent

RESULTS_KEPT = 20


def routes(bench) -> list[Route]:
    async def data_page(request: Request):
        checks = [r for r in bench.catalog.query(command="check")]
        return bench.page(request, "data.html", checks=checks, datasets=available_datasets(bench.data_dir),
                          chosen=request.query_params.get("dataset", ""))

    return [Route("/data", data_page)] + _make_a_dataset(bench)


def _make_a_dataset(bench) -> list[Route]:
    results = Recent(RESULTS_KEPT)  # the latest POSTs' results, by the key their redirect carries

    def show(request: Request, dataset: str, status_code: int = 200, **context):
        return bench.page(request, "data_new.html", status_code=status_code, data_dir=bench.data_dir, dataset=dataset,
                    max_files=MAX_FILES, made=made_here(bench.data_dir), **context)

    async def collect_page(request: Request):
        return show(request, request.query_params.get("dataset", "")[:64],
                    added=results.get(request.query_params.get("added", "")),
                    uploaded=results.get(request.query_params.get("zip", "")))

    def remembered(result) -> str:
        key = uuid.uuid4().hex[:12]
        results.put(key, result)
        return key

    async def collect(request: Request):
        form = await read_upload_form(request)
        dataset, class_name = str(form.get("dataset", ""))[:200], str(form.get("class_name", ""))[:200]
        files = await read_uploads(form, "images")
        if not files:
            return show(request, dataset, 400, error="choose one or more image files for this class")
        try:
            added = await asyncio.to_thread(add_images, bench.data_dir, dataset, class_name, files)
        except ClasslabError as e:
            return show(request, dataset, 400, error=str(e))
        if not (added.kept or added.duplicates):
            return show(request, dataset, 400, added=added)
        key = remembered(added)
        return RedirectResponse(f"/data/new?dataset={quote(added.dataset)}&added={key}", status_code=303)

    async def collect_zip(request: Request):
        form = await request.form(max_files=1)
        dataset, archive = str(form.get("dataset", ""))[:200], form.get("archive")
        if not (hasattr(archive, "read") and archive.filename):
            return show(request, "", 400, error="choose a .zip of class folders")
        try:
            uploaded = await asyncio.to_thread(add_zip, bench.data_dir, dataset, archive.file)
        except ClasslabError as e:
            return show(request, "", 400, error=str(e))
        return RedirectResponse(f"/data/new?zip={remembered(uploaded)}", status_code=303)

    async def sample(request: Request):
        q = request.query_params
        return _png(await _found(sample_strip, bench.data_dir, q.get("dataset", ""), q.get("class", "")))

    async def class_page(request: Request):
        dataset, class_name = request.query_params.get("dataset", ""), request.query_params.get("class", "")
        files = await _found(class_files, bench.data_dir, dataset, class_name)
        aside = await _found(class_files, bench.data_dir, dataset, class_name, True)
        return bench.page(request, "data_class.html", dataset=dataset, class_name=class_name, files=files, aside=aside,
                    moved=results.get(request.query_params.get("moved", "")))

    async def image(request: Request):
        q = request.query_params
        return _png(await _found(thumbnail, bench.data_dir, q.get("dataset", ""), q.get("class", ""),
                                 q.get("file", ""), q.get("removed") == "1"))

    async def move(request: Request):
        form = await request.form()
        dataset, class_name, file = (str(form.get(k, ""))[:300] for k in ("dataset", "class", "file"))
        restore = request.url.path.endswith("/restore")
        to = await asyncio.to_thread(restore_image if restore else remove_image, bench.data_dir, dataset,
                                     class_name, file)
        key = remembered({"file": file, "to": to, "restored": restore})
        return RedirectResponse(f"/data/new/class?dataset={quote(dataset)}&class={quote(class_name)}&moved={key}",
                                status_code=303)

    return [Route("/data/new", collect_page), Route("/data/new", collect, methods=["POST"]),
            Route("/data/new/class", class_page), Route("/data/new/image", image),
            Route("/data/new/remove", move, methods=["POST"]), Route("/data/new/restore", move, methods=["POST"]),
            Route("/data/new/zip", collect_zip, methods=["POST"]),
            Route("/data/new/sample.png", sample)]


async def _found(read, *args):
    """``read(*args)`` off the event loop; what it cannot find (a ClasslabError) is a 404 with its words."""
    try:
        return await asyncio.to_thread(read, *args)
    except ClasslabError as e:
        raise HTTPException(404, str(e)) from None


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers={"cache-control": "no-store"})
