"""Predict: upload images, see each one's top classes (with Grad-CAM on a few) from a run's model, download
the predictions as CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import ClasslabError
from ..forms import MAX_FILES, read_upload_form, read_uploads
from ..images import decode_upload, preview

CARDS_WITH_ATTRIBUTION = 8  # an upload of this many images or fewer gets attribution maps on its cards


def routes(bench) -> list[Route]:
    async def predict_page(request: Request):
        rows = [r for r in bench.catalog.query(sort="created") if r["predicts"]]
        return bench.page(request, "predict.html", models=rows, chosen=request.query_params.get("run", ""),
                          max_files=MAX_FILES)

    async def predict(request: Request):
        form = await read_upload_form(request)
        run_id = str(form.get("run", ""))
        explainer = await asyncio.to_thread(bench.explainer, bench.run_dir(run_id).name)
        uploads = await read_uploads(form, "images")
        if not uploads:
            return bench.page(request, "predict_results.html", status_code=400,
                              errors=["choose one or more image files"], results=[], run_id=run_id)
        shape = explainer.input_shape
        if len(shape) != 3:
            raise ClasslabError("this run's model takes volumes; predict on them with the Python API")
        results, errors = [], []
        for name, data in uploads:
            try:
                image = decode_upload(data, name, shape[2], shape[:2], explainer.input_crop)
            except ClasslabError as e:
                errors.append(str(e))
                continue
            card = await asyncio.to_thread(explainer.card, image, 5, len(uploads) <= CARDS_WITH_ATTRIBUTION,
                                           preview(data))
            results.append({"name": name, "card": card})
        key = uuid.uuid4().hex[:12]
        bench.predictions.put(key, (run_id, [(r["name"], r["card"]["top"]) for r in results]))
        return bench.page(request, "predict_results.html", results=results, errors=errors, run_id=run_id,
                          csv_key=key)

    async def predictions_csv(request: Request):
        entry = bench.predictions.get(request.path_params["key"])
        if entry is None:
            raise HTTPException(404, "those predictions are gone; predict again")
        out = io.StringIO()
        writer = csv.writer(out)
        k = max((len(top) for _, top in entry[1]), default=0)
        writer.writerow(["file"] + [f"{kind}{t}" for t in range(1, k + 1) for kind in ("label", "prob")])
        for name, top in entry[1]:
            writer.writerow([name] + [v for label, p in top for v in (label, f"{p:.6f}")])
        return Response(out.getvalue(), media_type="text/csv",
                        headers={"content-disposition": f'attachment; filename="predictions-{entry[0][:60]}.csv"'})

    return [Route("/predict", predict_page), Route("/predict", predict, methods=["POST"]),
            Route("/predictions/{key}.csv", predictions_csv)]
