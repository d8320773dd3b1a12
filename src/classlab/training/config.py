"""Training configuration: every option, validated at the boundary with messages that say what to do."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import ClasslabError
from .tensors import AUGMENTS

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
LOSSES = ("ce", "mse")
PRECISIONS = ("auto", "bf16", "fp32")
TTAS = ("none", "flip", "flip-translate")


def tta_mode(tta) -> str:
    """A TTA setting as one of TTAS' names: older runs saved it as on/off (on meant flip)."""
    if isinstance(tta, bool) or tta is None:
        return "flip" if tta else "none"
    return tta


@dataclass
class TrainConfig:
    model: str = "mlp"
    model_options: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    step_size: int = 10  # epochs between x0.1 steps, for schedule=step
    label_smoothing: float = 0.0
    loss: str = "ce"
    grad_clip: float | None = None
    augment: str = "none"
    crop_padding: int = 4  # the crop augmentations translate images by up to this many pixels
    class_weight: str | None = None  # "balanced"
    sampler: str | None = None  # "balanced"
    early_stopping: int | None = None  # patience in epochs, on validation accuracy
    seed: int = 0
    deterministic: bool = False
    precision: str = "auto"
    device: str = "auto"
    compile: bool = False  # torch.compile the model (slower start, faster steps on long runs)
    tensorboard: bool = False  # also log per-epoch scalars to RUN/tensorboard
    # test-time augmentation for validation, test and predictions: "flip" averages each image and its mirror
    # image; "flip-translate" also the mirrored pair shifted one pixel up-left and down-right (six views)
    tta: str = "none"
    # every 5 steps from the second quarter of training on, pull the weights towards their running average
    # (Lookahead with an exponential average whose memory grows over training, as in the CIFAR-10 speed runs)
    lookahead: bool = False

    def validate(self) -> "TrainConfig":
        def bad(msg):
            raise ClasslabError(msg)
        self.tta = tta_mode(self.tta)
        if not isinstance(self.epochs, int) or not 1 <= self.epochs <= 100_000:
            bad(f"--epochs must be a whole number from 1, got {self.epochs}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            bad(f"--batch-size must be a positive whole number, got {self.batch_size}")
        if not self.lr > 0 or self.lr > 100:
            bad(f"--lr must be positive (and sane: at most 100), got {self.lr}; typical values are 1e-3 for Adam, "
                "0.01-0.1 for SGD")
        for name, value, allowed in (("optimizer", self.optimizer, OPTIMIZERS), ("schedule", self.schedule, SCHEDULES),
                                     ("augment", self.augment, AUGMENTS), ("loss", self.loss, LOSSES),
                                     ("precision", self.precision, PRECISIONS), ("tta", self.tta, TTAS)):
            if value not in allowed:
                bad(f"unknown --{name} '{value}'; choose one of {', '.join(allowed)}")
        for name, value in (("class-weight", self.class_weight), ("sampler", self.sampler)):
            if value not in (None, "balanced"):
                bad(f"--{name} takes 'balanced', got '{value}'")
        if not 0 <= self.label_smoothing < 1:
            bad(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            bad("--weight-decay must be >= 0 and --momentum in [0, 1)")
        if self.warmup_epochs < 0 or self.warmup_epochs >= self.epochs:
            bad(f"--warmup-epochs must be in [0, epochs), got {self.warmup_epochs}")
        if not isinstance(self.crop_padding, int) or not 0 <= self.crop_padding <= 64:
            bad(f"--crop-padding must be a whole number of pixels from 0 to 64, got {self.crop_padding}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            bad(f"--grad-clip must be positive, got {self.grad_clip}")
        if self.early_stopping is not None and self.early_stopping < 1:
            bad(f"--early-stopping takes a patience of at least 1 epoch, got {self.early_stopping}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ClasslabError(f"unknown training options {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        return cls(**data)


def load_config_file(path: str | Path) -> dict:
    """A JSON or YAML file of training options (YAML needs PyYAML installed)."""
    path = Path(path)
    if not path.is_file():
        raise ClasslabError(f"config file {path} not found")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ClasslabError("reading YAML configs needs PyYAML: pip install pyyaml (or use a .json config)") from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ClasslabError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ClasslabError(f"{path} must hold a mapping of option names to values")
    return {k.replace("-", "_"): v for k, v in data.items()}
