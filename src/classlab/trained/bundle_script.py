"""The ``predict.py`` an export bundle carries: a few lines that load the bundle and classify image files with
its preprocessing contract, needing only NumPy, Pillow and onnxruntime (ONNX) or torch (TorchScript), not
classlab: what Teachable Machine's export gives as its code snippet. ``preprocessing.json``'s "contract" holds
the fields it reads; tests/test_export_lrfind.py runs it against classlab's own predictions."""

SCRIPT = '''"""Classify images with this classlab export bundle: python predict.py IMAGE [IMAGE ...]

Needs numpy, Pillow and {runtime}; classlab itself is not needed. preprocessing.json says what is done to an
image before the model sees it; classes.json names the model's outputs."""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
contract = json.loads((HERE / "preprocessing.json").read_text())["contract"]
classes = json.loads((HERE / "classes.json").read_text())


def load(path):
    """An image file as the model's input: (1, C, H, W) float32."""
    height, width = contract["image_size"]
    crop = contract.get("crop")
    image = Image.open(path)
    if image.format == "JPEG":  # decoded at a reduced scale, as classlab decodes (same pixels, less work)
        side = int(np.ceil(max(height, width) / (crop or 1)))
        image.draft(image.mode, (side, side))
    image = ImageOps.exif_transpose(image)
    image = image.convert("L" if contract["channels"] == 1 else "RGB")
    if crop:  # shorter side to size / crop, then the centre kept (as ImageNet weights are scored)
        scale = max(height / crop / image.height, width / crop / image.width)
        keep_h, keep_w = min(image.height, height / scale), min(image.width, width / scale)
        top, left = (image.height - keep_h) / 2, (image.width - keep_w) / 2
        image = image.resize((width, height), Image.Resampling.BILINEAR, box=(left, top, left + keep_w, top + keep_h))
    else:
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = x[:, :, None] if x.ndim == 2 else x
    if contract.get("input_size"):  # a second resize, to the backbone's input size
        h, w = contract["input_size"]
        x = np.stack([np.asarray(Image.fromarray(x[:, :, c], mode="F").resize((w, h), Image.Resampling.BILINEAR))
                      for c in range(x.shape[2])], axis=2)
    if contract.get("input_channels"):
        x = np.repeat(x, contract["input_channels"], axis=2)
    x = (x - np.array(contract["mean"], np.float32)) / np.array(contract["std"], np.float32)
    return x.transpose(2, 0, 1)[None].astype(np.float32)


{runner}


def main(paths):
    for path in paths:
        logits = run(load(path))[0]
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        top = np.argsort(-probabilities)[:3]
        print(path, "  ".join(f"{{classes[i]}} {{probabilities[i]:.4f}}" for i in top))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python predict.py IMAGE [IMAGE ...]")
    main(sys.argv[1:])
'''

RUNNERS = {
    "onnx": ("onnxruntime", '''import onnxruntime

session = onnxruntime.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])


def run(x):
    return session.run(None, {session.get_inputs()[0].name: x})[0]'''),
    "torchscript": ("torch", '''import torch

model = torch.jit.load(str(HERE / "model.pt")).eval()


def run(x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()'''),
}


def predict_script(fmt: str) -> str:
    """predict.py for a bundle of ``fmt`` ("onnx" or "torchscript")."""
    runtime, runner = RUNNERS[fmt]
    return SCRIPT.format(runtime=runtime, runner=runner)
