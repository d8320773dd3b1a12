"""Charts as server-rendered SVG (no JavaScript charting library): training curves and top-k bars."""

from __future__ import annotations

from html import escape

COLOURS = {"train_loss": "#1f77b4", "val_loss": "#ff7f0e", "train_acc": "#1f77b4", "val_acc": "#ff7f0e"}


def _polyline(points: list[tuple[float, float]], colour: str, dashed: bool = False) -> str:
    text = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in points)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{text}"/>{dots}'


def curves_svg(history: list[dict], epochs: int | None = None, width: int = 460, height: int = 240) -> str:
    """Two panels (loss, accuracy) of train and validation per epoch. The x axis runs a little past the epochs
    done (at least 10, at most the planned ones): a live 400-epoch job's first epochs are not squeezed into
    its left edge."""
    if not history:
        return '<svg class="chart" width="0" height="0" role="img" aria-label="no epochs yet"></svg>'
    last = max(int(h.get("epoch", i + 1)) for i, h in enumerate(history))
    span = max(min(epochs or last, max(10, -(-last * 5 // 4))), last, 2)
    panels = []
    for p, (title, keys) in enumerate((("loss", ("train_loss", "val_loss")), ("accuracy", ("train_acc", "val_acc")))):
        values = [h[k] for h in history for k in keys if isinstance(h.get(k), (int, float))]
        if not values:
            continue
        low, high = (0.0, 1.0) if title == "accuracy" else (0.0, max(values) * 1.05 or 1.0)
        x0, y0, w, h = 36 + p * (width + 20), 16, width - 46, height - 40

        def at(epoch, v):
            return x0 + (epoch - 1) / (span - 1) * w, y0 + h - (v - low) / (high - low or 1) * h
        lines = [f'<text x="{x0}" y="11" class="title">{title}</text>',
                 f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" class="frame"/>',
                 f'<text x="{x0 - 4}" y="{y0 + 8}" text-anchor="end">{high:.2g}</text>',
                 f'<text x="{x0 - 4}" y="{y0 + h}" text-anchor="end">{low:.2g}</text>',
                 f'<text x="{x0 + w}" y="{y0 + h + 14}" text-anchor="end">epoch {span}</text>']
        for key in keys:
            pts = [at(int(r.get("epoch", i + 1)), r[key]) for i, r in enumerate(history)
                   if isinstance(r.get(key), (int, float))]
            if pts:
                lines.append(_polyline(pts, COLOURS[key], dashed=key.startswith("val")))
        panels.append("".join(lines))
    total = 2 * (width + 20)
    legend = (f'<text x="36" y="{height - 4}" fill="{COLOURS["train_loss"]}">— train</text>'
              f'<text x="110" y="{height - 4}" fill="{COLOURS["val_loss"]}">- - validation</text>')
    return (f'<svg class="chart" viewBox="0 0 {total} {height}" width="{total}" height="{height}" role="img" '
            f'aria-label="training curves">{"".join(panels)}{legend}</svg>')


def topk_svg(top: list[tuple[str, float]], width: int = 300) -> str:
    """Horizontal bars of the top-k classes and their probabilities."""
    row = 22
    height = row * len(top) + 4
    bars = []
    for i, (label, p) in enumerate(top):
        y = 2 + i * row
        bars.append(f'<text x="0" y="{y + 15}" class="label">{escape(str(label)[:18])}</text>'
                    f'<rect x="110" y="{y + 3}" width="{max(1.0, p * (width - 170)):.1f}" height="15" '
                    f'class="{"bar top" if i == 0 else "bar"}"/>'
                    f'<text x="{115 + p * (width - 170):.1f}" y="{y + 15}">{p:.1%}</text>')
    return (f'<svg class="topk" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="top predictions">{"".join(bars)}</svg>')


CURVE_KEYS = ("epoch", "train_loss", "val_loss", "train_acc", "val_acc", "lr")


def _curves(path) -> dict | None:
    """history.csv as columns of numbers (None where a value is missing), or None without one."""
    from .catalog import read_csv_rows

    rows = read_csv_rows(path)
    if not rows:
        return None

    def value(text):
        try:
            v = float(text)
        except (TypeError, ValueError):
            return None
        return v if v == v and abs(v) != float("inf") else None
    return {k: [value(r.get(k)) for r in rows] for k in CURVE_KEYS}


def chart_data(run_dir) -> dict:
    """What the run page's interactive charts draw (charts.js, with the vendored uPlot): the training curves
    (per stage for a transfer run), per-class precision / recall / F1, and the calibration bins. Reads only the
    files it draws from (history.csv, metrics.json, explain/explain.json)."""
    from ..safe_files import read_json

    metrics = read_json(run_dir / "metrics.json")
    metrics = metrics if isinstance(metrics, dict) else {}
    explain = read_json(run_dir / "explain" / "explain.json")
    explain = explain if isinstance(explain, dict) else {}
    curves = {}
    if (run_dir / "history.csv").is_file():
        curves["training"] = _curves(run_dir / "history.csv")
    for stage in ("features", "finetune"):
        if (run_dir / stage / "history.csv").is_file():
            curves[stage] = _curves(run_dir / stage / "history.csv")
    per_class = metrics.get("per_class") if isinstance(metrics.get("per_class"), list) else []
    bars = {"names": [str(c.get("class")) for c in per_class if isinstance(c, dict)]}
    for key in ("precision", "recall", "f1"):
        bars[key] = [c.get(key) if isinstance(c.get(key), (int, float)) else None for c in per_class if isinstance(c, dict)]
    calibration = (explain.get("calibration") or {}).get("reliability") if isinstance(explain, dict) else None
    bins = None
    if isinstance(calibration, dict) and isinstance(calibration.get("count"), list):
        keep = [i for i, n in enumerate(calibration["count"]) if isinstance(n, (int, float)) and n > 0]
        bins = {k: [calibration[k][i] for i in keep] for k in ("confidence", "accuracy", "count")
                if isinstance(calibration.get(k), list)}
    return {"run": run_dir.name, "curves": {k: v for k, v in curves.items() if v}, "per_class": bars,
            "calibration": bins}
