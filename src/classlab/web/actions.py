"""The pages that do something: predict on uploaded images, start / watch / cancel jobs (train, transfer,
workshop, check, explain), review suspected label issues, retrain with the corrections, compare runs.
Every state change is a POST (the guard checks its origin); every input is validated here, in one place."""

from __future__ import annotations

import asyncio
import time
import uuid
from html import escape

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import ClasslabError
from ..backbones.hub_cache import cached_weights, checked_weights_path, install_weights, weights_status
from .charts import curves_svg
from .datasets import available, resolve
from .images import MAX_UPLOAD_BYTES, decode_upload, preview
from .jobs import progress
from .review import Review

MAX_FILES = 200
TRANSFER_BACKBONES = ("mobilenet_v2", "resnet18", "resnet50", "vgg16")


def routes(bench, tpl) -> list[Route]:
    def page(request: Request, name: str, status_code: int = 200, **context):
        return tpl.TemplateResponse(request, name, {"token": bench.token, **context}, status_code=status_code)

    return _predict_routes(bench, page) + _job_routes(bench, tpl, page) + _review_routes(bench, page)


def upload_name(filename: str | None) -> str:
    """An upload's base name as the browser sent it (a folder's files carry their path), for messages."""
    return (filename or "image").replace("\\", "/").rsplit("/", 1)[-1][:200]


def _job_context(bench, job) -> dict:
    run_dir = bench.jobs.run_dir(job)
    state = progress(run_dir)
    return {"job": job, "run_id": run_dir.name if run_dir else None, "progress": state,
            "chart": curves_svg(state.get("history", []), state.get("epochs")), "position": bench.jobs.position(job),
            "log": job.log_tail()[-1500:], "elapsed": (job.ended or time.time()) - (job.started or time.time())}


def _predict_routes(bench, page) -> list[Route]:
    async def predict_page(request: Request):
        rows = [r for r in bench.catalog.query(sort="created") if r["predicts"]]
        return page(request, "predict.html", models=rows, chosen=request.query_params.get("run", ""),
                    max_files=MAX_FILES)

    async def predict(request: Request):
        form = await request.form(max_files=MAX_FILES, max_part_size=MAX_UPLOAD_BYTES + 1)
        run_id = str(form.get("run", ""))
        explainer = await asyncio.to_thread(bench.explainer, bench.run(run_id).name)
        uploads = [f for f in form.getlist("images") if hasattr(f, "read")]
        if not uploads:
            return page(request, "predict_results.html", status_code=400, errors=["choose one or more image files"],
                        results=[], run_id=run_id)
        shape = explainer.input_shape
        if len(shape) != 3:
            raise ClasslabError("this run's model takes volumes; predict on them with the Python API")
        results, errors = [], []
        for f in uploads:
            data = await f.read(MAX_UPLOAD_BYTES + 1)
            name = upload_name(f.filename)
            try:
                image = decode_upload(data, name, shape[2], shape[:2])
            except ClasslabError as e:
                errors.append(str(e))
                continue
            card = await asyncio.to_thread(explainer.card, image, 5, len(uploads) <= 8, preview(data))
            results.append({"name": name, "card": card})
        key = uuid.uuid4().hex[:12]
        bench.remember_predictions(key, run_id, [(r["name"], r["card"]["top"]) for r in results])
        return page(request, "predict_results.html", results=results, errors=errors, run_id=run_id, csv_key=key)

    async def predictions_csv(request: Request):
        entry = bench.predictions.get(request.path_params["key"])
        if entry is None:
            raise HTTPException(404, "those predictions are gone; predict again")
        import csv
        import io

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


