"""The pages that show runs: the runs list, a run (report, confusion cells, top losses, calibration, label
issues), an image card, a comparison, the dataset doctor's findings, and the run's own files and images."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from .catalog import SORT_KEYS, run_details
from .datasets import available
from .guard import resolve_run_file
from .images import cell_members

PNG_SIDES = (48, 96, 192)


def routes(bench, tpl) -> list[Route]:
    def page(request: Request, name: str, **context):
        return tpl.TemplateResponse(request, name, {"token": bench.token, **context})

    async def runs_page(request: Request):
        return page(request, "runs.html", **_runs_context(bench, request), commands=bench.catalog.commands())

    async def runs_table(request: Request):
        return page(request, "runs_table.html", **_runs_context(bench, request))

    async def run_page(request: Request):
        name, context = await _run_view(bench, bench.run(request.path_params["run"]))
        return page(request, name, **context)

    async def run_file(request: Request):
        run_dir = bench.run(request.path_params["run"])
        path = resolve_run_file(run_dir, request.path_params["rel"])
        return FileResponse(path, media_type="text/plain; charset=utf-8"
                            if path.suffix in (".md", ".txt", ".csv") else None)

    async def run_image(request: Request):
        run_dir = bench.run(request.path_params["run"])
        side = int(request.query_params.get("side", 96)) if request.query_params.get("side", "96").isdigit() else 96
        png = await asyncio.to_thread(bench.datasets.thumbnail, run_dir, request.query_params.get("id", ""),
                                      side if side in PNG_SIDES else 96)
        if png is None:
            raise HTTPException(404, "no image with that id in this run's data")
        return Response(png, media_type="image/png", headers={"cache-control": "private, max-age=600"})

    async def cell(request: Request):
        run_dir = bench.run(request.path_params["run"])
        t, p = _int(request.query_params.get("t")), _int(request.query_params.get("p"))
        return page(request, "cell.html", run_id=run_dir.name, cell=await asyncio.to_thread(cell_members, run_dir, t, p))

    async def card(request: Request):
        run_id = bench.run(request.path_params["run"]).name
        item = request.query_params.get("id", "")
        explainer = await asyncio.to_thread(bench.explainer, run_id)
        found = await asyncio.to_thread(bench.datasets.image, explainer.run_dir, item)
        if found is None:
            raise HTTPException(404, "no image with that id in this run's data")
        result = await asyncio.to_thread(explainer.card, found[0])
        name = "card_partial.html" if request.headers.get("hx-request") == "true" else "card.html"
        return page(request, name, run_id=run_id, item=item, label=found[1], card=result)

    async def data_page(request: Request):
        checks = [r for r in bench.catalog.query(command="check")]
        return page(request, "data.html", checks=checks, datasets=available(bench.data_dir),
                    chosen=request.query_params.get("dataset", ""))

    return [Route("/", runs_page), Route("/runs", runs_page), Route("/runs-table", runs_table),
            Route("/runs/{run}", run_page), Route("/runs/{run}/files/{rel:path}", run_file),
            Route("/runs/{run}/image", run_image), Route("/runs/{run}/cell", cell), Route("/runs/{run}/card", card),
            Route("/data", data_page)]


async def _run_view(bench, run_dir) -> tuple[str, dict]:
    """The template and context of a run's page: a doctor's findings, a comparison, or a run's results."""
    details = run_details(run_dir)
    command = details["config"].get("command")
    if command == "check":
        samples = await asyncio.to_thread(_samples, bench, run_dir)
        return "check.html", {"run": details, "check": _check_view(details["check"] or {}), "samples": samples}
    if command == "compare":
        return "compare.html", {"run": details, "comparison": _compare_view(bench, details)}
    rows = bench.catalog.query()
    predicts = any(r["predicts"] for r in rows if r["id"] == run_dir.name)  # the catalog's one rule
    evaluations = [r for r in rows if r["evaluates"] == run_dir.name] if predicts else []
    return "run.html", {"run": details, "jobs": [j for j in bench.jobs.listing() if j.after == run_dir.name][:3],
                        "predicts": predicts, "datasets": available(bench.data_dir) if predicts else [],
                        "evaluations": evaluations}


