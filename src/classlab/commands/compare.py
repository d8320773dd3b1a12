"""``classlab compare RUN_A RUN_B [...]``: which run is better on the same test images, and where.

Each run is compared with the first (the baseline): metrics side by side with their confidence intervals,
a paired test (McNemar for accuracy, a bootstrap of the difference for macro F1) said in words, overlaid
training curves, the confusion-matrix difference, per-class F1 deltas, and grids of the images one run
gets right and the other wrong. Runs must have been scored on the same test images (matched by the pixel
hashes of their split manifests); ``common=True`` compares them on the images they share instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ClasslabError
from ..evaluation.significance import bootstrap_difference, in_words, macro_f1, mcnemar
from ..fileio import save_figure, write_csv, write_json
from ..runs import RunResult, RunWriter
from ..safe_files import UnreadableFile, read_csv

GRID = 64  # images considered per disagreement grid (at most 8 per true class are shown)


@dataclass
class RunPredictions:
    """A run's test predictions keyed by image content: what comparing needs from a run directory."""

    result: RunResult
    name: str
    class_names: list[str]
    keys: list[str]  # per test image: its pixel hash (with a counter for identical images)
    ids: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray


def _read_csv(path: Path) -> list[dict]:
    try:
        return read_csv(path)
    except UnreadableFile as e:
        raise ClasslabError(f"cannot compare: {e}") from None


def load_scored(run_dir: str | Path, name: str) -> RunPredictions:
    result = RunResult.load(run_dir)
    folder = result.run_dir
    if not (folder / "predictions.csv").is_file() or not result.metrics:
        raise ClasslabError(f"{folder} has no test predictions (a '{result.command}' run); compare runs of "
                            "train, transfer, knn or the workshop's stops")
    class_names = [str(c) for c in result.metrics.get("class_names", [])]
    hashes = {r["id"]: r["hash"] for r in _read_csv(folder / "split.csv")} if (folder / "split.csv").is_file() else {}
    rows = _read_csv(folder / "predictions.csv")
    index = {c: i for i, c in enumerate(class_names)}
    seen: dict[str, int] = {}
    keys = []
    for r in rows:
        h = hashes.get(r["id"], "id:" + r["id"])
        seen[h] = seen.get(h, 0) + 1
        keys.append(f"{h}#{seen[h]}")
    try:
        y_true = np.array([index[r["true_label"]] for r in rows], dtype=np.int64)
        y_pred = np.array([index[r["predicted_label"]] for r in rows], dtype=np.int64)
    except KeyError as e:
        raise ClasslabError(f"{folder}/predictions.csv names a class {e} that metrics.json does not list") from None
    return RunPredictions(result, name, class_names, keys, [r["id"] for r in rows], y_true, y_pred)


def align(a: RunPredictions, b: RunPredictions, common: bool) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the shared test images in a and in b, in a's order; refuses different test sets."""
    if a.class_names != b.class_names:
        raise ClasslabError(f"{a.name} and {b.name} have different classes ({len(a.class_names)} vs "
                            f"{len(b.class_names)}); compare runs of the same dataset")
    where_b = {k: i for i, k in enumerate(b.keys)}
    shared = [(i, where_b[k]) for i, k in enumerate(a.keys) if k in where_b]
    if len(shared) != len(a.keys) or len(shared) != len(b.keys):
        if not common:
            raise ClasslabError(f"{a.name} and {b.name} were scored on different test images ({len(a.keys)} and "
                                f"{len(b.keys)}, {len(shared)} shared): give runs of the same split (--split "
                                "MANIFEST), or --common to compare them on the shared images only")
        if not shared:
            raise ClasslabError(f"{a.name} and {b.name} share no test images")
    ia, ib = (np.array(v, dtype=np.int64) for v in zip(*shared))
    if not np.array_equal(a.y_true[ia], b.y_true[ib]):
        raise ClasslabError(f"{a.name} and {b.name} label the same images differently; were they relabelled?")
    return ia, ib


def compare_pair(a: RunPredictions, b: RunPredictions, common: bool, seed: int = 0) -> dict:
    ia, ib = align(a, b, common)
    y, pa, pb = a.y_true[ia], a.y_pred[ia], b.y_pred[ib]
    k = len(a.class_names)
    acc_a, acc_b = float(np.mean(pa == y)), float(np.mean(pb == y))
    test = mcnemar(pa == y, pb == y)
    f1 = bootstrap_difference(y, pa, pb, k, seed=seed)
    f1_a, f1_b = (float(macro_f1(y, p, k)[0]) for p in (pa, pb))
    per_class = []
    for c in range(k):
        def f1_of(p):
            tp = np.sum((y == c) & (p == c))
            denominator = np.sum(y == c) + np.sum(p == c)
            return float(2 * tp / denominator) if denominator else 0.0
        per_class.append({"class": a.class_names[c], "f1_a": f1_of(pa), "f1_b": f1_of(pb)})
    return {"a": a.name, "b": b.name, "images": int(len(y)), "accuracy_a": acc_a, "accuracy_b": acc_b,
            "macro_f1_a": f1_a, "macro_f1_b": f1_b, "mcnemar": test, "macro_f1_bootstrap": f1,
            "verdict_accuracy": in_words(a.name, b.name, test, acc_b - acc_a, "accuracy"),
            "verdict_macro_f1": in_words(a.name, b.name, f1, f1["difference"], "macro F1"),
            "per_class_f1": per_class, "fixed": [a.ids[i] for i, j in zip(ia, ib) if a.y_pred[i] != a.y_true[i]
                                                  and b.y_pred[j] == b.y_true[j]],
            "broken": [a.ids[i] for i, j in zip(ia, ib) if a.y_pred[i] == a.y_true[i] and b.y_pred[j] != b.y_true[j]],
            "_positions": (ia, ib)}


