"""PNG figures: confusion matrices, bar charts, curves and image grids. Matplotlib's Agg backend,
so plotting works on a machine with no display."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .fileio import save_figure  # noqa: E402


def _label_font(n: int) -> float:
    return float(np.clip(11 - n / 12, 4, 10))


def confusion_matrix_png(cm: np.ndarray, class_names: list[str], path: Path, normalize: bool) -> Path:
    """Heatmap with class names. Counts or row-normalised (each row sums to 1: recall on the diagonal).
    Cells are annotated up to 20 classes; a 100-class matrix grows to stay readable instead."""
    k = len(class_names)
    data = cm.astype(float)
    if normalize:
        rows = data.sum(axis=1, keepdims=True)
        data = np.divide(data, rows, out=np.zeros_like(data), where=rows > 0)
    side = max(5.0, 0.28 * k + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(data, cmap="Blues", vmin=0, vmax=1 if normalize else max(1.0, data.max()))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    font = _label_font(k)
    ax.set_xticks(range(k), labels=class_names, rotation=90 if k > 10 else 45, ha="center" if k > 10 else "right",
                  fontsize=font)
    ax.set_yticks(range(k), labels=class_names, fontsize=font)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title("Confusion matrix" + (" (row-normalised: recall on the diagonal)" if normalize else " (counts)"))
    if k <= 20:
        threshold = data.max() / 2 if data.max() > 0 else 0.5
        for i in range(k):
            for j in range(k):
                text = f"{data[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=max(6, 11 - k / 2.5),
                        color="white" if data[i, j] > threshold else "black")
    return save_figure(fig, path)


def bar_chart_png(labels: list[str], series: dict[str, np.ndarray], path: Path, title: str, ylabel: str) -> Path:
    """Grouped bars, one group per label (e.g. class counts per split). Horizontal past 30 labels."""
    n = len(labels)
    horizontal = n > 30
    fig, ax = plt.subplots(figsize=(8, max(4, 0.18 * n)) if horizontal else (max(6, 0.5 * n + 2), 4.5))
    width = 0.8 / max(1, len(series))
    pos = np.arange(n)
    for j, (name, values) in enumerate(series.items()):
        offset = pos + (j - (len(series) - 1) / 2) * width
        (ax.barh if horizontal else ax.bar)(offset, values, width, label=name)
    if horizontal:
        ax.set_yticks(pos, labels=labels, fontsize=_label_font(n))
        ax.invert_yaxis()
        ax.set_xlabel(ylabel)
    else:
        ax.set_xticks(pos, labels=labels, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
        ax.set_ylabel(ylabel)
    if len(series) > 1:  # in a band of headroom above the bars, so it never hides one
        top = max(float(np.max(v)) for v in series.values()) or 1.0
        (ax.set_xlim if horizontal else ax.set_ylim)(0, top * 1.18)
        ax.legend(ncol=len(series), loc="upper right" if horizontal else "upper center", frameon=False)
    ax.set_title(title)
    return save_figure(fig, path)


def line_plot_png(x, series: dict[str, list[float]], path: Path, title: str, xlabel: str, ylabel: str,
                  mark_x=None) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in series.items():
        ax.plot(x, values, marker="o", label=name)
    if mark_x is not None:
        ax.axvline(mark_x, color="gray", linestyle="--", label=f"chosen: {mark_x}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def image_grid_png(rows: list[tuple[str, np.ndarray]], path: Path, title: str) -> Path:
    """One row per class: (label, uint8 images (n, H, W, C)), tiled into one mosaic (one imshow,
    so 100 samples draw as fast as one)."""
    n_cols = max(len(images) for _, images in rows)
    h, w, c = rows[0][1].shape[1:]
    pad = max(1, min(h, w) // 16)
    canvas = np.full((len(rows) * (h + pad) + pad, n_cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for r, (_, images) in enumerate(rows):
        for j, img in enumerate(images):
            y, x = pad + r * (h + pad), pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = img
    fig, ax = plt.subplots(figsize=(0.9 * n_cols + 1.5, 0.9 * len(rows) + 0.8))
    ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray" if c == 1 else None, vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(len(rows))], labels=[label for label, _ in rows],
                  fontsize=9)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title)
    return save_figure(fig, path)


def captioned_grid_png(images: np.ndarray, captions: list[str], path: Path, title: str, cols: int = 8,
                       heatmaps=None) -> Path:
    """uint8 images (n, H, W, C) with a caption each, ``cols`` per row; ``heatmaps`` ((n, H, W) in [0, 1], or a
    list with None where an image has none) are blended over them (jet at 45%: Grad-CAM and occlusion maps on
    the original images). One mosaic and one imshow, so a grid costs the same for 4 images or 64."""
    n = len(images)
    h, w = images.shape[1:3]
    scale = max(1, int(np.ceil(48 / max(h, w))))  # small images (8x8 digits) are enlarged, pixels kept sharp
    tile = np.repeat(np.repeat(_rgb(images), scale, 1), scale, 2).astype(np.float32)
    if heatmaps is not None:
        jet = plt.get_cmap("jet")
        for k in range(n):
            if heatmaps[k] is not None:
                heat = np.repeat(np.repeat(np.asarray(heatmaps[k]), scale, 0), scale, 1)
                tile[k] = 0.55 * tile[k] + 0.45 * 255 * jet(np.clip(heat, 0, 1))[..., :3]
    th, tw = tile.shape[1:3]
    pad, caption = max(2, th // 16), max(12, th // 3)
    rows = max(1, -(-n // cols))
    canvas = np.full((rows * (th + pad + caption) + pad, cols * (tw + pad) + pad, 3), 255, dtype=np.uint8)
    spots = []
    for k in range(n):
        y = pad + caption + (k // cols) * (th + pad + caption)
        x = pad + (k % cols) * (tw + pad)
        canvas[y : y + th, x : x + tw] = tile[k].clip(0, 255).astype(np.uint8)
        spots.append((x + tw / 2, y - 2))
    inches = canvas.shape[1] / 60, canvas.shape[0] / 60 + 0.5
    fig, ax = plt.subplots(figsize=(min(max(inches[0], 4), 24), min(max(inches[1], 2), 40)))
    ax.imshow(canvas, interpolation="nearest")
    for (x, y), text in zip(spots, captions):
        ax.text(x, y, text, ha="center", va="bottom", fontsize=6.5, linespacing=0.95)
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def _rgb(images: np.ndarray) -> np.ndarray:
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
