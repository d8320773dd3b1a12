"""Transfer learning's options (torch-free, so the command line builds its flags from these fields)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

from ..errors import ClasslabError
from ..training.config import TrainConfig, check_numbers, flag

MODES = ("features", "finetune", "both")
HEAD_EPOCHS = 5  # the head's epochs unless --head-epochs is given...
MIN_HEAD_STEPS = 100  # ...or more, so a small training split still gives the head this many steps
# fine-tuning's steps run in chunks of about this many pixels (8 images at 224 px): MobileNetV2's activations
# take about 110 MB an image there, and a 64-image step held 6.5 GB; chunks of 8-16 also ran 2x faster on
# 2 CPU cores than 64 at once (benchmarks/README.md)
MICRO_BATCH_PIXELS = 8 * 224 * 224
MAX_HEAD_EPOCHS = 100  # (at most these epochs: 100 of a 64-image split take about a second on cached features)


@dataclass
class TransferConfig:
    backbone: str = flag("mobilenet_v2", "mobilenet_v2, resnet18, resnet50, vgg16, efficientnet_b0, any torchvision "
                                          "classification model, or a classlab run directory")
    weights: str | None = flag(None, "weights file (default: the torch hub cache, then a download); 'random' for none")
    mode: str = flag("both", "features (frozen backbone, cached), finetune, or both")
    # the backbone's input size, resized on the device; the data flag --image-size sets it
    image_size: int | None = field(default=None, metadata={"shared": "data"})
    gray: str = flag("replicate", "grayscale input: replicate to 3 channels, or sum the first conv's filters")
    dense: int | None = flag(None, "hidden units in the head (default: none, a linear head)")
    dropout: float = flag(0.2, "dropout before the output layer")
    # None: HEAD_EPOCHS, raised on small data to MIN_HEAD_STEPS steps (measured on 20 CIFAR-10 images per class,
    # 10 classes, scored on 1,000 others: 5 epochs of 3 steps 47.3%, 35 epochs 54.6%; benchmarks/README.md)
    head_epochs: int | None = flag(None, f"epochs on cached features (default {HEAD_EPOCHS}, or more on a small "
                                         f"training split so that the head takes at least {MIN_HEAD_STEPS} steps)")
    finetune_epochs: int = flag(5, "epochs of fine-tuning")
    lr: float = flag(1e-3, "head learning rate")
    backbone_lr_ratio: float = flag(0.1, "backbone lr = lr x this while fine-tuning")
    # "half": the later half of the backbone's blocks. On the tutorial's ants and bees (MobileNetV2, 220 training
    # photos) it ran 2x the images/s of "all" (no gradients through the early blocks) and scored as well or
    # better; its early blocks' generic edges and textures are what a small photo folder cannot improve on
    # (benchmarks/README.md, own photos)
    unfreeze: str = flag("half", "all, half (the later half of the backbone's blocks) or last:N blocks while "
                                 "fine-tuning")
    bn: str = flag("frozen", "BatchNorm statistics while fine-tuning: frozen or train")
    batch_size: int = flag(64, "images per step")
    micro_batch: int | None = flag(None, "fine-tuning: run each step in chunks of this many images, gradients "
                                         "added up (default: about 8 at 224 px, more on smaller inputs, while "
                                         "BatchNorm statistics are frozen; the whole batch with --bn train)")
    optimizer: str = flag("adam", "sgd, nesterov, adam, adamw, rmsprop")
    weight_decay: float = flag(0.0, "L2 weight decay")
    label_smoothing: float = flag(0.0, "label smoothing of the cross-entropy targets")
    augment: str = flag("flip-crop", "fine-tuning augmentation")
    # the features stage's: "flip" caches the mirror images' training features too, and each epoch trains on
    # one of the pair per image (measured on 10k CIFAR-10: +0.2 points; on digits and on MNIST features of
    # Fashion-MNIST it costs a few, and it doubles the training images' feature pass, so it is opt-in)
    head_augment: str = flag("none", "features stage: none or flip (the mirror images' features cached too; each "
                                     "epoch trains on one of the pair per image)")
    # both stages; None: constant for the head (measured: a decaying rate starves heads on small data of
    # steps, e.g. digits 74% -> 66% in 5 epochs) and one-cycle for fine-tuning, as fastai's fine_tune: its
    # warm-up keeps Adam's first full-rate steps from undoing the trained head (on ants and bees, cosine's first
    # epoch took training accuracy from 0.99 to 0.84 and fine-tuning never caught up with the head; one-cycle's
    # first epoch beat it; benchmarks/README.md)
    schedule: str | None = flag(None, "learning-rate schedule of both stages: constant, step, cosine, onecycle "
                                      "(default: constant for the head, onecycle for fine-tuning)")
    class_weight: str | None = flag(None, "balanced: weight both stages' loss by inverse class frequency (imbalanced "
                                          "data; as Keras's fit(class_weight=))")
    sampler: str | None = flag(None, "balanced: both stages draw batches with equal class probability")
    early_stopping: int | None = flag(None, "stop a stage after this many epochs without a better validation "
                                            "accuracy", metavar="PATIENCE")
    tta: str = flag("none", "flip: score and predict each image and its mirror image, averaged (features: "
                            "mirrored features cached too)", nargs="?", const="flip")
    seed: int = field(default=0, metadata={"shared": "data"})
    mlflow: str | None = flag(None, "also log to MLflow (both stages' epochs, test metrics, report, plots, the "
                                    "exported model) at this tracking URI (default ./mlruns when given alone)",
                              nargs="?", const="mlruns", metavar="URI")
    device: str = flag("auto", "auto, cpu, cuda, mps")
    precision: str = flag("auto", "precision of fine-tuning steps and of the training images' features: auto "
                                  "(as train's: on the CPU the faster of bf16 and fp32, timed first), bf16, fp32 "
                                  "(test features and scores: always fp32)")

    def validate(self) -> "TransferConfig":
        from ..models.transfer import BN_MODES, parse_unfreeze

        check_numbers(self)
        if self.mode not in MODES:
            raise ClasslabError(f"unknown --mode '{self.mode}'; choose one of {', '.join(MODES)}")
        if self.bn not in BN_MODES:
            raise ClasslabError(f"--bn takes {' or '.join(BN_MODES)}, got '{self.bn}'")
        parse_unfreeze(self.unfreeze)
        if not 0 < self.backbone_lr_ratio <= 10:
            raise ClasslabError(f"--backbone-lr-ratio must be in (0, 10], got {self.backbone_lr_ratio}")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise ClasslabError(f"--micro-batch must be a positive whole number of images, got {self.micro_batch}")
        if self.head_augment not in ("none", "flip"):
            raise ClasslabError(f"--head-augment takes none or flip, got '{self.head_augment}' (cached features "
                                "are of whole images: crops and the rest apply to fine-tuning, --augment)")
        if self.tta not in ("none", "flip"):
            raise ClasslabError(f"--tta for transfer takes none or flip, got '{self.tta}'")
        if self.mlflow is not None and (not isinstance(self.mlflow, str) or not self.mlflow.strip()):
            raise ClasslabError(f"--mlflow takes a tracking URI or a folder, got {self.mlflow!r}")
        if self.image_size is not None and not 1 <= self.image_size <= 1024:
            raise ClasslabError(f"--image-size must be between 1 and 1024, got {self.image_size}")
        self.stage_config("head").validate()
        self.stage_config("finetune").validate()
        return self

    def stage_config(self, stage: str) -> TrainConfig:
        head = stage == "head"
        return TrainConfig(
            model="transfer", epochs=(self.head_epochs or HEAD_EPOCHS) if head else self.finetune_epochs,
            batch_size=self.batch_size,
            lr=self.lr, optimizer=self.optimizer, weight_decay=self.weight_decay, label_smoothing=self.label_smoothing,
            augment="none" if head else self.augment, class_weight=self.class_weight, sampler=self.sampler,
            schedule=self.schedule or ("constant" if head else "onecycle"),
            early_stopping=self.early_stopping, seed=self.seed, device=self.device, tta=self.tta,
            precision="fp32" if head else self.precision)

    def finetune_config(self, train_images: int, input_size) -> TrainConfig:
        """The fine-tuning stage's TrainConfig for ``train_images`` at ``input_size`` (H, W): its batch no
        larger than the split, run in micro-batches of about MICRO_BATCH_PIXELS. With frozen BatchNorm
        statistics a chunked step is the whole batch's step; with --bn train the chunks would see other
        batch statistics, so the batch stays whole unless --micro-batch says otherwise."""
        cfg = self.stage_config("finetune").for_split(train_images)
        micro = self.micro_batch
        if micro is None and self.bn == "frozen":
            micro = max(1, MICRO_BATCH_PIXELS // (int(input_size[0]) * int(input_size[1])))
        return replace(cfg, micro_batch=micro if micro is not None and micro < cfg.batch_size else None)

    def head_config(self, train_images: int) -> TrainConfig:
        """The features stage's TrainConfig for a training split of ``train_images``: its batch no larger
        than the split and, unless --head-epochs was given, enough epochs for ``MIN_HEAD_STEPS`` steps."""
        cfg = self.stage_config("head").for_split(train_images)
        if self.head_epochs is not None:
            return cfg
        steps = max(1, math.ceil(train_images / cfg.batch_size))
        return replace(cfg, epochs=min(MAX_HEAD_EPOCHS, max(HEAD_EPOCHS, math.ceil(MIN_HEAD_STEPS / steps))))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TransferConfig":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ClasslabError(f"unknown transfer options {', '.join(sorted(unknown))}")
        return cls(**data)
