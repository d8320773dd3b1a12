"""``classlab check``: the dataset doctor. Reads everything, changes nothing, reports in text and JSON."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ..data.folders import inspect_chunk, map_files, scan_tree
from ..data.images import IMAGE_EXTENSIONS
from ..data.registry import NAMED, load_dataset
from ..data.trees import extension, open_tree
from ..errors import ClasslabError
from ..fileio import atomic_write_text, write_json
from ..runs import RunResult, RunWriter

FORMAT_ALIASES = {"MPO": "JPEG"}  # cameras' multi-picture JPEGs are JPEGs


def _duplicates(items: list[tuple[str, str | None, str, str]]) -> dict:
    """items: (id, split, class, hash). Groups of identical images, sorted into kinds."""
    groups = defaultdict(list)
    for item, split, cls, h in items:
        groups[h].append((item, split, cls))
    within, across, conflicting = [], [], []
    for members in groups.values():
        if len(members) < 2:
            continue
        entry = [{"id": i, "split": s, "class": c} for i, s, c in members]
        if len({s for _, s, _ in members}) > 1:
            across.append(entry)
        else:
            within.append(entry)
        if len({c for _, _, c in members}) > 1:
            conflicting.append(entry)
    return {"within_split": within, "across_splits": across, "conflicting_labels": conflicting}


def _preload_torch() -> None:
    """Import torch in a thread while the worker processes decode (all of them forked already, so no fork can
    meet the import halfway): the near-duplicate search needs it, and its 1.7 s then cost nothing."""
    import importlib
    import threading

    threading.Thread(target=importlib.import_module, args=("torch",), name="preload-torch", daemon=True).start()


def _check_tree(path: Path, min_size: int) -> tuple[dict, object]:
    """(the report, the open tree: the report's thumbnails read their files from it)."""
    scan = scan_tree(open_tree(path))
    # One pass: every file read once, its header probed, its pixels decoded (truncation only shows then),
    # digested and thumbnailed in the worker processes.
    inspected = map_files(scan.tree, inspect_chunk, [e.rel for e in scan.entries], "Checking images",
                          while_waiting=_preload_torch)
    problems = defaultdict(list)
    for rel in scan.hidden:
        problems["hidden"].append(rel)
    for rel in scan.non_images:
        problems["non_image_files"].append(rel)
    for rel in scan.stray:
        problems["outside_class_folders"].append(rel)
    for name in scan.empty_classes:
        problems["empty_class_folders"].append(name)
    hashed, modes, sizes, kept = [], Counter(), Counter(), []
    for k, (e, (info, error, digest, _)) in enumerate(zip(scan.entries, inspected)):
        reason = info.error or error
        if reason:
            kind = "zero_byte" if "0 bytes" in reason else "not_an_image" if "not an image" in reason else "corrupt"
            problems[kind].append({"file": e.rel, "reason": reason})
            continue
        kept.append(k)
        hashed.append((e.rel, e.split, e.class_name, digest))
        modes[info.mode] += 1
        sizes[f"{info.size[0]}x{info.size[1]}"] += 1
        expected = IMAGE_EXTENSIONS[extension(e.rel)]
        actual = FORMAT_ALIASES.get(info.format, info.format)
        if actual != expected:
            problems["wrong_extension"].append({"file": e.rel, "format": info.format})
        if min(info.size) < min_size:
            problems["tiny_images"].append({"file": e.rel, "size": f"{info.size[0]}x{info.size[1]}"})
    counts = Counter((cls for _, _, cls, _ in hashed))
    gray = np.stack([inspected[k][3] for k in kept]) if kept else np.zeros((0, 32, 32), np.float32)
    shapes = [inspected[k][0].size for k in kept]
    aspect = np.array([w / max(h, 1) for h, w in shapes])
    content = _by_content(gray, min((min(s) for s in shapes), default=0),
                          [(scan.entries[k].rel, scan.entries[k].split, scan.entries[k].class_name) for k in kept],
                          aspect)
    return {"layout": scan.layout, "files_scanned": len(scan.entries), "readable_images": len(hashed),
            "class_counts": {c: counts.get(c, 0) for c in scan.class_names},
            "colour_modes": dict(modes), "sizes": dict(sizes.most_common(20)),
            "mixed_colour_modes": len({m for m in modes if m}) > 1,
            "problems": dict(problems), "duplicates": _duplicates(hashed), **content}, scan.tree


def _by_content(gray: np.ndarray, min_side: int, items: list[tuple[str, str | None, str]], aspect=None) -> dict:
    """Near-duplicates within and across splits (perceptual hash + thumbnail similarity) and image-quality
    findings, each naming its files, from the images' 32x32 grayscale thumbnails (``min_side``: the
    smallest image's shorter side)."""
    from ..data import image_quality
    from ..data import near_duplicates as nd

    empty = {"within_split": [], "across_splits": []}
    if not len(gray):
        return {"near_duplicates": empty, "quality": {}}
    found = image_quality.quality_findings(image_quality.quality(gray32=gray), aspect)
    quality = {kind: [items[i][0] for i in idx] for kind, idx in found.items() if len(idx)}
    if min_side < nd.MIN_SIDE:
        return {"near_duplicates": {**empty, "skipped": f"images under {nd.MIN_SIDE} px hold too little "
                                    "detail for a perceptual hash"}, "quality": quality}
    try:
        pairs = nd.find(gray32=gray)
    except nd.TooAlike as e:
        return {"near_duplicates": {**empty, "skipped": f"{e}: the perceptual hash cannot tell this data's "
                                    "pictures apart (low-detail images such as handwritten digits)"},
                "quality": quality}
    within, across = [], []
    for i, j, bits, similarity in pairs:
        pair = {"files": [items[i][0], items[j][0]], "splits": [items[i][1], items[j][1]],
                "classes": [items[i][2], items[j][2]], "hash_distance": bits, "similarity": similarity}
        (across if items[i][1] != items[j][1] else within).append(pair)
    # groups (a burst of five photos is one group of five, not ten pairs), each member confirmed against the
    # group's first image, largest first
    groups = [{"files": [items[k][0] for k in g], "splits": [items[k][1] for k in g],
               "classes": [items[k][2] for k in g], "crosses_splits": len({items[k][1] for k in g}) > 1,
               "mixed_labels": len({items[k][2] for k in g}) > 1} for g in nd.groups(pairs, len(items))]
    return {"near_duplicates": {"within_split": within, "across_splits": across, "groups": groups},
            "quality": quality}


def _check_arrays(spec: str, data_dir, min_size: int):
    """(the report, the loaded dataset: the report's thumbnails come from it)."""
    ds = load_dataset(spec, data_dir=data_dir)
    split = ds.official_split if ds.official_split is not None else np.full(len(ds), None, dtype=object)
    hashes = ds.content_hashes()
    items = [(ds.ids[i], split[i], ds.class_names[ds.labels[i]], hashes[i]) for i in range(len(ds))]
    problems = {}
    h, w = ds.item_shape[-3:-1]
    if min(h, w) < min_size:
        problems["tiny_images"] = [{"file": "(all)", "size": f"{h}x{w}"}]
    content = {}
    if not ds.is_volume:
        from ..data import near_duplicates as nd

        gray = nd.dataset_thumbnails(ds.images)
        content = _by_content(gray, min(h, w), [(ds.ids[i], split[i], ds.class_names[ds.labels[i]])
                                                for i in range(len(ds))])
    return {"layout": "arrays", "files_scanned": len(ds), "readable_images": len(ds),
            "class_counts": dict(zip(ds.class_names, ds.class_counts().tolist())),
            "colour_modes": {"L" if ds.channels == 1 else "RGB": len(ds)}, "sizes": {f"{h}x{w}": len(ds)},
            "mixed_colour_modes": False, "problems": problems, "duplicates": _duplicates(items), **content}, ds


ERRORS = ("corrupt", "zero_byte", "not_an_image", "empty_class_folders")
WARNINGS = ("wrong_extension", "non_image_files", "outside_class_folders", "hidden", "tiny_images")


def check(spec: str, data_dir=None, min_size: int = 16, embeddings: str | None = None,
          weights: str | None = None) -> dict:
    """Diagnose a dataset. Returns a JSON-ready dict; nothing on disk is modified. ``embeddings`` (a backbone
    name, e.g. mobilenet_v2) adds the embedding pass (checks/embeddings.py)."""
    return _diagnose(spec, data_dir, min_size, embeddings, weights)[0]


def _diagnose(spec: str, data_dir, min_size: int, embeddings: str | None, weights: str | None):
    """(the report, where its images are: the open image tree, or the loaded dataset)."""
    path = Path(spec)
    is_tree = (path.is_dir() or path.suffix.lower() == ".zip") and path.exists()
    if is_tree:
        from ..data import arrays, huggingface

        is_tree = not arrays.is_idx_folder(path) and not arrays.detect_cifar(path) and not huggingface.detect(path)
    if not path.exists() and spec.lower() not in NAMED:
        raise ClasslabError(f"'{spec}' is neither a known dataset ({', '.join(NAMED)}) nor an existing path")
    report, source = _check_tree(path, min_size) if is_tree else _check_arrays(spec, data_dir, min_size)
    counts = np.array(list(report["class_counts"].values()))
    nonzero = counts[counts > 0]
    report["data"] = str(spec)
    report["num_classes"] = int((counts > 0).sum())
    report["imbalance_ratio"] = float(nonzero.max() / nonzero.min()) if len(nonzero) else None
    p, d = report["problems"], report["duplicates"]
    report["errors"] = sum(len(p.get(k, [])) for k in ERRORS) + (report["num_classes"] < 2)
    near = report.get("near_duplicates", {"across_splits": []})
    if embeddings:
        report["embeddings"] = _embedding_findings(spec, data_dir, embeddings, weights)
    report["warnings"] = (sum(len(p.get(k, [])) for k in WARNINGS) + len(d["across_splits"])
                          + len(d["conflicting_labels"]) + int(report["mixed_colour_modes"])
                          + len(near["across_splits"]) + sum(len(v) for v in report.get("quality", {}).values()))
    return report, source


def _embedding_findings(spec: str, data_dir, backbone: str, weights: str | None) -> dict:
    from ..checks.embeddings import embedding_pass

    ds = load_dataset(spec, data_dir=data_dir)
    found = embedding_pass(ds, backbone, weights)
    split = ds.official_split if ds.official_split is not None else np.full(len(ds), None, dtype=object)

    def item(i):
        return {"file": ds.ids[i], "split": split[i], "class": ds.class_names[ds.labels[i]]}
    pairs = [{"files": [ds.ids[i], ds.ids[j]], "splits": [split[i], split[j]],
              "classes": [ds.class_names[ds.labels[i]], ds.class_names[ds.labels[j]]], "similarity": round(sim, 4)}
             for i, j, sim in found["pairs"]]
    return {"backbone": found["backbone"], "threshold": found["threshold"], "calibration": found["calibration"],
            "features_from_cache": found["features_from_cache"], "feature_seconds": found["feature_seconds"],
            "near_duplicates": {"across_splits": [p for p in pairs if p["splits"][0] != p["splits"][1]],
                                "within_split": [p for p in pairs if p["splits"][0] == p["splits"][1]]},
            "outliers": [item(i) for i in found["outliers"]],
            "neighbours_disagree": [{**item(i), "neighbours_say": ds.class_names[s]}
                                    for i, s in found["neighbours_disagree"]]}


def _entry_text(e) -> str:
    if isinstance(e, str):
        return e
    if isinstance(e, dict):
        return ", ".join(f"{v}" for v in e.values())
    return "; ".join(f"{m['id']} [{m['split'] or '-'}/{m['class']}]" for m in e)


def _pair(e: dict) -> dict:
    return {"pair": " ~ ".join(f"{f} [{s or '-'}/{c}]" for f, s, c in zip(e["files"], e["splits"], e["classes"])),
            "similarity": e["similarity"]}


def findings(r: dict) -> list[dict]:
    """Every finding of a check, in the order check.txt lists them: {"level": "error" / "warning" / "info",
    "title", "entries" (texts; empty for a one-line finding)}. check.txt and the workbench's doctor page are
    both made from this list, so the page shows every finding the text does."""
    out = []

    def add(level: str, title: str, entries=None) -> None:
        """A one-line finding (no ``entries``), or a list of them, left out when the list is empty."""
        if entries is None:
            out.append({"level": level, "title": title, "entries": []})
        elif entries:
            out.append({"level": level, "title": title, "entries": [_entry_text(e) for e in entries]})
    if r["num_classes"] < 2:
        add("error", "fewer than two classes with images; classification needs at least two")
    p, d = r["problems"], r["duplicates"]
    add("error", "corrupt or truncated images", p.get("corrupt", []))
    add("error", "zero-byte files", p.get("zero_byte", []))
    add("error", "files with an image extension that are not images", p.get("not_an_image", []))
    add("error", "empty class folders", p.get("empty_class_folders", []))
    add("warning", "wrong file extension for the real format", p.get("wrong_extension", []))
    add("warning", "non-image files (ignored)", p.get("non_image_files", []))
    add("warning", "files outside class folders (ignored)", p.get("outside_class_folders", []))
    add("warning", "hidden files and folders (ignored)", p.get("hidden", []))
    add("warning", "tiny images", p.get("tiny_images", []))
    if r["mixed_colour_modes"]:
        add("warning", f"mixed colour modes {r['colour_modes']}; classlab converts all to the majority (or --channels)")
    add("warning", "identical images across splits (leakage)", d["across_splits"])
    add("warning", "identical images with different labels", d["conflicting_labels"])
    add("info", "identical images within a split", d["within_split"])
    near = r.get("near_duplicates", {"within_split": [], "across_splits": []})
    add("warning", "near-duplicates across splits (leakage by content; --dedupe test drops them)",
        [_pair(e) for e in near["across_splits"]])
    add("info", "near-duplicates within a split", [_pair(e) for e in near["within_split"]])
    if near.get("groups"):
        g = near["groups"]
        add("info", f"near-duplicate groups: {len(g)} (largest: {len(g[0]['files'])} images; "
            f"{sum(x['crosses_splits'] for x in g)} cross splits, {sum(x['mixed_labels'] for x in g)} carry more "
            "than one label)")
    if near.get("skipped"):
        add("info", f"near-duplicate search skipped: {near['skipped']}")
    for kind, files in r.get("quality", {}).items():
        add("warning", f"{kind.replace('_', ' ')} images", files)
    if "embeddings" in r:
        e = r["embeddings"]
        add("info", f"embedding pass ({e['backbone']}): near-duplicates at cosine >= {e['threshold']:.3f} (keeps "
            f"{e['calibration']['copies_kept']:.0%} of synthetic shifted, cropped and re-encoded copies); features "
            f"{'read from the cache' if e.get('features_from_cache') else 'computed'} in "
            f"{e.get('feature_seconds', 0):.1f} s")
        add("warning", "near-duplicates across splits (embeddings)", [_pair(x) for x in e["near_duplicates"]["across_splits"]])
        add("info", "near-duplicates within a split (embeddings)", [_pair(x) for x in e["near_duplicates"]["within_split"]])
        add("warning", "outliers (far from every other image)", e["outliers"])
        add("warning", "nearest neighbours carry another label (review these labels)", e["neighbours_disagree"])
    return out


def report_text(r: dict, limit: int = 15) -> str:
    lines = [f"Dataset doctor: {r['data']} ({r['layout']} layout)",
             f"{r['readable_images']} readable images of {r['files_scanned']} scanned, {r['num_classes']} classes",
             f"errors: {r['errors']}, warnings: {r['warnings']}", ""]
    for f in findings(r):
        entries = f["entries"]
        head = {"error": "ERROR " if entries else "ERROR: ", "warning": "warning: ", "info": ""}[f["level"]] + f["title"]
        if not entries:
            lines.append(head)
            continue
        lines.append(f"{head}: {len(entries)}")
        lines += [f"  - {e}" for e in entries[:limit]]
        if len(entries) > limit:
            lines.append(f"  ... and {len(entries) - limit} more (see check.json)")
    lines += ["", f"class counts (imbalance ratio {r['imbalance_ratio'] or 0:.2f}):"]
    lines += [f"  {name}: {n}" for name, n in r["class_counts"].items()]
    lines.append("sizes (HxW): " + ", ".join(f"{k} ({v})" for k, v in list(r["sizes"].items())[:8]))
    lines.append("colour modes: " + ", ".join(f"{k} ({v})" for k, v in r["colour_modes"].items()))
    lines += ["", "Nothing was modified. Other commands skip the unreadable files with a warning."]
    return "\n".join(lines) + "\n"


def run_check(spec: str, data_dir=None, min_size: int = 16, runs_dir=None, embeddings: str | None = None,
              weights: str | None = None) -> RunResult:
    """Check, then write check.json, check.txt and report.md; ``details``: "findings" (the JSON) and "text"."""
    report, source = _diagnose(spec, data_dir, min_size, embeddings, weights)
    run = RunWriter("check", spec, runs_dir)
    run.write_config({"data": spec, "data_dir": data_dir, "min_size": min_size}, None)
    text = report_text(report)
    write_json(run.file("check.json"), report)
    atomic_write_text(run.file("check.txt"), text)
    sections = [("Findings", f"```\n{text}```\nAll findings: `check.json`.")]
    sections += _thumbnails(run, report, source)
    path = run.write_report(f"Dataset doctor: {spec}", sections)
    return RunResult(run.run_dir, "check", path, details={"findings": report, "text": text})


THUMB = 64


def _pictures(source, files: list[str]) -> dict[str, np.ndarray]:
    """The named images: from an image tree, read one by one as RGB thumbnails of THUMB x THUMB (the tree was
    decoded once already; decoding it all again for a few dozen thumbnails doubled the doctor's time), or
    taken from a loaded dataset's arrays. Unreadable ones are left out."""
    from ..data.dataset import ImageDataset
    from ..data.images import decode

    if isinstance(source, ImageDataset):
        index = {item: i for i, item in enumerate(source.ids)}
        return {f: np.asarray(source.images[index[f]]) for f in files if f in index}
    out = {}
    for f in files:
        try:
            out[f] = decode(source.read(f), 3, (THUMB, THUMB))
        except (ValueError, OSError, KeyError):
            continue
    return out


def _thumbnails(run: RunWriter, report: dict, source) -> list[tuple[str, str]]:
    """Near-duplicate pairs side by side and examples of each image-quality finding, as PNGs in the report
    (images as classlab decodes them); nothing when the data cannot be decoded as a dataset."""
    from ..plots import captioned_grid_png

    near = report.get("near_duplicates", {})
    pairs = (near.get("across_splits", []) + near.get("within_split", []))[:24]
    quality = {kind: files[:16] for kind, files in report.get("quality", {}).items()}
    emb = report.get("embeddings") or {}
    emb_pairs = ((emb.get("near_duplicates") or {}).get("across_splits", []) +
                 (emb.get("near_duplicates") or {}).get("within_split", []))[:24]
    singles = {"outliers": [(o["file"], f"{o['class'][:12]}\n{o['file'].rsplit('/', 1)[-1][:16]}")
                            for o in emb.get("outliers", [])[:16]],
               "neighbours_disagree": [(o["file"], f"labelled {o['class'][:10]}\nneighbours: {o['neighbours_say'][:10]}")
                                       for o in emb.get("neighbours_disagree", [])[:16]]}
    if not pairs and not quality and not emb_pairs and not any(singles.values()):
        return []
    wanted = sorted({f for p in pairs + emb_pairs for f in p["files"]} | {f for files in quality.values() for f in files}
                    | {f for entries in singles.values() for f, _ in entries})
    pictures = _pictures(source, wanted)
    sections = []
    for found, name, title in ((pairs, "near_duplicates.png", "Near-duplicates"),
                               (emb_pairs, "near_duplicates_embeddings.png", "Near-duplicates (embeddings)")):
        shown = [p for p in found if all(f in pictures for f in p["files"])]
        if shown:
            images = np.stack([pictures[f] for p in shown for f in p["files"]])
            captions = [f"{s or '-'}/{c}\n{f.rsplit('/', 1)[-1][:16]}" + (f"  ~{p['similarity']:.2f}" if k else "")
                        for p in shown for k, (f, s, c) in enumerate(zip(p["files"], p["splits"], p["classes"]))]
            captioned_grid_png(images, captions, run.file(name), f"{title}: pairs side by side (cross-split first)")
            sections.append((title, f"![{title}]({name})"))
    for kind, entries in singles.items():
        kept = [(f, caption) for f, caption in entries if f in pictures]
        if kept:
            title = {"outliers": "Outliers (embeddings)", "neighbours_disagree": "Neighbours carry another label"}[kind]
            captioned_grid_png(np.stack([pictures[f] for f, _ in kept]), [c for _, c in kept], run.file(f"{kind}.png"),
                               title)
            sections.append((title, f"![{title}]({kind}.png)"))
    for kind, files in quality.items():
        kept = [f for f in files if f in pictures]
        if kept:
            name = f"quality_{kind}.png"
            captioned_grid_png(np.stack([pictures[f] for f in kept]),
                               [f.rsplit("/", 1)[-1][:18] for f in kept], run.file(name), kind.replace("_", " "))
            sections.append((f"Image quality: {kind.replace('_', ' ')}", f"![{kind}]({name})"))
    return sections
