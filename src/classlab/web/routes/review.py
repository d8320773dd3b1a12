"""Review: a run's suspected label issues one at a time (keep, relabel, drop; keys on the page), written to the
run's corrections.csv, and a retrain with those corrections that is compared with the run."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from ..review import Review
from ..views import requested_image


def routes(bench) -> list[Route]:
    async def review_page(request: Request):
        run_dir = bench.run_dir(request.path_params["run"])
        review = Review(run_dir)
        return bench.page(request, "review.html", run_id=run_dir.name, review=review, item=review.next_item())

    async def review_decide(request: Request):
        run_dir = bench.run_dir(request.path_params["run"])
        form = await request.form()
        review = Review(run_dir)
        review.decide(str(form.get("id", "")), str(form.get("action", "")), str(form.get("label", "")))
        name = "review_item.html" if request.headers.get("hx-request") == "true" else "review.html"
        return bench.page(request, name, run_id=run_dir.name, review=review, item=review.next_item())

    async def card_decide(request: Request):
        """Keep, relabel or drop the image an image card shows, as the review page does for its queue."""
        run_dir = bench.run_dir(request.path_params["run"])
        form = await request.form()
        _, item, _, found = await requested_image(bench, request, str(form.get("id", "")))
        review = Review(run_dir)
        correction = review.decide_image(item, found[1], str(form.get("action", "")), str(form.get("label", "")))
        return bench.page(request, "card_decision.html", run_id=run_dir.name, review=review, decision=correction,
                          label=found[1], item=item, classes=review.class_names)

    async def retrain(request: Request):
        run_dir = bench.run_dir(request.path_params["run"])
        args = Review(run_dir).retrain_args(bench.jobs.work_dir)
        job = bench.jobs.submit(args, f"retrain {run_dir.name} with corrections", after=run_dir.name)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    return [Route("/runs/{run}/review", review_page), Route("/runs/{run}/review", review_decide, methods=["POST"]),
            Route("/runs/{run}/card/decide", card_decide, methods=["POST"]),
            Route("/runs/{run}/retrain", retrain, methods=["POST"])]
