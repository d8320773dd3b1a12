"""Training configuration: every option, validated at the boundary with messages that say what to do.

Torch-free, so the command line can build its flags from these fields (their ``help`` metadata) without
importing torch. A field without ``help`` is not a flag of its own (``model_options`` comes from ``-o``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..errors import ClasslabError, warn
from ..inference.tta import TTA_MODES, tta_mode

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine", "onecycle", "triangular")
LOSSES = ("ce", "mse")
PRECISIONS = ("auto", "bf16", "fp32")
AUGMENTS = ("none", "crop", "flip-crop", "flip-crop-jitter", "randaugment", "mixup", "cutmix")
TTAS = TTA_MODES


def flag(default, help: str, **cli):
    """A dataclass field that is also a command-line flag (``cli``: argparse extras such as metavar, nargs)."""
    factory = {"default_factory": default} if callable(default) else {"default": default}
    return field(**factory, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    model: str = flag("mlp", "a name from 'classlab models'")
    model_options: dict = field(default_factory=dict)
    epochs: int = flag(10, "passes over the training split")
    batch_size: int = flag(64, "images per step")
    lr: float = flag(1e-3, "learning rate")
    optimizer: str = flag("adam", "sgd, nesterov, adam, adamw, rmsprop")
    momentum: float = flag(0.9, "SGD / RMSprop momentum")
    weight_decay: float = flag(0.0, "L2 weight decay")
    schedule: str = flag("constant", "constant, step, cosine, onecycle, triangular (linear up, linear down)")
    warmup_epochs: float = flag(0.0, "epochs of linear learning-rate warm-up")
    step_size: int = flag(10, "epochs between x0.1 steps (schedule step)")
    label_smoothing: float = flag(0.0, "label smoothing of the cross-entropy targets")
    loss: str = flag("ce", "ce (cross-entropy) or mse (on one-hot targets)")
    grad_clip: float | None = flag(None, "clip the gradient norm to this value")
    augment: str = flag("none", "none, crop, flip-crop, flip-crop-jitter (+ rotation, colour), randaugment, mixup, "
                                "cutmix (both after flip-crop)")
    crop_padding: int = flag(4, "pixels the crop augmentations translate by, at most")
    class_weight: str | None = flag(None, "balanced: weight the loss by inverse class frequency")
    sampler: str | None = flag(None, "balanced: draw batches with equal class probability")
    early_stopping: int | None = flag(None, "stop after this many epochs without a better validation accuracy",
                                      metavar="PATIENCE")
    seed: int = field(default=0, metadata={"shared": "data"})  # the data flags' --seed: one seed per run
    deterministic: bool = flag(False, "deterministic algorithms (reproducible, slower)")
    precision: str = flag("auto", "auto (bf16 where supported; on the CPU the faster of bf16 and fp32, timed on "
                                   "a copy of the model before the run), bf16, fp32")
    device: str = flag("auto", "auto, cpu, cuda, mps")
    compile: bool = flag(False, "torch.compile the model (faster steps, slower start)")
    tensorboard: bool = flag(False, "also log to RUN/tensorboard (tensorboard --logdir runs)")
    mlflow: str | None = flag(None, "also log to MLflow: parameters, per-epoch and test metrics, report, plots and "
                                    "the exported model, to the tracking URI given (default ./mlruns when given "
                                    "alone)", nargs="?", const="mlruns", metavar="URI")
    # test-time augmentation for validation, test and predictions: "flip" averages each image and its mirror
    # image; "flip-translate" also the mirrored pair shifted one pixel up-left and down-right (six views)
    tta: str = flag("none", "test-time augmentation for scoring and predicting: flip (the default when given "
                            "alone: image + mirror image) or flip-translate (six views)", nargs="?", const="flip")
    # every 5 steps from the second quarter of training on, pull the weights towards their running average
    # (Lookahead with an exponential average whose memory grows over training, as in the CIFAR-10 speed runs)
    lookahead: bool = flag(False, "every 5 steps, pull the weights towards their running average "
                                  "(helps short schedules)")
    # The CIFAR-10 speed runs' alternating flip: a random half mirrored in the first epoch, then every image
    # the other way round from the epoch before, so each is seen both ways in any two epochs (random flips
    # leave a quarter of the images unmirrored, or mirrored, in both).
    alternate_flip: bool = flag(False, "with a flip augmentation, mirror each image on alternate epochs "
                                       "instead of at random (short schedules)")
    # a from-scratch model far larger than its training set memorises it (models/sizing.py): refused, or
    # its automatically chosen input size reduced, unless this is given
    # activations dominate a step's memory (MobileNetV2 at 224 px: about 110 MB an image in fp32), and on the
    # CPU small chunks also run faster (8-16 images: 21 images/s, 64 at once: 9)
    micro_batch: int | None = flag(None, "split each step's batch into chunks of this many images and add up "
                                         "their gradients: the same step in less memory (exact unless BatchNorm "
                                         "statistics train)")
    allow_large_model: bool = flag(False, "train a model with more than 100,000 parameters per training image "
                                          "(otherwise refused, or its input size reduced when it was chosen "
                                          "automatically)")

    def __post_init__(self):
        self.tta = tta_mode(self.tta)  # older runs saved on/off

    def validate(self) -> "TrainConfig":
        def bad(msg):
            raise ClasslabError(msg)
        check_numbers(self)
        for name in ("model", "optimizer", "schedule", "augment", "loss", "precision", "device", "tta"):
            if not isinstance(getattr(self, name), str):
                bad(f"--{name.replace('_', '-')} takes a name, got {getattr(self, name)!r}")
        if not isinstance(self.model_options, dict):
            bad(f"model_options must be a mapping of option names to values, got {self.model_options!r}")
        if self.mlflow is not None and (not isinstance(self.mlflow, str) or not self.mlflow.strip()):
            bad(f"--mlflow takes a tracking URI or a folder, got {self.mlflow!r}")
        for name in ("deterministic", "compile", "tensorboard", "lookahead", "alternate_flip", "allow_large_model"):
            if not isinstance(getattr(self, name), bool):
                bad(f"--{name} is on or off (true / false), got {getattr(self, name)!r}")
        if not 0 <= self.seed <= 2**32 - 1:
            bad(f"--seed must be from 0 to {2**32 - 1}, got {self.seed}")
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
        if self.alternate_flip and self.augment in ("none", "crop"):
            bad(f"--alternate-flip decides which images a flip augmentation mirrors, and --augment {self.augment} "
                "mirrors none; add --augment flip-crop (or another flipping augmentation)")
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
        if self.micro_batch is not None and self.micro_batch < 1:
            bad(f"--micro-batch must be a positive whole number of images, got {self.micro_batch}")
        if self.early_stopping is not None and self.early_stopping < 1:
            bad(f"--early-stopping takes a patience of at least 1 epoch, got {self.early_stopping}")
        return self

    def for_split(self, images: int) -> "TrainConfig":
        """This config with a batch no larger than a training split of ``images`` (per process): as PyTorch's
        DataLoader and Keras do, a larger batch takes the whole split, one step an epoch, with a note. A small
        folder (a workshop's 30 webcam photos) trains with the default batch instead of failing."""
        if self.batch_size <= images:
            return self
        warn(f"--batch-size {self.batch_size} is larger than the training split ({images} images); each step "
             f"takes all {images}")
        return replace(self, batch_size=images)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ClasslabError(f"unknown training options {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        return cls(**data)


def check_numbers(config) -> None:
    """Every numeric field of a config dataclass is a finite number of its type (a config file or the
    Python API can hand in anything: NaN, "3", True)."""
    for f in fields(config):
        kind, value = str(f.type), getattr(config, f.name)
        if value is None or not kind.startswith(("int", "float")):
            continue
        name = "--" + f.name.replace("_", "-")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ClasslabError(f"{name} must be a finite number, got {value!r}")
        if kind.startswith("int") and not isinstance(value, int):
            raise ClasslabError(f"{name} must be a whole number, got {value!r}")


def load_config_file(path: str | Path) -> dict:
    """A JSON or YAML file of training options (YAML needs PyYAML installed)."""
    from ..safe_files import UnreadableFile, read_file

    path = Path(path)
    if not path.exists():
        raise ClasslabError(f"config file {path} not found")
    try:
        text = read_file(path, 16 << 20).decode("utf-8")
    except UnreadableFile as e:
        raise ClasslabError(f"cannot read the config file: {e}") from None
    except UnicodeDecodeError:
        raise ClasslabError(f"{path} is not UTF-8 text; save the config as UTF-8 JSON or YAML") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ClasslabError("reading YAML configs needs PyYAML: pip install pyyaml (or use a .json config)") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ClasslabError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ClasslabError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ClasslabError(f"{path} must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}
