"""Frozen-backbone features, computed once per image and cached on disk.

The key covers everything a feature vector depends on: the images' exact pixels and labels (hashed),
the backbone (name, or the source run's model), the exact weights (a hash of the file), the
preprocessing contract and the precision. A second head, or k-NN on the same embeddings, then costs
a file read instead of a pass through the backbone. Entries are .npy files written atomically and read
with allow_pickle=False; ``CLASSLAB_CACHE=off`` disables the cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
import weakref
from contextlib import contextmanager

import numpy as np
import torch

from ..data.cache import cache_dir, store, touch
from ..data.dataset import iter_blocks
from ..inference.predict import array_batches, predict_batches
from ..inference.preprocess import Preprocessing
from ..inference.tta import mirror as mirror_image
from ..training.precision import MEASURE_FROM_S, TIMED_STEPS, bf16_supported

FORMAT = 3  # 2: features of the BatchNorm-folded backbone (float rounding differs from 1's); 3: ImagesDigest keys


class ImagesDigest:
    """The images' and labels' part of a cache key, hashed on first use and then reused by the keys of the
    same images (plain and mirrored views, bf16 and fp32): hashing reads every pixel, a full decode for a
    folder streamed from disk. The caller keeps one per set of images; it holds no pixels."""

    def __init__(self):
        self._hex = None

    def of(self, images, labels: np.ndarray) -> str:
        if self._hex is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(np.ascontiguousarray(labels).tobytes())
            # small blocks, hashed through the buffer protocol: 4,096 photos at 224 px and a bytes copy of them
            # were a 1.2 GB spike (the digest is the same: the same bytes in the same order)
            for _, block in iter_blocks(images, block=256):
                h.update(np.ascontiguousarray(block))
            self._hex = h.hexdigest()
        return self._hex


def feature_key(images_hex: str, spec: dict) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([FORMAT, spec], sort_keys=True, default=str).encode())
    h.update(images_hex.encode())
    return h.hexdigest()


def fold_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """An inference copy of ``model`` (in eval mode) with every BatchNorm folded into the convolution before
    it, by torch.fx: the same function, one pass over the activations fewer per layer. The model itself is
    untouched (fine-tuning needs its BatchNorms). A model fx cannot trace is returned as it is. The copy is
    kept while the model's tensors are unchanged (tracing MobileNetV2 takes 0.2-0.4 s, and a transfer run
    computes features of each split and view)."""
    from torch.fx.experimental.optimization import fuse

    model.eval()
    stamp = _tensors_stamp(model)
    kept = _FOLDED.get(model)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    try:
        folded = fuse(model, inplace=False)
    except Exception:  # noqa: BLE001 -- tracing fails in many ways (control flow, custom ops); folding is optional
        return model
    _FOLDED[model] = (stamp, folded)
    return folded


# model -> (its tensors' stamp, its folded copy); entries go with their model
_FOLDED: "weakref.WeakKeyDictionary[torch.nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _tensors_stamp(model: torch.nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or changed in place (an optimizer step, loading a
    state dict, moving devices): each tensor's storage address and version counter."""
    return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


# Pixels of one input batch (fp32; bf16 activations take half the bytes, so twice as many). Measured on a
# 2-core EPYC with MobileNetV2 and ResNet-18, BatchNorm folded, channels_last: small batches win at large
# sizes (MobileNetV2 at 160 px: 368 img/s at batch 8, 264 at 32; at 96 px batch 32 beats 8 by a third),
# as long as a batch's early activations stay in the cache.
FEATURE_PIXELS = 300_000
FEATURE_BATCH_GPU = 128
BF16_FEATURE_ERROR = 0.01  # mean |bf16 - fp32| / mean |fp32| above which bf16 features are not used


