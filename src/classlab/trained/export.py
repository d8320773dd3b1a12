"""``classlab export``: a self-describing bundle: the model (ONNX or TorchScript), class names and the
preprocessing contract (size, channels, scaling, mean/std), checked against PyTorch before it is kept."""

from __future__ import annotations

import io
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import ClasslabError
from ..fileio import atomic_write_bytes, atomic_write_text, write_json
from ..inference.predict import predict_batches
from ..inference.tta import forward_tta
from .bundle_script import RUNNERS, predict_script
from .network import TrainedNetwork

FORMATS = ("onnx", "torchscript")


class Serving(torch.nn.Module):
    """What predict computes, inside the exported graph: the run's test-time augmentation (the output is then
    the log of the class probabilities averaged over the views) and its fitted temperature (divides the output:
    softmax then gives the calibrated probabilities)."""

    def __init__(self, model: torch.nn.Module, tta: str, temperature: float = 1.0):
        super().__init__()
        self.model, self.tta, self.temperature = model, tta, float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return forward_tta(self.model, x, self.tta) / self.temperature


def _onnx(model, example, path: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise ClasslabError("ONNX export needs onnx and onnxscript: pip install 'classlab[export]'") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1 << 16)},))
    program.save(str(path))


def _torchscript(model, example, path: Path) -> None:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.export, but still loads everywhere
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, example), buf)
    atomic_write_bytes(path, buf.getvalue())


def run_exported(path: Path, x: np.ndarray) -> np.ndarray:
    """Logits from an exported model file (onnxruntime for .onnx, torch.jit for .pt)."""
    if path.suffix == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ClasslabError("checking an ONNX model needs onnxruntime: pip install 'classlab[export]'") from None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated in favour of torch.export
        return torch.jit.load(str(path)).eval()(torch.from_numpy(x)).numpy()


BUNDLE_FILES = {"model.onnx", "model.pt", "classes.json", "preprocessing.json", "README.txt", "predict.py"}


def _check_output(out: Path) -> None:
    """The bundle folder may be new, empty, or an earlier bundle (replaced); never a file or someone's folder."""
    if out.exists() and not out.is_dir():
        raise ClasslabError(f"--output {out} is a file; give a folder for the bundle")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in BUNDLE_FILES)
        if foreign:
            raise ClasslabError(f"--output {out} already holds other files ({', '.join(foreign[:3])}); give a new "
                                "or empty folder (an earlier bundle there is replaced)")


def _contract_input(images: torch.Tensor, pre) -> np.ndarray:
    """What the exported graph takes: uint8 images through the contract (the bundle's preprocessing.json)."""
    from ..inference.preprocess import to_input

    return to_input(images, pre).numpy()


def export_run(run_dir: str | Path, fmt: str = "onnx", out_dir: str | Path | None = None, atol: float = 1e-4) -> dict:
    if fmt not in FORMATS:
        raise ClasslabError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")
    run = TrainedNetwork.load(run_dir, "cpu")
    pre = run.preprocessing
    model = run.model.float().eval()
    tta = run.tta if run.tta != "none" and len(pre.model_size) == 2 else None
    if tta or run.temperature != 1.0:
        model = Serving(model, tta or "none", run.temperature).eval()
    torch.manual_seed(0)
    example = torch.randn(2, pre.model_channels, *pre.model_size)
    out = Path(out_dir) if out_dir else run.run_dir / f"export-{fmt}"
    name = "model.onnx" if fmt == "onnx" else "model.pt"
    _check_output(out)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        staged = Path(tmp) / name
        (_onnx if fmt == "onnx" else _torchscript)(model, example, staged)
        # The bundle is kept only if the exported model gives PyTorch's answers on a new batch size.
        check = torch.randint(0, 256, (5, *pre.image_size, pre.channels), dtype=torch.uint8)
        expected = predict_batches(run.model, [check], pre, tta=tta or "none").numpy() / run.temperature
        diff = float(np.abs(run_exported(staged, _contract_input(check, pre)) - expected).max())
        if not diff <= atol:
            raise ClasslabError(f"the exported model differs from PyTorch by {diff:.2e} (> {atol}); not written")
        out.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), out / name)
    write_json(out / "classes.json", run.class_names)
    steps = pre.describe()
    contract = {"input": {"layout": "NCHW" if len(pre.image_size) == 2 else "NCDHW", "dtype": "float32",
                          "channels": pre.model_channels, "image_size": pre.model_size},
                "steps": steps, "normalisation_from": pre.source,
                "mean": pre.mean, "std": pre.std,
                "output": (f"log of the class probabilities averaged over the test-time augmentation views ({tta})"
                           if tta else "logits") + (f", divided by the fitted temperature {run.temperature:.4f}"
                                                    if run.temperature != 1.0 else "")
                          + "; softmax gives the class probabilities",
                "temperature": run.temperature,
                "max_abs_difference_vs_pytorch": diff,
                "contract": pre.to_dict()}  # the same, as fields a program reads (predict.py does)
    write_json(out / "preprocessing.json", contract)
    usage = ""
    if len(pre.image_size) == 2:
        atomic_write_text(out / "predict.py", predict_script(fmt))
        usage = (f"predict.py: classifies image files with the model and its preprocessing, without classlab "
                 f"(python predict.py photo.jpg; needs numpy, Pillow and {RUNNERS[fmt][0]}).\n")
    elif (out / "predict.py").exists():
        (out / "predict.py").unlink()  # an earlier 2D bundle's script would not fit this model
    atomic_write_text(out / "README.txt", f"classlab export of {run.run_dir}\n{name}: the model; classes.json: "
                      "output index -> class name; preprocessing.json: what to do to an image first.\n" + usage)
    return {"bundle": out, "model": out / name, "max_abs_difference": diff}
