"""What the workbench's pages show, built from run folders and jobs: the context each template gets. Routes
(``web/routes``) stay thin: they check the request, call one of these, and render."""

from __future__ import annotations

import asyncio
import time

from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..safe_files import read_json
from .catalog import SORT_KEYS, run_details
from .charts import curves_svg
from .forms import available_datasets, own_dataset_first
from .jobs import progress
from .manage import read_notes


EPOCH_ROWS = 10  # rows of a job's epoch table; the whole history is in the run's history.csv


async def requested_image(bench, request: Request, item: str | None = None):
    """(run id, image id, the run's explainer, (image, label)) of a request about one image of a run's data
    (``item``: from a form; else the ``id`` query parameter); a 404 in words when the run has no such image."""
    run_id = bench.run_dir(request.path_params["run"]).name
    item = request.query_params.get("id", "") if item is None else item
    explainer = await asyncio.to_thread(bench.explainer, run_id)
    found = await asyncio.to_thread(bench.datasets.image, explainer.run_dir, item)
    if found is None:
        raise HTTPException(404, "no image with that id in this run's data")
    return run_id, item, explainer, found


def job_context(bench, job) -> dict:
    run_dir = bench.jobs.run_dir(job)
    state = progress(run_dir)
    history = state.get("history", [])
    outcome = None
    if job.status == "done" and run_dir is not None:
        metrics = read_json(run_dir / "metrics.json")
        if isinstance(metrics, dict):
            predicts = any(r["predicts"] for r in bench.catalog.query() if r["id"] == run_dir.name)
            outcome = {"accuracy": metrics.get("accuracy"), "macro_f1": (metrics.get("macro_avg") or {}).get("f1"),
                       "n": metrics.get("n"), "predicts": predicts, "exports": (run_dir / "best.pt").is_file(),
                       "explainable": (run_dir / "probabilities.npz").is_file()}
    return {"job": job, "run_id": run_dir.name if run_dir else None, "progress": state,
            "chart": curves_svg(history, state.get("epochs")), "position": bench.jobs.position(job),
            "rows": history[-EPOCH_ROWS:], "hidden_rows": max(0, len(history) - EPOCH_ROWS),
            "phase": job.phase() if job.status == "running" else "", "outcome": outcome,
            "log": job.log_tail()[-1500:], "elapsed": (job.ended or time.time()) - (job.started or time.time())}


async def run_view(bench, run_dir) -> tuple[str, dict]:
    """The template and context of a run's page: a doctor's findings, a comparison, or a run's results."""
    details = run_details(run_dir)
    command, notes = details["config"].get("command"), read_notes(run_dir)
    if command == "check":
        samples = await asyncio.to_thread(class_samples, bench, run_dir)
        return "check.html", {"run": details, "check": check_view(details["check"] or {}), "samples": samples,
                              "notes": notes}
    if command == "compare":
        return "compare.html", {"run": details, "comparison": compare_view(bench, details), "notes": notes}
    rows = bench.catalog.query()
    predicts = any(r["predicts"] for r in rows if r["id"] == run_dir.name)  # the catalog's one rule
    evaluations = [r for r in rows if r["evaluates"] == run_dir.name] if predicts else []
    return "run.html", {"run": details, "jobs": [j for j in bench.jobs.listing() if j.after == run_dir.name][:3],
                        "predicts": predicts,
                        "datasets": own_dataset_first(available_datasets(bench.data_dir), bench.data_dir,
                                                      details["config"]) if predicts else [],
                        "evaluations": evaluations, "notes": notes,
                        "overlays": [r for r in rows if r["id"] != run_dir.name and r["command"] in ("train", "transfer")
                                     and r["finished"]][:50]}


def runs_context(bench, request: Request, every: list[dict] | None = None) -> dict:
    """The runs table's rows for the request's search and sort, of ``every`` run summary when given."""
    q = request.query_params
    sort = q.get("sort", "created") if q.get("sort") in SORT_KEYS else "created"
    descending = q.get("order", "desc") != "asc"
    rows = bench.catalog.query(q.get("q", ""), q.get("command", ""), sort, descending, every)
    return {"rows": rows, "q": q.get("q", ""), "command": q.get("command", ""), "sort": sort,
            "order": "desc" if descending else "asc"}


def class_samples(bench, run_dir, per_class: int = 8) -> list[dict] | None:
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