def feature_batch_size(pre: Preprocessing, device: torch.device, bf16: bool = False) -> int:
    if device.type != "cpu":
        return FEATURE_BATCH_GPU
    pixels = math.prod(pre.model_size)
    return int(min(64, max(8, FEATURE_PIXELS * (2 if bf16 else 1) // pixels)))


@contextmanager
def inference_copy(backbone: torch.nn.Module, pre: Preprocessing, device: torch.device):
    """(network, channels_last): ``backbone`` in eval mode on ``device``, BatchNorms folded, in the memory
    format features are computed in; the backbone's own layout is restored afterwards."""
    original = backbone.eval().to(device)
    net = fold_batch_norms(original)
    channels_last = len(pre.model_size) == 2
    if channels_last:
        net.to(memory_format=torch.channels_last)
    try:
        yield net, channels_last
    finally:
        original.to(memory_format=torch.contiguous_format)


def _features(net, channels_last: bool, images, pre: Preprocessing, device, batch_size: int, bf16: bool,
              progress: bool = False, desc: str = "features", mirror: bool = False) -> torch.Tensor:
    return predict_batches(net, array_batches(images, batch_size, device), pre, bf16=bf16,
                           channels_last=channels_last, view=mirror_image if mirror else None, out_device="cpu",
                           progress=progress, total=len(images), desc=desc)


@torch.no_grad()
def compute_features(backbone: torch.nn.Module, images, pre: Preprocessing, device: torch.device,
                     batch_size: int | None = None, bf16: bool = False, progress: bool = True,
                     desc: str = "features", mirror: bool = False) -> torch.Tensor:
    """(N, D) float32 features on the CPU: one forward pass per image, in eval mode; ``mirror``: of each
    image's mirror image (for the head's flip augmentation and flip test-time averaging). ``batch_size``:
    by default chosen from the image size (``feature_batch_size``)."""
    with inference_copy(backbone, pre, device) as (net, channels_last):
        return _features(net, channels_last, images, pre, device, batch_size or feature_batch_size(pre, device, bf16),
                         bf16, progress, desc, mirror)


@torch.no_grad()
def feature_precision(backbone: torch.nn.Module, images, pre: Preprocessing, device: torch.device,
                      precision: str = "auto") -> tuple[bool, str]:
    """(bf16?, a one-line account) for computing training images' features, as ``--precision`` chooses for
    training steps (training/precision.py): ``auto`` on a device with native bf16 times one batch both ways and
    takes bf16 where it is faster and its features stay within ``BF16_FEATURE_ERROR`` of fp32's (the head
    learns on them and meets fp32 features at predict time); else fp32, also when a batch is too quick to
    matter. Measured on a 2-core EPYC, features of CIFAR-10 at 224 px: ResNet-18 56 img/s fp32, 110 bf16,
    0.3% apart; ImageNet MobileNetV2 129 and 220 img/s, but 10% apart (its depthwise layers lose the
    precision), so it stays fp32."""
    if precision != "auto":
        return precision == "bf16", f"{precision} (--precision {precision})"
    if not bf16_supported(device):
        return False, "fp32 (no native bf16 on this device)"
    # measured on every device: how far bf16 features drift from fp32 depends on the model, not the device
    per_image, outputs = {}, {}
    with inference_copy(backbone, pre, device) as (net, channels_last):
        for bf16 in (False, True):
            sample = images[: feature_batch_size(pre, device, bf16)]
            outputs[bf16] = _features(net, channels_last, sample, pre, device, len(sample), bf16)  # kernels created
            seconds = min(_timed(lambda: _features(net, channels_last, sample, pre, device, len(sample), bf16))
                          for _ in range(TIMED_STEPS))
            if not bf16 and seconds < MEASURE_FROM_S:
                return False, f"fp32 (a batch takes {seconds * 1e3:.0f} ms: not worth measuring)"
            per_image[bf16] = seconds / len(sample)
    rows = min(len(outputs[False]), len(outputs[True]))
    exact, rounded = outputs[False][:rows], outputs[True][:rows]
    error = float((rounded - exact).abs().mean() / exact.abs().mean().clamp_min(1e-30))
    timing = f"fp32 {per_image[False] * 1e3:.1f} ms, bf16 {per_image[True] * 1e3:.1f} ms an image"
    if not error <= BF16_FEATURE_ERROR:  # NaN or inf included
        return False, f"fp32 (bf16 features differ from fp32's by {error:.1%} on average; {timing})"
    choice = per_image[True] < per_image[False]
    return choice, f"{'bf16' if choice else 'fp32'} (measured features of one batch: {timing}; {error:.2%} apart)"


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _cache_path(digest: ImagesDigest, images, labels: np.ndarray, pre: Preprocessing, spec: dict, bf16: bool,
                mirror: bool):
    folder = cache_dir()
    if not folder:
        return None  # no cache: the images are never hashed
    view = {"mirror": True} if mirror else {}
    key = feature_key(digest.of(images, labels), {**spec, "preprocessing": pre.to_dict(), "bf16": bf16, **view})
    return folder / "features" / f"{key}.npy"


def cached_precision(images, labels: np.ndarray, pre: Preprocessing, spec: dict,
                     digest: ImagesDigest | None = None) -> bool | None:
    """bf16 (True) or fp32 (False) where the cache already holds these images' features in one of them, else
    None: a repeated ``--precision auto`` run reads what the first computed instead of timing again."""
    digest = digest or ImagesDigest()
    for bf16 in (True, False):
        path = _cache_path(digest, images, labels, pre, spec, bf16, mirror=False)
        if path is not None and path.is_file():
            return bf16
    return None


def cached_features(backbone, images, labels: np.ndarray, pre: Preprocessing, device, spec: dict,
                    batch_size: int | None = None, bf16: bool = False, progress: bool = True,
                    desc: str = "features", mirror: bool = False,
                    digest: ImagesDigest | None = None) -> tuple[torch.Tensor, bool]:
    """(features, came_from_cache). ``spec`` names the backbone and weights (see module docstring);
    ``digest``: the caller's ImagesDigest of these images, so that several calls hash them once."""
    digest = digest or ImagesDigest()
    path = _cache_path(digest, images, labels, pre, spec, bf16, mirror)
    if path is not None and path.is_file():
        touch(path)
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False)), True
        except (OSError, ValueError):  # a damaged entry is a miss
            pass
    feats = compute_features(backbone, images, pre, device, batch_size, bf16, progress, desc, mirror)
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, feats.numpy())
        store(path, buf.getvalue())
    return feats, False
