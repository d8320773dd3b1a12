"""Is a from-scratch model sane for its training set? Parameters counted on PyTorch's meta device (no
memory, no compute) before anything trains.

A network with hundreds of thousands of parameters per training image memorises the images instead of
learning the classes: the 100-million-parameter CNN a 512 x 384 photo folder of 24 images used to get.
Above ``PARAMS_PER_IMAGE`` (and ``MIN_FLAGGED`` parameters in all, so small models on small data pass), an
automatically chosen input size is halved until the model fits (flatten-then-dense models shrink with
their input); otherwise the run is refused with what to do instead.
"""

from __future__ import annotations

from ..errors import ClasslabError
from .registry import ModelEntry, normalise_size

PARAMS_PER_IMAGE = 100_000
MIN_FLAGGED = 1_000_000
MIN_SIDE = 16  # never reduce an input below this


def parameters_at(entry: ModelEntry, num_classes: int, in_channels: int, size, options: dict) -> int | None:
    """The model's parameter count for (in_channels, *size) inputs, or None where it cannot be built."""
    import torch

    if entry.kind != "torch":
        model = entry.builder(num_classes=num_classes, in_channels=in_channels,
                              image_size=normalise_size(size, entry.volume), **options)
        return model.num_parameters()
    try:
        with torch.device("meta"):
            model = entry.builder(num_classes=num_classes, in_channels=in_channels,
                                  image_size=normalise_size(size, entry.volume), **options)
    except (RuntimeError, ValueError, TypeError, ClasslabError):
        return None
    return sum(p.numel() for p in model.parameters())


def too_large(parameters: int, train_images: int) -> bool:
    return parameters > MIN_FLAGGED and parameters > PARAMS_PER_IMAGE * max(1, train_images)


def fit_model_to_data(entry: ModelEntry, num_classes: int, in_channels: int, size: tuple, options: dict,
                      train_images: int, size_chosen: bool, allow: bool = False) -> tuple[tuple, str | None]:
    """(the input size to train at, a note saying what was chosen and why, or None). ``size_chosen``: the
    size was picked by classlab, not given with --image-size, so it may be reduced."""
    size = tuple(size)
    count = parameters_at(entry, num_classes, in_channels, size, options)
    if allow or count is None or not too_large(count, train_images):
        return size, None
    start = count
    smaller = size
    while size_chosen and not entry.volume and min(smaller) // 2 >= MIN_SIDE:
        trial = tuple(s // 2 for s in smaller)
        fewer = parameters_at(entry, num_classes, in_channels, trial, options)
        if fewer is None or fewer >= count:
            break
        smaller, count = trial, fewer
        if not too_large(count, train_images):
            note = (f"'{entry.name}' at {'x'.join(map(str, size))} would have {start:,} parameters for "
                    f"{train_images:,} training images; its input is reduced to {'x'.join(map(str, smaller))} "
                    f"({count:,} parameters, at most {PARAMS_PER_IMAGE:,} per image) so it learns the classes "
                    "instead of memorising the images (--image-size or --allow-large-model to choose)")
            return smaller, note
    per = start // max(1, train_images)
    raise ClasslabError(
        f"'{entry.name}' at {'x'.join(map(str, size))} has {start:,} parameters for {train_images:,} training "
        f"images ({per:,} per image, the limit is {PARAMS_PER_IMAGE:,}): it would memorise them. Use transfer "
        "learning (classlab transfer), a smaller model or --image-size, or pass --allow-large-model to train it anyway")
