"""``classlab workshop DATA``: the decks' path in one command, each stop a normal run, then one comparison.

Stops: explore -> k-NN on pixels (k chosen on validation) -> the NumPy scratch MLP -> a torch MLP -> a
CNN -> transfer learning (frozen MobileNetV2 + head, when its weights are on this machine). Every
stop scores the same test images. ``--budget`` shares the time out among the stops (by weight, re-shared
after each stop with what is left) and fits each one into its share: fewer epochs first, then a
stratified subset of the training images, estimated from rough 2-core CPU rates. What was scaled down
is reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..data.options import DataOptions, load_and_split
from ..errors import ClasslabError, warn
from ..fileio import save_figure, write_csv, write_json
from ..runs import RunResult, RunWriter

MIN_PER_CLASS = 5  # one each for validation and test, and a few to learn from
BUDGET_EVAL = 2000  # under a budget, every stop scores the same (at most) 2,000 test images


@dataclass
class Stop:
    name: str
    weight: float  # share of the budget
    epochs: int = 0
    min_epochs: int = 0
    rate: float = 0.0  # training images per second at 784 pixels, 2 CPU cores (rough)
    # the transfer stop resizes every image to its backbone's input (its rate does not depend on pixels) and
    # costs one pass over the images (their frozen features); the head's epochs on cached features are cheap
    fixed_input: bool = False
    single_pass: bool = False


STOPS = [Stop("explore", 0.03), Stop("knn", 0.12), Stop("scratch-mlp", 0.15, 20, 3, 20000),
         Stop("mlp", 0.15, 20, 3, 40000), Stop("cnn", 0.35, 8, 2, 2500),
         Stop("transfer", 0.20, 10, 10, 250, fixed_input=True, single_pass=True)]


@dataclass
class Plan:
    epochs: int
    max_train: int | None
    notes: list[str] = field(default_factory=list)


def fit_to_share(stop: Stop, share: float | None, n_train: int, pixels: int) -> Plan:
    """Epochs and training subset so that epochs x images / rate fits in ``share`` seconds."""
    if share is None:
        return Plan(stop.epochs, None)
    rate = stop.rate if stop.fixed_input else stop.rate * 784 / max(pixels, 1)
    epochs = stop.epochs
    while epochs > stop.min_epochs and epochs * n_train / rate > share:
        epochs -= 1
    notes = [f"{epochs} epochs instead of {stop.epochs}"] if epochs < stop.epochs else []
    cap = int(share * rate / (1 if stop.single_pass else epochs))
    if cap < n_train:
        cap = max(cap, 50)
        notes.append(f"trained on {cap:,} of {n_train:,} training images")
        return Plan(epochs, cap, notes)
    return Plan(epochs, None, notes)


def _weights_available(weights: str | None) -> str | None:
    """None when the transfer stop can run offline, else why not."""
    if weights:
        return None if Path(weights).is_file() else f"--weights {weights} does not exist"
    from ..backbones.torchvision_source import cached_file, hub_checkpoints, weight_versions

    versions = weight_versions("mobilenet_v2")
    if cached_file(versions) is not None:
        return None
    files = [m.url.rsplit("/", 1)[-1] for m in versions]
    return (f"MobileNetV2's pretrained weights are not on this machine: put {' or '.join(files)} into "
            f"{hub_checkpoints()} (or pass --weights FILE) to add the transfer-learning stop")


def run_workshop(opts: DataOptions, budget: float | None = None, runs_dir=None, weights: str | None = None,
                 progress: bool = False, clock=time.perf_counter) -> RunResult:
    """``clock``: what the budget is measured with (tests pass a fixed one, so that they check the plan, which
    must not depend on how busy the machine is)."""
    t_start = clock()
    ds, split = load_and_split(opts)
    counts = np.bincount(ds.labels, minlength=ds.num_classes)
    if counts.min() < MIN_PER_CLASS:
        small = [f"'{ds.class_names[c]}' ({counts[c]})" for c in np.flatnonzero(counts < MIN_PER_CLASS)[:5]]
        raise ClasslabError(f"the workshop needs at least {MIN_PER_CLASS} images per class (one each for validation "
                            f"and test, the rest to learn from); too few in {', '.join(small)}")
    if ds.is_volume:
        raise ClasslabError("the workshop path is for 2D images; train volumes with --model cnn3d")
    pixels = int(np.prod(ds.item_shape))
    n_train = len(split.indices("train"))
    base = opts
    scaled = []
    if budget is not None and len(split.indices("test")) > BUDGET_EVAL:
        base = replace(opts, max_eval=BUDGET_EVAL)
        scaled.append(f"all stops: validation and test capped at {BUDGET_EVAL:,} images each")
    skip_transfer = _weights_available(weights)
    stops = [s for s in STOPS if s.name != "transfer" or skip_transfer is None]
    results = []
    for i, stop in enumerate(stops):
        left = None if budget is None else max(1.0, budget - (clock() - t_start))
        share = None if left is None else left * stop.weight / sum(s.weight for s in stops[i:])
        if progress:
            print(f"stop {i + 1}/{len(stops)}: {stop.name}" + (f" (about {share:.0f} s)" if share else ""), flush=True)
        row = _run_stop(stop, share, base, n_train, pixels, runs_dir, weights, ds)
        scaled += [f"{stop.name}: {n}" for n in row.pop("notes")]
        results.append(row)
    return _compare(results, ds, scaled, skip_transfer, budget, clock() - t_start, runs_dir)


def _run_stop(stop: Stop, share, opts: DataOptions, n_train: int, pixels: int, runs_dir, weights, ds) -> dict:
    t = time.perf_counter()
    notes: list[str] = []
    if stop.name == "explore":
        from .explore import explore

        result = explore(opts, runs_dir)
        return {"stop": "explore", "method": "explore the data", "run_dir": result.run_dir,
                "report": result.report, "seconds": time.perf_counter() - t, "notes": notes}
    if stop.name == "knn":
        from .knn import run_knn

        if share is not None:  # exact k-NN costs train x eval x pixels; about 3e11 per second here
            n_eval = min(BUDGET_EVAL, len(ds)) * 2
            cap = int(share * 3e11 / max(1, n_eval * pixels))
            if cap < n_train:
                opts = replace(opts, max_train=max(cap, 50))
                notes.append(f"searched {opts.max_train:,} of {n_train:,} training images")
        result = run_knn(opts, (1, 3, 5, 7), runs_dir=runs_dir, progress=False)
        return _row("knn", f"k-NN on pixels (k={result.details['k']})", result, t, notes)
    plan = fit_to_share(stop, share, n_train, pixels)
    opts = replace(opts, max_train=plan.max_train)
    if stop.name == "transfer":
        from ..backbones.config import TransferConfig
        from .transfer import run_transfer

        tc = TransferConfig(weights=weights, mode="features", image_size=64, dense=128, head_epochs=plan.epochs)
        result = run_transfer(opts, tc, runs_dir, progress=False)
        return _row("transfer", "MobileNetV2 frozen + head", result, t, plan.notes)
    from ..training.config import TrainConfig
    from .train import run_train

    configs = {"scratch-mlp": dict(model="scratch-mlp", model_options={"hidden": [128]}, lr=1e-3, optimizer="adam"),
               "mlp": dict(model="mlp", model_options={"hidden": [256, 128]}, lr=1e-3, optimizer="adam"),
               "cnn": dict(model="cnn", model_options={"filters": [32, 64], "dense": [128], "batch_norm": True},
                           lr=2e-3, optimizer="adam", schedule="cosine")}
    cfg = TrainConfig(epochs=plan.epochs, batch_size=64, seed=opts.seed, **configs[stop.name])
    result = run_train(opts, cfg, runs_dir, progress=False)
    method = {"scratch-mlp": "MLP from scratch (NumPy)", "mlp": "MLP (PyTorch)", "cnn": "CNN (PyTorch)"}[stop.name]
    return _row(stop.name, method, result, t, plan.notes)


def _row(stop: str, method: str, result: RunResult, t: float, notes: list[str]) -> dict:
    return {"stop": stop, "method": method, "run_dir": result.run_dir, "report": result.report,
            "accuracy": result.accuracy, "macro_f1": result.macro_f1, "seconds": time.perf_counter() - t,
            "notes": notes}


def _compare(results, ds, scaled, skip_transfer, budget, total, runs_dir) -> RunResult:
    run = RunWriter("workshop", ds.name, runs_dir)
    run.write_config({"budget_seconds": budget, "scaled_down": scaled, "skipped_transfer": skip_transfer}, None)
    scored = [r for r in results if "accuracy" in r]
    keys = ["stop", "method", "accuracy", "macro_f1", "seconds", "run_dir"]
    write_csv(run.file("comparison.csv"), keys, ([r[k] for k in keys] for r in scored))
    story = _per_image_story(scored, runs_dir)
    write_json(run.file("comparison.json"), {"data": ds.name, "budget_seconds": budget, "total_seconds": total,
                                             "stops": [{k: (str(v) if isinstance(v, Path) else v) for k, v in r.items()}
                                                       for r in results],
                                             "scaled_down": scaled, "skipped": skip_transfer,
                                             "steps": story["steps"], "compare_run": story["compare_run"]})
    _comparison_png(scored, run.file("comparison.png"), ds.name)
    lines = ["| stop | method | test accuracy | macro F1 | time | report |", "|---|---|---|---|---|---|"]
    for r in results:
        link = Path(r["report"]).relative_to(run.run_dir.parent) if "report" in r else ""
        acc = f"{r['accuracy']:.4f} | {r['macro_f1']:.4f}" if "accuracy" in r else "- | -"
        lines.append(f"| {r['stop']} | {r['method']} | {acc} | {r['seconds']:.1f} s | [report](../{link}) |")
    table = "\n".join(lines)
    notes = [f"Budget: {budget:.0f} s; the path took {total:.0f} s." if budget else f"No budget; the path took {total:.0f} s."]
    notes += [f"Scaled down: {s}." for s in scaled]
    if skip_transfer:
        notes.append(f"Transfer learning skipped: {skip_transfer}.")
    report = run.write_report(f"Workshop path on {ds.name}", [
        ("Comparison (same test images for every stop)", table + "\n\n![comparison](comparison.png)"),
        ("Step by step, image by image", story["text"]),
        ("Notes", "\n\n".join(notes) + "\n\nMachine-readable: `comparison.json`, `comparison.csv`."),
    ])
    if skip_transfer:
        warn(f"transfer stop skipped: {skip_transfer}")
    text = "\n".join(f"{r['stop']:12} {r['method']:32} " + (f"acc {r['accuracy']:.4f}  macro F1 {r['macro_f1']:.4f}  "
                                                             if "accuracy" in r else " " * 31) + f"{r['seconds']:6.1f} s"
                     for r in results)
    return RunResult(run.run_dir, "workshop", report,
                     details={"table": text, "results": results, "scaled": scaled, "skipped": skip_transfer,
                              "steps": story["steps"]})


def _per_image_story(scored: list[dict], runs_dir) -> dict:
    """Each stop against the one before it on the same test images (classlab compare, chained): which
    images each step fixed and broke, and whether it is a significant step."""
    from .compare import compare_runs

    if len(scored) < 2:
        return {"text": "Only one stop was scored.", "steps": [], "compare_run": None}
    result = compare_runs([r["run_dir"] for r in scored], runs_dir, names=[r["method"] for r in scored], chain=True)
    steps = [{"from": p["a"], "to": p["b"], "fixed": len(p["fixed"]), "broke": len(p["broken"]),
              "p_value": p["mcnemar"]["p_value"], "verdict": p["verdict_accuracy"]} for p in result.details["pairs"]]
    lines = ["| step | images fixed | images broken | McNemar p |", "|---|---|---|---|"]
    lines += [f"| {s['from']} -> {s['to']} | {s['fixed']} | {s['broke']} | {s['p_value']:.3g} |" for s in steps]
    link = Path(result.report).relative_to(Path(result.run_dir).parent)
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {s['verdict']}" for s in steps) + \
        f"\n\nThe images themselves, per step: [comparison report](../{link})."
    return {"text": text, "steps": steps, "compare_run": Path(result.run_dir).name}


def _comparison_png(rows, path: Path, data: str) -> Path:
    import matplotlib.pyplot as plt

    names = [r["method"] for r in rows]
    y = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.6 * len(rows) + 1.8), sharey=True)
    # dots on an axis zoomed to the scores: on 0-1 bars, 0.967 and 0.994 look the same
    scores = [v for r in rows for v in (r["accuracy"], r["macro_f1"])]
    low = max(0.0, min(scores) - 0.1 * (max(scores) - min(scores) + 0.02))
    ax1.plot([r["accuracy"] for r in rows], y, "o", markersize=8, label="test accuracy")
    ax1.plot([r["macro_f1"] for r in rows], y, "d", markersize=6, label="macro F1")
    for k, r in enumerate(rows):
        ax1.annotate(f"{r['accuracy']:.3f}", (r["accuracy"], k), xytext=(6, 6), textcoords="offset points", fontsize=8)
    ax1.set_yticks(y, labels=names)
    ax1.set_xlim(low, min(1.0, max(scores) + 0.15 * (max(scores) - low)))
    ax1.invert_yaxis()
    ax1.legend(loc="best")  # placed where no dot is
    ax1.set_title(f"{data}: test scores (axis from {low:.2f}, not 0)")
    ax2.barh(y, [r["seconds"] for r in rows], 0.5, color="gray")
    ax2.set_title("time (s, training and scoring)")
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)
