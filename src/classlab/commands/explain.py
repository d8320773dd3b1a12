"""``classlab explain RUN``: why the model said it, where it fails, and whether its probabilities are honest.

Writes ``RUN/explain/`` (built in a temporary folder, then renamed: never half-written) and adds a section
to the run's report: the most confidently wrong test images, the most confused class pairs and an image
grid for every confusion-matrix cell (``cells/cell_<true>_<predicted>.png``), attribution maps on the
original images (Grad-CAM for convolutional networks, occlusion for every model, k-NN and the NumPy MLP
included), the nearest training images of the worst mistakes, calibration (reliability diagram, ECE, and a
temperature fitted on validation that predict and export then use) and a map of the test embeddings.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ClasslabError
from ..evaluation.calibration import apply_temperature, choose_temperature, nll, reliability, reliability_png
from ..fileio import atomic_write_text, write_json
from ..plots import captioned_grid_png
from ..runs import RunResult

PER_CELL = 16
ATTRIBUTED = 64  # the worst mistakes given attribution maps
NEIGHBOURS = 5
NEAREST_FOR = 8  # the worst mistakes shown with their nearest training images
MAX_TRAIN = 20000  # training images searched for neighbours and label issues (a seeded subset above this)


def _arrays(path: Path, what: str) -> dict:
    from ..safe_files import check_path

    if not path.is_file():
        raise ClasslabError(f"{path.parent} has no {path.name}: the run was made before classlab saved {what}; "
                            "run it again to explain it")
    check_path(path)
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def explain(run_dir, top: int = 64, method: str = "auto", layer: str | None = None, tsne: bool = False) -> RunResult:
    from ..data.options import load_and_split, saved_options

    result = RunResult.load(run_dir)
    outputs = _arrays(result.run_dir / "probabilities.npz", "test probabilities")
    if "test_probs" not in outputs:
        raise ClasslabError(f"{result.run_dir} has no test predictions to explain")
    ds, split = load_and_split(saved_options(result.run_dir))
    index = {item: i for i, item in enumerate(ds.ids)}
    missing = [i for i in outputs["test_ids"] if str(i) not in index]
    if missing:
        raise ClasslabError(f"the data of {result.run_dir} changed since the run ({len(missing)} test images are "
                            f"gone, e.g. {missing[0]}); explain needs the images it was scored on")
    test_rows = np.array([index[str(i)] for i in outputs["test_ids"]])
    tmp = Path(tempfile.mkdtemp(prefix=".explain-", dir=result.run_dir))
    try:
        findings = _write(tmp, result, ds, test_rows, outputs, top, method, layer, tsne, split.indices("train"))
        final = result.run_dir / "explain"
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    calibration = findings["calibration"]
    if "temperature" in calibration:  # predict and export divide the model's output by it from now on
        write_json(result.run_dir / "calibration.json", {
            "temperature": calibration["temperature"], "fitted_on": "validation",
            "test_ece_before": calibration["ece"], "test_ece_after": calibration["ece_after"]})
    else:  # an earlier explain's temperature no longer stands
        (result.run_dir / "calibration.json").unlink(missing_ok=True)
    _link_from_run_report(result, findings)
    return RunResult(result.run_dir, result.command, final / "report.md", result.metrics, details=findings)


def _write(out: Path, result: RunResult, ds, rows: np.ndarray, outputs: dict, top, method, layer, tsne,
           train_rows: np.ndarray) -> dict:
    names = [str(c) for c in outputs["class_names"]]
    y, proba = outputs["test_labels"].astype(np.int64), outputs["test_probs"].astype(np.float64)
    pred = proba.argmax(1)
    images = np.asarray(ds.images[rows])
    if images.ndim == 5:  # volumes: their middle slice stands for them in grids
        images = images[:, images.shape[1] // 2]
    loss = -np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1))
    wrong = np.flatnonzero(pred != y)
    worst = wrong[np.argsort(-loss[wrong], kind="stable")][:top]
    sections, findings = [], {"test_images": int(len(y)), "mistakes": int(len(wrong))}

    def caption(i):
        return f"{names[y[i]][:12]} -> {names[pred[i]][:12]}\np={proba[i, pred[i]]:.2f}"
    if len(worst):
        captioned_grid_png(images[worst], [caption(i) for i in worst], out / "top_losses.png",
                           f"The {len(worst)} misclassified test images with the highest loss (true -> predicted)")
        sections.append(("Top losses", "The misclassified test images with the highest loss, i.e. the least "
                         "probability on their true class (true -> predicted, probability of the prediction):"
                         "\n\n![top losses](top_losses.png)"))
    findings["top_losses"] = [{"id": str(outputs["test_ids"][i]), "true": names[y[i]], "predicted": names[pred[i]],
                               "probability": float(proba[i, pred[i]]), "loss": float(loss[i])} for i in worst]
    sections.append(_cells(out, names, y, pred, images, loss, findings))
    sections.append(_calibration(out, outputs, y, proba, findings))
    sections.append(_embedding_map(out, result, ds, rows, y, pred, names, tsne))
    attribution = _attribution(out, result, ds, images, worst[:ATTRIBUTED], pred, y, names, method, layer, findings,
                               train_rows)
    if attribution:
        sections.append(attribution)
    if len(train_rows):
        space = TrainSpace(result, ds, train_rows)
        sections.append(_by_example(out, space, ds, rows[worst[:NEAREST_FOR]], names, findings))
        sections.append(_label_issues(out, space, ds, names, findings))
    else:  # an evaluation: the model learnt from another run's images
        sections.append(("Explain by example", "This run has no training images of its own (it scores another "
                         "run's model), so nearest training images and label issues are left out; explain the "
                         "evaluated run for them."))
    write_json(out / "explain.json", findings)
    body = ["# Explaining " + result.run_dir.name, ""]
    for heading, text in sections:
        body += [f"## {heading}", "", text, ""]
    atomic_write_text(out / "report.md", "\n".join(body))
    return findings


def _cells(out: Path, names, y, pred, images, loss, findings) -> tuple[str, str]:
    """Most confused pairs, and one grid per non-empty confusion-matrix cell (its worst images first)."""
    k = len(names)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    pairs = sorted(((int(cm[t, p]), t, p) for t in range(k) for p in range(k) if t != p and cm[t, p]), reverse=True)
    (out / "cells").mkdir()
    cells = []
    for t in range(k):
        for p in range(k):
            members = np.flatnonzero((y == t) & (pred == p))
            if not len(members):
                continue
            shown = members[np.argsort(-loss[members], kind="stable")][:PER_CELL]
            name = f"cells/cell_{t:03d}_{p:03d}.png"
            captioned_grid_png(images[shown], [f"loss {loss[i]:.2f}" for i in shown], out / name,
                               f"true {names[t]}, predicted {names[p]}: {len(members)} images", cols=8)
            cells.append({"true": names[t], "predicted": names[p], "count": int(len(members)), "png": name})
    findings["most_confused"] = [{"true": names[t], "predicted": names[p], "count": c} for c, t, p in pairs[:10]]
    findings["cells"] = cells
    table = ["| true | predicted as | images | grid |", "|---|---|---|---|"]
    table += [f"| {names[t]} | {names[p]} | {c} | [images](cells/cell_{t:03d}_{p:03d}.png) |" for c, t, p in pairs[:10]]
    return ("Most confused pairs", ("\n".join(table) if pairs else "No test image is misclassified.") +
            "\n\nEvery cell of the confusion matrix has its images: `cells/cell_<true>_<predicted>.png` "
            "(class indices as in `explain.json`).")


def _calibration(out: Path, outputs: dict, y, proba, findings) -> tuple[str, str]:
    before = reliability(proba, y)
    calibration = {"ece": before["ece"], "nll": nll(proba, y), "reliability": before}
    after, why = None, "The run has no validation split, so no temperature was fitted (T = 1)."
    if "val_probs" in outputs:
        t, why = choose_temperature(outputs["val_probs"].astype(np.float64), outputs["val_labels"].astype(np.int64),
                                    proba.astype(np.float64), y)
        if t is not None:
            scaled = apply_temperature(proba, t)
            after = reliability(scaled, y)
            calibration.update(temperature=t, fitted_on="validation", ece_after=after["ece"],
                               nll_after=nll(scaled, y))
    calibration["temperature_note"] = why
    reliability_png(before, after, out / "reliability.png", "Reliability on the test split")
    findings["calibration"] = calibration
    text = f"Expected calibration error {before['ece']:.4f}, negative log-likelihood {calibration['nll']:.4f}."
    if after is not None:
        text += (f" A temperature of {calibration['temperature']:.3f} fitted on the validation split gives ECE "
                 f"{after['ece']:.4f} and NLL {calibration['nll_after']:.4f} on test (predictions unchanged); "
                 "it is saved in the run (`calibration.json`) and `predict` and `export` use it.")
    else:
        text += " " + why
    return "Calibration", text + "\n\n![reliability diagram](reliability.png)"


def _embedding_map(out: Path, result: RunResult, ds, rows, y, pred, names, tsne: bool) -> tuple[str, str]:
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    from ..fileio import atomic_write_bytes, save_figure

    source = "penultimate embeddings"
    path = result.run_dir / "embeddings.npz"
    if path.is_file():
        x = _arrays(path, "embeddings")["embeddings"]
    else:
        x, source = np.asarray(ds.images[rows]).reshape(len(rows), -1).astype(np.float32), "pixels"
    method = "PCA"
    points = PCA(2, random_state=0).fit_transform(x) if x.shape[1] > 2 else x
    if tsne and len(x) > 5:
        from sklearn.manifold import TSNE

        points, method = TSNE(2, random_state=0, init="pca", perplexity=min(30, len(x) - 1)).fit_transform(x), "t-SNE"
    fig, ax = plt.subplots(figsize=(7, 6))
    colours = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for c in range(len(names)):
        mine = y == c
        ax.scatter(points[mine, 0], points[mine, 1], s=8, color=colours(c % colours.N), label=names[c][:14])
    bad = pred != y
    ax.scatter(points[bad, 0], points[bad, 1], s=28, marker="x", color="black", label="mistake")
    ax.set_title(f"Test split, {method} of the {source}, coloured by true class")
    if len(names) <= 20:
        ax.legend(fontsize=7, markerscale=2, loc="best")
    save_figure(fig, out / "embedding_map.png")
    buf = io.BytesIO()  # the points themselves, for the workbench's interactive map
    np.savez(buf, ids=np.array([str(ds.ids[r]) for r in rows]), points=points.astype(np.float32), labels=y,
             predicted=pred, class_names=np.array([str(n) for n in names]), method=np.array(method))
    atomic_write_bytes(out / "embedding_map.npz", buf.getvalue())
    return "Embedding map", f"{method} of the {source} of every test image; black crosses are mistakes.\n\n" \
                            "![embedding map](embedding_map.png)"


def _attribution(out, result, ds, images, chosen, pred, y, names, method, layer, findings, train_rows):
    if not len(chosen):
        return None
    from ..trained.explainers import attribute

    try:
        model = _model_of(result, ds, train_rows)
    except ClasslabError as e:  # e.g. k-NN on a backbone's embeddings: nothing here scores raw images
        if method == "gradcam":
            raise
        maps, used = None, f"Attribution was not computed: {e}."
    else:
        maps, used = attribute(model, images[chosen], pred[chosen], method, layer)
    if maps is None:
        findings["attribution"] = used
        return ("Attribution", used)
    captions = [f"{names[y[i]][:12]} -> {names[pred[i]][:12]}" for i in chosen]
    captioned_grid_png(images[chosen], captions, out / "attribution.png",
                       f"{used}: where the evidence for the predicted class is", heatmaps=maps)
    findings["attribution"] = used
    return ("Attribution", f"{used} for the {len(chosen)} worst mistakes, on the original images (red: the regions "
            "that support the predicted class most).\n\n![attribution](attribution.png)")


def _model_of(result: RunResult, ds, train_rows):
    """The run's model: a network loaded once on the result (TrainSpace embeds with the same one); k-NN and
    the NumPy MLP from the data explain already holds."""
    from ..trained.model import run_model

    return result.model() if result.model_dir is not None else run_model(result.run_dir, ds, train_rows)


def _link_from_run_report(result: RunResult, findings: dict) -> None:
    report = result.run_dir / "report.md"
    if not report.is_file():
        return
    text = report.read_text(encoding="utf-8", errors="surrogateescape")
    marker = "\n## Explanation\n"
    text = text.split(marker)[0].rstrip() + "\n" + marker + (
        f"\n{findings['mistakes']} of {findings['test_images']} test images are misclassified. Top losses, the most "
        "confused pairs with a grid per confusion-matrix cell, attribution maps, calibration and an embedding map: "
        "[explain/report.md](explain/report.md).\n")
    atomic_write_text(report, text)


class TrainSpace:
    """The training images where explain looks for neighbours and label issues: the network's penultimate
    embeddings when the run has a network (cosine distance), flattened pixels otherwise (L2, as k-NN)."""

    def __init__(self, result: RunResult, ds, train_rows: np.ndarray):
        rng = np.random.default_rng(0)
        self.rows = np.sort(rng.choice(train_rows, MAX_TRAIN, replace=False)) if len(train_rows) > MAX_TRAIN \
            else train_rows
        self.model, self.what, self.metric = None, "pixels", "l2"
        if result.model_dir is not None:
            self.model = result.trained()  # the same loaded model attribution used
        cache = SavedSpace(result.run_dir, self.rows) if self.model is not None else None
        saved = cache.load() if cache else None
        if saved is not None:
            self.vectors, self.what, self.metric = saved
        else:
            self.vectors = self.embed(np.asarray(ds.images[self.rows]))
            if cache:
                cache.save(self.vectors, self.what, self.metric)
        self.labels, self.num_classes = ds.labels[self.rows], ds.num_classes
        self._search = None

    def nearest(self, images: np.ndarray, k: int) -> np.ndarray:
        """(n, k) positions in ``rows`` of the training images nearest to ``images``."""
        from ..models.knn import KNNClassifier

        if self._search is None:
            self._search = KNNClassifier(1, self.metric, progress=False).fit(self.vectors, self.labels,
                                                                             num_classes=self.num_classes)
        return self._search.kneighbors(self.embed(images), min(k, len(self.rows)))[1]

    def embed(self, images: np.ndarray) -> np.ndarray:
        if self.model is not None:
            from ..inference.predict import array_batches, predict_with_embeddings

            _, emb = predict_with_embeddings(self.model.model, array_batches(images, 256, self.model.device),
                                             self.model.preprocessing)
            if emb is not None:
                self.what, self.metric = "the network's penultimate embeddings", "cosine"
                return emb.numpy()
        return images.reshape(len(images), -1)


class SavedSpace:
    """A network's embeddings of its training images, kept in the run (train_space.npz; not in explain/, which
    each explain replaces whole) for the
    workbench's image cards and the next explain: embedding a photo model's training images takes seconds.
    Valid while best.pt (size and time) and the rows are the same; anything else is computed again."""

    def __init__(self, run_dir: Path, rows: np.ndarray):
        self.path, self.rows = Path(run_dir) / "train_space.npz", np.asarray(rows, dtype=np.int64)
        try:
            model = (Path(run_dir) / "best.pt").stat()
            self.stamp = np.array([model.st_size, model.st_mtime_ns], dtype=np.int64)
        except OSError:
            self.stamp = None

    def load(self):
        """(vectors, what, metric), or None."""
        if self.stamp is None or not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                if np.array_equal(z["stamp"], self.stamp) and np.array_equal(z["rows"], self.rows):
                    return z["vectors"], str(z["what"]), str(z["metric"])
        except (OSError, ValueError, KeyError):  # damaged or foreign: computed again
            return None
        return None

    def save(self, vectors: np.ndarray, what: str, metric: str) -> None:
        if self.stamp is None:
            return
        from ..fileio import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, stamp=self.stamp, rows=self.rows, vectors=np.asarray(vectors, dtype=np.float32),
                 what=np.array(what), metric=np.array(metric))
        try:
            atomic_write_bytes(self.path, buf.getvalue())
        except ClasslabError:  # a full disk or a read-only run folder (said as a ClasslabError): just not kept
            pass


def _by_example(out: Path, space: TrainSpace, ds, test_rows: np.ndarray, names, findings) -> tuple[str, str]:
    """Each of the worst mistakes beside its nearest training images (with their labels)."""
    if not len(test_rows):
        return "Explain by example", "No mistakes to explain."
    test_images = np.asarray(ds.images[test_rows])
    idx = space.nearest(test_images, NEIGHBOURS)
    k = idx.shape[1]
    pictures, captions, rows = [], [], []
    for r, t in enumerate(test_rows):
        pictures.append(test_images[r])
        captions.append(f"TEST: {names[ds.labels[t]][:12]}")
        for j in idx[r]:
            pictures.append(np.asarray(ds.images[space.rows[j]]))
            captions.append(f"train: {names[ds.labels[space.rows[j]]][:12]}")
        rows.append({"test": ds.ids[t], "neighbours": [ds.ids[space.rows[j]] for j in idx[r]]})
    pictures = np.stack(pictures)
    if pictures.ndim == 5:
        pictures = pictures[:, pictures.shape[1] // 2]
    captioned_grid_png(pictures, captions, out / "nearest_training.png",
                       f"Worst mistakes (first column) and their {k} nearest training images, in {space.what}",
                       cols=k + 1)
    findings["nearest_training"] = rows
    return ("Explain by example", f"The worst mistakes beside the training images nearest to them in {space.what}: "
            "what the model had seen that looks like them.\n\n![nearest training images](nearest_training.png)")


def _label_issues(out: Path, space: TrainSpace, ds, names, findings) -> tuple[str, str]:
    """Confident learning on leave-one-out k-NN probabilities of the training images (out-of-sample: no
    image is scored with its own label)."""
    from ..evaluation.label_issues import find_label_issues, out_of_sample_knn
    from ..fileio import write_csv

    labels = ds.labels[space.rows]
    if len(space.rows) < 20:
        return "Label issues", "Too few training images to look for label issues."
    probs = out_of_sample_knn(space.vectors, labels, ds.num_classes, metric=space.metric)
    found = find_label_issues(labels, probs)
    issues = found["issues"]
    write_csv(out / "label_issues.csv", ["rank", "id", "given_label", "suggested_label", "given_probability", "margin"],
              ([r + 1, ds.ids[space.rows[i]], names[labels[i]], names[found["suggested"][r]],
                f"{probs[i, labels[i]]:.4f}", f"{found['margin'][r]:.4f}"] for r, i in enumerate(issues)))
    shown = issues[:32]
    if len(shown):
        pictures = np.asarray(ds.images[space.rows[shown]])
        if pictures.ndim == 5:
            pictures = pictures[:, pictures.shape[1] // 2]
        captioned_grid_png(pictures, [f"labelled {names[labels[i]][:10]}\nlooks {names[s][:10]}"
                                      for i, s in zip(shown, found["suggested"][:32])],
                           out / "label_issues.png", "Training images whose label is most likely wrong")
    findings["label_issues"] = {"searched": int(len(space.rows)), "flagged": int(len(issues)), "space": space.what}
    text = (f"Confident learning on leave-one-out k-NN probabilities (k = 10, {space.what}) over "
            f"{len(space.rows):,} training images flags **{len(issues)}** whose label is likely wrong, ranked in "
            "`label_issues.csv` (measured precision and recall: benchmarks/README.md).")
    if len(shown):
        text += "\n\n![label issues](label_issues.png)"
    return "Label issues", text


def explain_predictions(run_dir, images: np.ndarray, labels: list[str], out_dir: Path) -> Path:
    """``classlab predict --explain``: for each image, its attribution map (Grad-CAM or occlusion) for the
    predicted class beside its nearest training images; one PNG per image in ``out_dir``."""
    import re

    from ..data.options import load_and_split, saved_options
    from ..trained.explainers import attribute

    result = RunResult.load(run_dir)
    ds, split = load_and_split(saved_options(result.run_dir))
    train_rows = split.indices("train")  # none for an evaluation: its model learnt from another run's images
    model = _model_of(result, ds, train_rows)
    proba = model.predict_proba(images)
    pred = proba.argmax(1)
    maps, used = attribute(model, images, pred, "auto", None)
    space = TrainSpace(result, ds, train_rows) if len(train_rows) else None
    idx = space.nearest(images, NEIGHBOURS) if space else np.zeros((len(images), 0), np.int64)
    k = idx.shape[1]
    names = model.class_names  # the model's classes name its predictions; ds's name its training images
    out_dir.mkdir(parents=True, exist_ok=True)
    for r, label in enumerate(labels):
        pictures = np.stack([images[r], *[np.asarray(ds.images[space.rows[j]]) for j in idx[r]]])
        captions = [f"{names[pred[r]][:12]} {proba[r, pred[r]]:.2f}"] + \
            [f"train: {ds.class_names[ds.labels[space.rows[j]]][:12]}" for j in idx[r]]
        heat = [None if maps is None else maps[r]] + [None] * k
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(label).stem)[:60] or "image"
        captioned_grid_png(pictures, captions, out_dir / f"{r:03d}-{safe}.png",
                           f"{Path(label).name}: {used.split(' (')[0]}"
                           + (f"; nearest training images ({space.what})" if space else ""),
                           cols=k + 1, heatmaps=heat)
    return out_dir