def check_view(check: dict) -> dict:
    """The doctor's findings arranged for the page: class counts as bars, pairs side by side, quality lists."""
    counts = check.get("class_counts") if isinstance(check.get("class_counts"), dict) else {}
    total = {str(c): n for c, n in counts.items() if isinstance(n, int) and not isinstance(n, bool)}
    most = max(total.values(), default=1) or 1
    near = check.get("near_duplicates") if isinstance(check.get("near_duplicates"), dict) else {}
    exact = check.get("duplicates") if isinstance(check.get("duplicates"), dict) else {}
    return {"summary": {k: check.get(k) for k in ("data", "layout", "files_scanned", "readable_images", "num_classes",
                                                    "imbalance_ratio", "errors", "warnings")},
            "classes": [{"name": c, "count": n, "share": n / most} for c, n in sorted(total.items())],
            "across": (near.get("across_splits") or [])[:60], "within": (near.get("within_split") or [])[:60],
            "totals": {"across": len(near.get("across_splits") or []), "within": len(near.get("within_split") or [])},
            "groups": [g for g in (near.get("groups") or []) if isinstance(g, dict)],
            "exact": {k: v[:30] for k, v in exact.items() if isinstance(v, list)},
            "quality": {k: v[:24] for k, v in (check.get("quality") or {}).items() if isinstance(v, list)},
            "embeddings": embedding_view(check.get("embeddings")), "findings": listed_findings(check)}


def listed_findings(check: dict) -> list[dict] | None:
    """Every finding of check.txt (commands.check.findings), or None for a check.json that is not one."""
    from ..commands.check import findings

    try:
        return [dict(f, shown=f["entries"][:20]) for f in findings(check)]
    except (KeyError, TypeError, AttributeError, IndexError, ValueError):
        return None


def embedding_view(emb) -> dict | None:
    """The embedding pass's findings (``classlab check --embeddings``), as the page lists them."""
    if not isinstance(emb, dict):
        return None
    near = emb.get("near_duplicates") if isinstance(emb.get("near_duplicates"), dict) else {}
    pairs = (near.get("across_splits") or []) + (near.get("within_split") or [])
    return {"backbone": emb.get("backbone"), "threshold": emb.get("threshold"), "pairs": pairs[:60],
            "pair_count": len(pairs), "outliers": (emb.get("outliers") or [])[:48],
            "disagree": (emb.get("neighbours_disagree") or [])[:48]}


def compare_view(bench, details: dict) -> dict:
    """The comparison's runs and pairs, with the baseline's run id (for thumbnails of fixed/broken images)."""
    from pathlib import Path

    comparison = details["comparison"] if isinstance(details["comparison"], dict) else {}
    catalog = {r["id"]: r for r in bench.catalog.query()}
    runs = [dict(r, model=catalog.get(r.get("run"), {}).get("model"), data=catalog.get(r.get("run"), {}).get("data"))
            for r in comparison.get("runs") or [] if isinstance(r, dict)]
    baseline = Path(str(runs[0].get("run_dir", ""))).name if runs else ""
    try:
        bench.run_dir(baseline)
    except HTTPException:
        baseline = ""  # the baseline is outside the served folder: numbers only
    names = _display_names(runs)
    pairs = [dict(p, **{k: _named(p.get(k), names) for k in ("verdict_accuracy", "verdict_macro_f1")})
             for p in comparison.get("pairs") or [] if isinstance(p, dict)]
    return {"runs": runs, "pairs": pairs, "baseline": baseline, "names": names}


def _display_names(runs: list[dict]) -> dict:
    """Each compared run's name for people: model · data, with the run's time where two would read the same
    (a retrained model beside its first version); the id when nothing else is known."""
    plain = {r.get("run"): " · ".join(str(v) for v in (r.get("model") or r.get("command"), r.get("data")) if v)
             or str(r.get("run")) for r in runs}
    repeated = {n for n in plain.values() if list(plain.values()).count(n) > 1}
    out = {}
    for run, name in plain.items():
        stamp = str(run).split("-")[:2]  # ids start YYYYMMDD-HHMMSS
        if name in repeated and len(stamp) == 2 and stamp[1].isdigit() and len(stamp[1]) == 6:
            name = f"{name} ({stamp[0][4:6]}-{stamp[0][6:8]} {stamp[1][:2]}:{stamp[1][2:4]}:{stamp[1][4:]})"
        out[run] = name
    return out


def _named(sentence, names: dict) -> str:
    """A verdict sentence with run ids replaced by the runs' names (report.md keeps the ids)."""
    sentence = str(sentence or "")
    for run, name in sorted(names.items(), key=lambda item: -len(str(item[0]))):
        sentence = sentence.replace(str(run), name)
    return sentence