def compare_runs(run_dirs: list, runs_dir=None, common: bool = False, names: list[str] | None = None,
                 images: bool = True, chain: bool = False) -> RunResult:
    """Compare every run with the first (``chain``: with the one before it, as the workshop's steps are);
    write ``runs/<time>-compare-<data>/`` and return its RunResult."""
    if len(run_dirs) < 2:
        raise ClasslabError("give at least two runs to compare")
    names = names or [Path(d).name for d in run_dirs]
    scored = [load_scored(d, n) for d, n in zip(run_dirs, names)]
    pairs = [compare_pair(scored[i - 1] if chain else scored[0], scored[i], common) for i in range(1, len(scored))]
    run = RunWriter("compare", scored[0].result.run_dir.name.split("-", 3)[-1], runs_dir)
    run.write_config({"runs": [str(s.result.run_dir) for s in scored], "common": common}, None)
    figures = _figures(run, scored, pairs, images, chain)
    summary = [{"run": s.name, "run_dir": str(s.result.run_dir), "command": s.result.command,
                "accuracy": s.result.accuracy, "macro_f1": s.result.macro_f1,
                "confidence_intervals": s.result.metrics.get("confidence_intervals")} for s in scored]
    public = [{k: v for k, v in p.items() if not k.startswith("_")} for p in pairs]
    write_json(run.file("comparison.json"), {"baseline": scored[0].name, "runs": summary, "pairs": public})
    write_csv(run.file("comparison.csv"), ["run", "command", "accuracy", "macro_f1", "run_dir"],
              ([s["run"], s["command"], s["accuracy"], s["macro_f1"], s["run_dir"]] for s in summary))
    report = run.write_report(f"Comparison: {', '.join(names)}", _sections(summary, public, figures))
    return RunResult(run.run_dir, "compare", report, details={"runs": summary, "pairs": public})


def _interval(ci: dict | None, key: str) -> str:
    if not ci or key not in ci:
        return ""
    low, high = ci[key]
    return f" ({low:.4f}-{high:.4f})"


def _sections(summary, pairs, figures) -> list[tuple[str, str]]:
    table = ["| run | command | test accuracy (95% CI) | macro F1 (95% CI) |", "|---|---|---|---|"]
    for s in summary:
        acc = "-" if s["accuracy"] is None else f"{s['accuracy']:.4f}{_interval(s['confidence_intervals'], 'accuracy')}"
        f1 = "-" if s["macro_f1"] is None else f"{s['macro_f1']:.4f}{_interval(s['confidence_intervals'], 'macro_f1')}"
        table.append(f"| {s['run']} | {s['command']} | {acc} | {f1} |")
    sections = [("Runs", "\n".join(table))]
    for p, fig in zip(pairs, figures["pairs"]):
        t, f = p["mcnemar"], p["macro_f1_bootstrap"]
        text = (f"On the same {p['images']:,} test images:\n\n- {p['verdict_accuracy']} McNemar ({t['method']}): "
                f"{t['a_only_correct']} images only {p['a']} gets right, {t['b_only_correct']} only {p['b']} does.\n"
                f"- {p['verdict_macro_f1']} Bootstrap of the difference ({f['resamples']} resamples of the test images): "
                f"{f['difference'] * 100:+.2f} points, 95% CI {f['ci95'][0] * 100:+.2f} to {f['ci95'][1] * 100:+.2f}.\n"
                f"- {p['b']} fixed {len(p['fixed'])} of {p['a']}'s mistakes and broke {len(p['broken'])} of its right answers.")
        for title, name in fig:
            text += f"\n\n{title}:\n\n![{title}]({name})"
        sections.append((f"{p['b']} against {p['a']}", text))
    if figures["curves"]:
        sections.append(("Training curves", f"![training curves]({figures['curves']})"))
    sections.append(("Files", "`comparison.json` (every number, the fixed and broken image ids), `comparison.csv`."))
    return sections


