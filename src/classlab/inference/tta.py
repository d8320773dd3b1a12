"""Test-time augmentation as named functions (as airbench writes infer_mirror / infer_mirror_translate).

Each mode maps a model and a normalised (B, C, H, W) batch to the logits of its views and their weights;
``forward_tta`` averages the views' class probabilities and returns their log, so argmax, softmax and
cross-entropy work on it as on logits. Volumes and feature rows are never augmented.
"""

from __future__ import annotations

# torch is imported inside the functions: the CLI reads TTA_MODES (for --help) without paying for torch.


def mirror(x):
    """The mirror image (left-right flip) of every image in the batch."""
    return x.flip(-1)


def translate(x, dy: int, dx: int):
    """Shift by (dy, dx) pixels, at most one, with reflect padding at the edges."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    return padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def views_none(model, x):
    return [model(x)], [1.0]


def views_flip(model, x):
    """The image and its mirror image, equally weighted."""
    return [model(x), model(mirror(x))], [0.5, 0.5]


def views_flip_translate(model, x):
    """Half the weight on the mirrored pair, a quarter each on the pair shifted one pixel up-left and down-right."""
    logits = []
    for view in (x, translate(x, -1, -1), translate(x, 1, 1)):
        logits += [model(view), model(mirror(view))]
    return logits, [0.25, 0.25] + [0.125] * 4


TTA_VIEWS = {"none": views_none, "flip": views_flip, "flip-translate": views_flip_translate}
TTA_MODES = tuple(TTA_VIEWS)


def tta_mode(tta) -> str:
    """A TTA setting as one of TTA_MODES: older runs saved it as on/off (on meant flip)."""
    if isinstance(tta, bool) or tta is None:
        return "flip" if tta else "none"
    return tta


def averaged_log_probs(logits: list, weights: list[float] | None = None):
    """log of the views' class probabilities averaged (equal weights unless given): TTA's output."""
    import torch

    log_p = torch.stack([z.float().log_softmax(1) for z in logits])
    weights = weights or [1 / len(logits)] * len(logits)
    return torch.logsumexp(log_p + torch.tensor(weights, device=log_p.device).log().view(-1, 1, 1), 0)


def forward_tta(model, x, tta: str | bool = "none"):
    """Logits without TTA; with it, the log of the class probabilities averaged over the mode's views."""
    tta = tta_mode(tta)
    if tta == "none" or x.ndim != 4:
        return model(x).float()
    return averaged_log_probs(*TTA_VIEWS[tta](model, x))