def _int(text) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise HTTPException(400, "expected whole numbers") from None


def _runs_context(bench, request: Request) -> dict:
    q = request.query_params
    sort = q.get("sort", "created") if q.get("sort") in SORT_KEYS else "created"
    descending = q.get("order", "desc") != "asc"
    rows = bench.catalog.query(q.get("q", ""), q.get("command", ""), sort, descending)
    return {"rows": rows, "q": q.get("q", ""), "command": q.get("command", ""), "sort": sort,
            "order": "desc" if descending else "asc"}


def _samples(bench, run_dir, per_class: int = 8) -> list[dict] | None:
    """A few images of every class (the first ones, in file order) for the doctor's sample grid; None when
    the data cannot be loaded any more."""
    from ..errors import ClasslabError

    try:
        ds, _, _ = bench.datasets.get(run_dir)
    except ClasslabError:
        return None
    import numpy as np

    out = []
    for c, name in enumerate(ds.class_names[:50]):
        rows = np.flatnonzero(ds.labels == c)[:per_class]
        out.append({"name": name, "ids": [ds.ids[r] for r in rows]})
    return out


def _check_view(check: dict) -> dict:
    """The doctor's findings arranged for the page: class counts as bars, pairs side by side, quality lists."""
    counts = check.get("class_counts") if isinstance(check.get("class_counts"), dict) else {}
    total = {str(c): n for c, n in counts.items() if isinstance(n, int) and not isinstance(n, bool)}
    most = max(total.values(), default=1) or 1
    near = check.get("near_duplicates") if isinstance(check.get("near_duplicates"), dict) else {}
    exact = check.get("duplicates") if isinstance(check.get("duplicates"), dict) else {}
    problems = check.get("problems") if isinstance(check.get("problems"), dict) else {}
    return {"summary": {k: check.get(k) for k in ("data", "layout", "files_scanned", "readable_images", "num_classes",
                                                    "imbalance_ratio", "errors", "warnings")},
            "classes": [{"name": c, "count": n, "share": n / most} for c, n in sorted(total.items())],
            "across": (near.get("across_splits") or [])[:60], "within": (near.get("within_split") or [])[:60],
            "totals": {"across": len(near.get("across_splits") or []), "within": len(near.get("within_split") or [])},
            "groups": [g for g in (near.get("groups") or []) if isinstance(g, dict)],
            "exact": {k: v[:30] for k, v in exact.items() if isinstance(v, list)},
            "quality": {k: v[:24] for k, v in (check.get("quality") or {}).items() if isinstance(v, list)},
            "problems": {k: v[:50] for k, v in problems.items() if isinstance(v, list) and v},
            "embeddings": _embedding_view(check.get("embeddings"))}


def _embedding_view(emb) -> dict | None:
    """The embedding pass's findings (``classlab check --embeddings``), as the page lists them."""
    if not isinstance(emb, dict):
        return None
    near = emb.get("near_duplicates") if isinstance(emb.get("near_duplicates"), dict) else {}
    pairs = (near.get("across_splits") or []) + (near.get("within_split") or [])
    return {"backbone": emb.get("backbone"), "threshold": emb.get("threshold"), "pairs": pairs[:60],
            "pair_count": len(pairs), "outliers": (emb.get("outliers") or [])[:48],
            "disagree": (emb.get("neighbours_disagree") or [])[:48]}


def _compare_view(bench, details: dict) -> dict:
    """The comparison's runs and pairs, with the baseline's run id (for thumbnails of fixed/broken images)."""
    from pathlib import Path

    comparison = details["comparison"] if isinstance(details["comparison"], dict) else {}
    runs = comparison.get("runs") or []
    baseline = Path(str(runs[0].get("run_dir", ""))).name if runs else ""
    try:
        bench.run(baseline)
    except HTTPException:
        baseline = ""  # the baseline is outside the served folder: numbers only
    return {"runs": runs, "pairs": comparison.get("pairs") or [], "baseline": baseline}
