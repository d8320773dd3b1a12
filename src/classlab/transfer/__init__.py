"""Transfer learning: pretrained backbones, cached frozen features, fine-tuning."""

from .run import TransferConfig, run_transfer

__all__ = ["TransferConfig", "run_transfer", "transfer"]


def transfer(data="digits", backbone: str = "mobilenet_v2", *, runs_dir=None, progress: bool = True,
             data_options: dict | None = None, **options):
    """Transfer ``backbone`` (a torchvision name or a classlab run directory) to ``data`` and return the
    finished run as a ``TrainedRun`` (``.predict``, ``.evaluate``, ``.run_dir``). ``options`` are
    TransferConfig fields (mode, image_size, dense, head_epochs, finetune_epochs, unfreeze, bn, ...)."""
    from ..predictor import TrainedRun
    from ..prepare import DataOptions

    tc = TransferConfig.from_dict({"backbone": str(backbone), **options})
    result = run_transfer(DataOptions(data=str(data), **(data_options or {})), tc, runs_dir, progress=progress)
    return TrainedRun.load(result["run_dir"], device=tc.device if tc.device != "auto" else "cpu")