def _job_routes(bench, tpl, page) -> list[Route]:
    async def train_page(request: Request):
        from ..models import list_models

        models = list_models()
        return page(request, "train.html", datasets=available(bench.data_dir), models=models,
                    chosen=request.query_params.get("dataset", ""),
                    command=request.query_params.get("command", "train"), backbones=TRANSFER_BACKBONES,
                    weights=weights_status(TRANSFER_BACKBONES),
                    jobs=[_job_context(bench, j) for j in bench.jobs.listing()[:10]])

    async def start_job(request: Request):
        form = await request.form(max_files=1)
        args, title = await asyncio.to_thread(_job_args, bench, form)  # may install an uploaded weights file
        job = bench.jobs.submit(args, title)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    async def job_page(request: Request):
        job = _job(bench, request)
        return page(request, "job.html", **_job_context(bench, job))

    async def job_panel(request: Request):
        return page(request, "job_panel.html", **_job_context(bench, _job(bench, request)))

    async def job_events(request: Request):
        job = _job(bench, request)

        async def stream():
            last = None
            while True:
                html = tpl.get_template("job_panel.html").render(**_job_context(bench, job), token=bench.token)
                if html != last:
                    last = html
                    yield "event: progress\ndata: " + html.replace("\n", "\ndata: ") + "\n\n"
                if job.finished:
                    yield "event: done\ndata: done\n\n"
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.5)
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    async def cancel_job(request: Request):
        job = _job(bench, request)
        bench.jobs.cancel(job.id)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    return [Route("/train", train_page), Route("/jobs", start_job, methods=["POST"]),
            Route("/jobs/{job}", job_page), Route("/jobs/{job}/panel", job_panel),
            Route("/jobs/{job}/events", job_events), Route("/jobs/{job}/cancel", cancel_job, methods=["POST"])]


def _review_routes(bench, page) -> list[Route]:
    """Review suspected label issues, retrain with the corrections, explain a run, compare runs."""
    async def review_page(request: Request):
        run_dir = bench.run(request.path_params["run"])
        review = Review(run_dir)
        return page(request, "review.html", run_id=run_dir.name, review=review, item=review.next_item())

    async def review_decide(request: Request):
        run_dir = bench.run(request.path_params["run"])
        form = await request.form()
        review = Review(run_dir)
        review.decide(str(form.get("id", "")), str(form.get("action", "")), str(form.get("label", "")))
        name = "review_item.html" if request.headers.get("hx-request") == "true" else "review.html"
        return page(request, name, run_id=run_dir.name, review=review, item=review.next_item())

    async def retrain(request: Request):
        run_dir = bench.run(request.path_params["run"])
        args = Review(run_dir).retrain_args(bench.jobs.work_dir)
        job = bench.jobs.submit(args, f"retrain {run_dir.name} with corrections", after=run_dir.name)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    async def evaluate_run(request: Request):
        from ..commands.evaluate import SPLITS

        run_dir = bench.run(request.path_params["run"])
        if not any(r["predicts"] for r in bench.catalog.query() if r["id"] == run_dir.name):
            raise ClasslabError("only a run with a model (train, transfer, k-NN or the NumPy MLP) can be evaluated "
                                "on other data")
        form = await request.form()
        dataset, split = str(form.get("dataset", "digits")), str(form.get("split", "auto"))
        if split not in SPLITS:
            raise ClasslabError(f"split is one of {', '.join(SPLITS)}")
        args = ["evaluate", str(run_dir), *resolve(bench.data_dir, dataset), "--split", split]
        args += ["--drop-seen"] if form.get("drop_seen") == "on" else []
        job = bench.jobs.submit(args, f"evaluate {run_dir.name} on {dataset}", after=run_dir.name)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    async def explain_run(request: Request):
        run_dir = bench.run(request.path_params["run"])
        job = bench.jobs.submit(["explain", str(run_dir)], f"explain {run_dir.name}")
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    async def compare(request: Request):
        from .. import api

        form = await request.form()
        ids = [str(v) for v in form.getlist("runs")]
        if len(ids) < 2:
            raise ClasslabError("select at least two runs to compare (the first selected is the baseline)")
        dirs = [bench.run(i) for i in ids]
        result = await asyncio.to_thread(api.compare, *dirs, common=form.get("common") == "on",
                                         runs_dir=bench.runs_dir)
        return RedirectResponse(f"/runs/{result.run_dir.name}", status_code=303)

    return [Route("/runs/{run}/review", review_page), Route("/runs/{run}/review", review_decide, methods=["POST"]),
            Route("/runs/{run}/retrain", retrain, methods=["POST"]),
            Route("/runs/{run}/explain", explain_run, methods=["POST"]),
            Route("/runs/{run}/evaluate", evaluate_run, methods=["POST"]),
            Route("/compare", compare, methods=["POST"])]