def _figures(run: RunWriter, scored: list[RunPredictions], pairs: list[dict], images: bool, chain: bool) -> dict:
    from ..plots import confusion_matrix_png  # noqa: F401  (matplotlib's backend is chosen there)

    out = {"pairs": [], "curves": _curves(run, scored)}
    dataset = _dataset(scored[0]) if images else None
    for n, (other, p) in enumerate(zip(scored[1:], pairs), start=1):
        ia, ib = p["_positions"]
        base = scored[n - 1] if chain else scored[0]
        figs = [("Per-class F1, baseline vs this run", _f1_deltas(run, p, f"f1_deltas_{n}.png")),
                ("Confusion matrices compared (row-normalised; blue where this run does better)",
                 _confusion_difference(run, base, other, ia, ib, f"confusion_difference_{n}.png"))]
        if dataset is not None:
            for kind, ids in (("fixed", p["fixed"]), ("broken", p["broken"])):
                if ids:
                    name = f"{kind}_{n}.png"
                    _grid(run, dataset, ids[:GRID], name, f"{p['b']} {kind} {len(ids)} of {p['a']}'s "
                          + ("mistakes" if kind == "fixed" else "right answers") + " (rows: true class)")
                    what = (f"{p['a']} got wrong and {p['b']} right" if kind == "fixed"
                            else f"{p['a']} got right and {p['b']} wrong")
                    figs.append((f"Images {what} ({len(ids)})", name))
        out["pairs"].append(figs)
    return out


def _dataset(s: RunPredictions):
    """The runs' dataset, for image grids; None (grids left out) where it cannot be loaded any more."""
    from ..data.options import load_and_split, saved_options

    try:
        ds, _ = load_and_split(saved_options(s.result.run_dir))
    except ClasslabError:
        return None
    return ds


def _grid(run: RunWriter, ds, ids: list[str], name: str, title: str) -> None:
    """The images, one row per true class (at most 8 rows of 8)."""
    from ..plots import image_grid_png

    index = {item: i for i, item in enumerate(ds.ids)}
    by_class: dict[int, list[int]] = {}
    for i in (index.get(item) for item in ids):
        if i is not None and len(by_class.get(int(ds.labels[i]), [])) < 8:
            by_class.setdefault(int(ds.labels[i]), []).append(i)
    rows = []
    for c, members in sorted(by_class.items())[:8]:
        pictures = np.asarray(ds.images[np.array(members)])
        rows.append((f"true {ds.class_names[c]}", pictures[:, pictures.shape[1] // 2] if pictures.ndim == 5 else pictures))
    if rows:
        image_grid_png(rows, run.file(name), title)


def _f1_deltas(run: RunWriter, pair: dict, name: str) -> str:
    import matplotlib.pyplot as plt

    rows = pair["per_class_f1"]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.5))
    ax.barh(y - 0.2, [r["f1_a"] for r in rows], 0.4, label=pair["a"])
    ax.barh(y + 0.2, [r["f1_b"] for r in rows], 0.4, label=pair["b"])
    ax.set_yticks(y, labels=[r["class"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 on the test images")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, run.file(name))
    return name


def _confusion_difference(run: RunWriter, a: RunPredictions, b: RunPredictions, ia, ib, name: str) -> str:
    import matplotlib.pyplot as plt

    k = len(a.class_names)

    def rates(y, p):
        cm = np.bincount(y * k + p, minlength=k * k).reshape(k, k).astype(float)
        return cm / np.maximum(cm.sum(1, keepdims=True), 1)
    diff = rates(b.y_true[ib], b.y_pred[ib]) - rates(a.y_true[ia], a.y_pred[ia])
    diff = np.where(np.eye(k, dtype=bool), diff, -diff)  # blue = better: more right, or fewer confused
    limit = max(float(np.abs(diff).max()), 1e-9)
    side = min(16, 3 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    im = ax.imshow(diff, cmap="RdBu", vmin=-limit, vmax=limit)
    ax.set_xticks(range(k), labels=a.class_names, rotation=90 if k > 10 else 45, ha="right")
    ax.set_yticks(range(k), labels=a.class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{b.name} vs {a.name}: blue = {b.name} better\n(diagonal: more right; elsewhere: fewer confused)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    save_figure(fig, run.file(name))
    return name


def _curves(run: RunWriter, scored: list[RunPredictions]) -> str | None:
    import matplotlib.pyplot as plt

    with_history = [s for s in scored if s.result.history]
    if not with_history:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for s in with_history:
        h = s.result.history
        epochs = [r["epoch"] for r in h]
        ax1.plot(epochs, [r.get("val_loss", r["train_loss"]) for r in h], marker="o", label=s.name)
        ax2.plot(epochs, [r.get("val_acc", r.get("train_acc", np.nan)) for r in h], marker="o", label=s.name)
    ax1.set_title("validation loss (training loss where there is none)")
    ax2.set_title("validation accuracy")
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, run.file("curves.png"))
    return "curves.png"
