"""``classlab visualize``: look inside a trained CNN: its first-layer filters, and the feature maps every
convolution layer produces for one image (the decks' "feature mapping in convolution layer").

Works for any registered model with convolutions (3D ones show the middle depth slice). Grids are
tiled by ``torchvision.utils.make_grid``, each filter or map scaled to its own range.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ClasslabError
from ..fileio import save_figure, write_json
from ..inference.preprocess import to_input
from ..safe_files import check_path
from .network import TrainedNetwork

CONVS = (nn.Conv2d, nn.Conv3d)


def _convs(model: nn.Module, run_dir: Path) -> list[tuple[str, nn.Module]]:
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, CONVS)]
    if not convs:
        raise ClasslabError(f"the model in {run_dir} has no convolution layers, so it has no filters or feature maps "
                            "to show; visualize a CNN run (e.g. --model cnn, workshop-cnn, lenet5, resnet18)")
    return convs


def _middle_slice(t: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, C, H, W) at the middle depth; 2D passes through."""
    return t[:, :, t.shape[2] // 2] if t.ndim == 5 else t


def _grid_png(tiles: torch.Tensor, path: Path, title: str, nrow: int) -> Path:
    """tiles: (N, C in {1, 3}, H, W) floats, each scaled to its own range, tiled and saved as a PNG."""
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    grid = make_grid(tiles.float().cpu(), nrow=nrow, padding=1, normalize=True, scale_each=True, pad_value=1.0)
    image = grid.permute(1, 2, 0).numpy()
    rows, cols = grid.shape[1], grid.shape[2]
    scale = max(1.0, 6.0 / max(rows, cols) * 100)
    fig, ax = plt.subplots(figsize=(min(16, cols * scale / 100 + 1), min(16, rows * scale / 100 + 1)))
    ax.imshow(image[..., 0] if tiles.shape[1] == 1 else image, cmap="gray" if tiles.shape[1] == 1 else None,
              interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    return save_figure(fig, path)


def filters(run_dir, out_dir=None) -> dict:
    run = TrainedNetwork.load(run_dir)
    name, conv = _convs(run.model, run.run_dir)[0]
    w = _middle_slice(conv.weight.detach().float())  # (out, in, kH, kW)
    # RGB filters show in colour; others show each filter's mean over its input channels.
    tiles = w if w.shape[1] == 3 else w.mean(1, keepdim=True)
    out = Path(out_dir) if out_dir else run.run_dir / "visualize"
    path = _grid_png(tiles, out / "filters.png", f"first convolution '{name}': {w.shape[0]} filters of "
                     f"{'x'.join(map(str, conv.weight.shape[1:]))}", nrow=int(np.ceil(np.sqrt(w.shape[0]))))
    write_json(out / "filters.json", {"layer": name, "weight_shape": list(conv.weight.shape), "png": path.name})
    return {"png": path, "layer": name, "shape": list(conv.weight.shape)}


def _load_one(run: TrainedNetwork, path: Path) -> np.ndarray:
    """An image file with the run's preprocessing, or a uint8 .npy array (a volume for 3D models)."""
    if path.suffix.lower() != ".npy":
        return run.load_images([path])[0]
    try:
        check_path(path)
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ClasslabError(f"cannot read {path} as a NumPy array ({e})") from None
    expected = (*run.preprocessing.image_size, run.preprocessing.channels)
    if array.ndim == len(expected) - 1:
        array = array[..., None]
    if array.dtype != np.uint8 or array.shape != expected:
        raise ClasslabError(f"{path} holds {array.dtype} {array.shape}; this run takes uint8 arrays of shape "
                            f"{expected} (or without the channel axis)")
    return array[None]


def feature_maps(run_dir, image, out_dir=None, max_maps: int = 64) -> dict:
    """One PNG grid per convolution layer: its output channels for ``image`` (up to ``max_maps`` each)."""
    run = TrainedNetwork.load(run_dir)
    convs = _convs(run.model, run.run_dir)
    images = _load_one(run, Path(image))
    outputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: outputs.__setitem__(n, o.detach()))
             for n, m in convs]
    try:
        with torch.no_grad():
            run.model.eval()(to_input(torch.from_numpy(images).to(run.device), run.preprocessing))
    finally:
        for h in hooks:
            h.remove()
    out = Path(out_dir) if out_dir else run.run_dir / "visualize" / f"feature_maps-{Path(image).stem}"
    index = []
    for i, (name, _) in enumerate(convs):
        if name not in outputs:
            continue
        fmap = _middle_slice(outputs[name])[0]  # (C, H, W)
        shown = fmap[:max_maps].unsqueeze(1)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        path = _grid_png(shown, out / f"{i:02d}-{safe}.png", f"{name}: {fmap.shape[0]} maps of "
                         f"{'x'.join(map(str, fmap.shape[1:]))}" + (f" (first {max_maps})" if fmap.shape[0] > max_maps else ""),
                         nrow=int(np.ceil(np.sqrt(len(shown)))))
        index.append({"layer": name, "shape": list(outputs[name].shape[1:]), "png": path.name})
    write_json(out / "feature_maps.json", {"image": str(image), "layers": index})
    return {"dir": out, "layers": index}