def _job(bench, request: Request):
    job = bench.jobs.jobs.get(request.path_params["job"])
    if job is None:
        raise HTTPException(404, "no such job (jobs are kept while the server runs; finished runs are on the runs page)")
    return job


def _whole(form, key: str, low: int, high: int, default: int | None) -> int | None:
    text = str(form.get(key) or "").strip()
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ClasslabError(f"{key.replace('_', ' ')} must be a whole number from {low} to {high}, got '{escape(text[:20])}'")
    return int(text)


def _weights_args(backbone: str, form) -> list[str]:
    """Transfer's pretrained weights, settled before the job starts (a job would fail seconds in without
    them): an uploaded file (installed in the torch hub cache, checked against its name), a file on this
    machine (--weights PATH), the file already in the cache, or a download only when asked for."""
    upload = form.get("weights_file")
    if hasattr(upload, "read") and upload.filename:
        install_weights(backbone, upload.filename, upload.file)
        return []
    path = str(form.get("weights_path", "")).strip()
    if path:
        return ["--weights", checked_weights_path(path)]
    if cached_weights(backbone) is None and not form.get("download"):
        status = weights_status([backbone])[0]
        raise ClasslabError(f"{backbone}'s pretrained weights are not on this machine: put {status['file']} into "
                            f"{status['folder']}, or give the file on the Train page (upload or path), or tick "
                            "'download them' where this machine has internet; or choose 'train a model' (a CNN "
                            "from scratch, at a size chosen for your images), which needs no weights")
    return []


def _job_args(bench, form) -> tuple[list[str], str]:
    """The command line of a job from the train form, every field checked against what it may be."""
    command = str(form.get("command", ""))
    if command not in ("train", "transfer", "workshop", "check"):
        raise ClasslabError("choose train, transfer, workshop or check")
    dataset = str(form.get("dataset", "digits"))
    args = [command, *resolve(bench.data_dir, dataset)]
    if command == "check":  # the doctor takes only the dataset
        return args, f"check {dataset}"
    max_train = _whole(form, "max_train", 10, 10_000_000, None)
    title = f"{command} {dataset}"
    if command == "train":
        from ..models import list_models

        model = str(form.get("model", "mlp"))
        if model not in list_models():
            raise ClasslabError(f"unknown model '{escape(model[:40])}'")
        args += ["--model", model, "--epochs", str(_whole(form, "epochs", 1, 1000, 10))]
        title += f" {model}"
    elif command == "transfer":
        backbone = str(form.get("backbone", "mobilenet_v2"))
        if backbone not in TRANSFER_BACKBONES:
            raise ClasslabError(f"unknown backbone '{escape(backbone[:40])}'")
        mode = str(form.get("mode", "features"))
        if mode not in ("features", "finetune", "both"):
            raise ClasslabError("mode is features, finetune or both")
        args += ["--backbone", backbone, "--mode", mode, *_weights_args(backbone, form)]
        epochs = _whole(form, "epochs", 1, 1000, None)  # left empty: the head's default (more steps on small data)
        args += ["--head-epochs", str(epochs)] if epochs else []
        size = _whole(form, "image_size", 16, 512, None)
        if size:
            args += ["--image-size", str(size)]
    if max_train:
        args += ["--max-train", str(max_train)]
    if command in ("train", "transfer") and form.get("balance"):  # imbalanced classes: inverse-frequency loss
        args += ["--class-weight", "balanced"]
    return args, title

