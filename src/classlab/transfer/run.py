"""``classlab transfer``: a pretrained backbone, a new head on cached frozen features, then fine-tuning.

Stages (``--mode``): ``features`` trains the head on features computed once and cached; ``finetune``
trains backbone and head together (backbone at a lower rate, BatchNorm statistics frozen by default);
``both`` does the first, then continues from it with the second. Each stage uses the training engine,
keeps its own checkpoints, curves and test report in a sub-folder, and the stage with the best
validation accuracy becomes the run's model (best.pt), which predict, export and evaluate use.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from ..device import pick_device
from ..errors import ClasslabError
from ..evaluation import evaluate
from ..fileio import atomic_write_bytes
from ..models import count_parameters, create_model
from ..models.transfer import BN_MODES, parse_unfreeze
from ..prepare import DataOptions, load_and_split, record_split, saved_options, split_summary
from ..runs import Run
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.config import TrainConfig
from ..training.engine import SplitTensors, fit, predict_logits, set_determinism
from ..training.run import history_files, tensors_for
from ..training.tensors import Preprocessing
from .backbone import plan_backbone
from .features import cached_features

MODES = ("features", "finetune", "both")


@dataclass
class TransferConfig:
    backbone: str = "mobilenet_v2"
    weights: str | None = None  # a file, "random", or None: the hub cache, then a download
    mode: str = "both"
    image_size: int | None = None  # default: the size the weights were trained at
    gray: str = "replicate"  # or "sum": the first convolution summed to one channel
    dense: int | None = None
    dropout: float = 0.2
    head_epochs: int = 5
    finetune_epochs: int = 5
    lr: float = 1e-3
    backbone_lr_ratio: float = 0.1
    unfreeze: str = "all"
    bn: str = "frozen"
    batch_size: int = 64
    optimizer: str = "adam"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augment: str = "flip-crop"  # fine-tuning only
    # the features stage's: "flip" caches the mirror images' training features too, and each epoch trains on
    # one of the pair per image (measured on 10k CIFAR-10: +0.2 points; on digits and on MNIST features of
    # Fashion-MNIST it costs a few, and it doubles the training images' feature pass, so it is opt-in)
    head_augment: str = "none"
    # both stages; None: constant for the head (measured: a decaying rate starves heads on small data of
    # steps, e.g. digits 74% -> 66% in 5 epochs; on 10k CIFAR-10 cosine gains about 1 point) and cosine for fine-tuning
    schedule: str | None = None
    early_stopping: int | None = None
    tta: str = "none"  # "flip": validation, test and predictions average each image and its mirror image
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # fine-tuning; features and test scores are computed in fp32

    def validate(self) -> "TransferConfig":
        if self.mode not in MODES:
            raise ClasslabError(f"unknown --mode '{self.mode}'; choose one of {', '.join(MODES)}")
        if self.bn not in BN_MODES:
            raise ClasslabError(f"--bn takes {' or '.join(BN_MODES)}, got '{self.bn}'")
        parse_unfreeze(self.unfreeze)
        if not 0 < self.backbone_lr_ratio <= 10:
            raise ClasslabError(f"--backbone-lr-ratio must be in (0, 10], got {self.backbone_lr_ratio}")
        if self.head_augment not in ("none", "flip"):
            raise ClasslabError(f"--head-augment takes none or flip, got '{self.head_augment}' (cached features "
                                "are of whole images: crops and the rest apply to fine-tuning, --augment)")
        if self.tta not in ("none", "flip"):
            raise ClasslabError(f"--tta for transfer takes none or flip, got '{self.tta}'")
        if self.image_size is not None and not 1 <= self.image_size <= 1024:
            raise ClasslabError(f"--image-size must be between 1 and 1024, got {self.image_size}")
        self.stage_config("head").validate()
        self.stage_config("finetune").validate()
        return self

    def stage_config(self, stage: str) -> TrainConfig:
        head = stage == "head"
        return TrainConfig(
            model="transfer", epochs=self.head_epochs if head else self.finetune_epochs, batch_size=self.batch_size,
            lr=self.lr, optimizer=self.optimizer, weight_decay=self.weight_decay, label_smoothing=self.label_smoothing,
            augment="none" if head else self.augment,
            schedule=self.schedule or ("constant" if head else "cosine"),
            early_stopping=self.early_stopping, seed=self.seed, device=self.device, tta=self.tta,
            precision="fp32" if head else self.precision)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TransferConfig":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ClasslabError(f"unknown transfer options {', '.join(sorted(unknown))}")
        return cls(**data)



def resume_options(run_dir: str | Path) -> tuple[Run, DataOptions, TransferConfig]:
    """An earlier transfer run's data options (pinned to its saved split) and configuration."""
    run = Run.existing(run_dir)
    if run.command != "transfer":
        raise ClasslabError(f"{run.path} is a '{run.command}' run; --resume here continues transfer runs "
                            f"(use classlab {run.command} --resume)")
    saved = json.loads((run.path / "config.json").read_text())["options"]["transfer"]
    return run, saved_options(run), TransferConfig.from_dict(saved)


def run_transfer(opts: DataOptions | None, tc: TransferConfig | None, runs_dir=None, progress: bool = True,
                 resume: str | Path | None = None) -> dict:
    """``resume``: an earlier (killed or finished) transfer run to continue in place: each stage picks up
    from its last.pt (a finished stage costs a cache read and no training); data and options are the
    saved ones."""
    run = None
    if resume is not None:
        run, opts, tc = resume_options(resume)
    tc.validate()
    set_determinism(tc.stage_config("head"))
    plan = plan_backbone(tc.backbone, tc.weights, progress)  # before the data: it may fix the channels
    if plan.channels is not None:
        opts.channels = plan.channels
    ds, split = load_and_split(opts)
    pre, in_channels = plan.contract(ds, tc.image_size, tc.gray)
    idx = {s: split.indices(s) for s in ("train", "val", "test")}
    if len(idx["train"]) == 0 or len(idx["test"]) == 0:
        raise ClasslabError("transfer learning needs train and test images; check --val-fraction / --test-fraction")
    device = pick_device(tc.device)
    options = plan.build_options(tc.dense, tc.dropout, tc.bn)
    model = create_model("transfer", ds.num_classes, in_channels, pre.model_size, **options)
    if plan.state is not None:  # the pretrained backbone, classifier removed and first convolution adapted
        model.backbone.load_state_dict(plan.backbone_only(in_channels)[0].state_dict())
    model.to(device)
    model_info = {"name": "transfer", "num_classes": ds.num_classes, "in_channels": in_channels,
                  "image_size": pre.model_size, "options": options}
    if run is None:
        run = Run("transfer", ds.name, runs_dir)
        run.write_config({"data": vars(opts), "transfer": tc.to_dict(), "model": model_info, "weights": plan.weights,
                          "preprocessing": pre.to_dict()}, tc.seed)
        record_split(run, ds, split)
    extra = {"model_info": model_info, "class_names": ds.class_names}
    stages = {}
    if tc.mode in ("features", "both"):
        stages["features"] = _features_stage(model, ds, idx, pre, plan, tc, run, extra, device, progress)
    if tc.mode in ("finetune", "both"):
        stages["finetune"] = _finetune_stage(model, ds, idx, pre, tc, run, extra, device, progress)
    return _finish(run, ds, split, idx, stages, model, tc, plan)


def _last(out: Path, device) -> dict | None:
    """A stage's last checkpoint, to continue from (None: start the stage afresh)."""
    return load_checkpoint(out / "last.pt", map_location=device) if (out / "last.pt").is_file() else None


def _labels(ds, indices, device) -> torch.Tensor:
    return torch.from_numpy(ds.labels[indices]).to(device)


def _features_stage(model, ds, idx, pre, plan, tc, run, extra, device, progress) -> dict:
    model.freeze(None)
    t0 = time.perf_counter()
    hits = {}

    def features(s, mirror=False):
        out, hit = cached_features(model.backbone, ds.subset(idx[s]).images, ds.labels[idx[s]], pre, device, plan.spec,
                                   progress=progress, desc=f"features ({s}{', mirrored' if mirror else ''})",
                                   mirror=mirror)
        hits[s + (" mirrored" if mirror else "")] = hit
        return out.to(device)

    # Mirror images' features: training draws one of the pair per image per epoch (--head-augment flip),
    # validation and test average the pair's probabilities (--tta flip), as predict does on images.
    mirrored = {"train": tc.head_augment == "flip", "val": tc.tta == "flip", "test": tc.tta == "flip"}
    split = {s: SplitTensors(features(s), _labels(ds, idx[s], device),
                             features(s, mirror=True)[None] if mirrored[s] else None)
             for s in idx if len(idx[s])}
    feature_seconds = time.perf_counter() - t0
    out = run.path / "features"
    cfg = tc.stage_config("head")
    width = split["train"].images.shape[1]
    identity = Preprocessing.for_features(width)
    val = split.get("val", SplitTensors(split["train"].images[:0], split["train"].labels[:0]))
    t1 = time.perf_counter()
    state = fit(model.head, split["train"], val, cfg, identity, out, {"model_info": {"num_classes": ds.num_classes}},
                resume=_last(out, device), progress=progress)
    head_seconds = time.perf_counter() - t1
    model.head.load_state_dict(load_checkpoint(out / "best.pt", map_location=device)["model"])
    save_checkpoint(out / "model.pt", {**extra, "model": model.state_dict(), "preprocessing": pre.to_dict(),
                                       "config": cfg.to_dict()})
    logits = predict_logits(model.head, split["test"], identity, 256, False, False, cfg.tta)
    return _stage_result("features", out, ds, idx, logits.softmax(1).cpu().numpy(), state, cfg, {
        "feature_seconds": feature_seconds, "head_seconds": head_seconds, "features_from_cache": hits,
        "feature_width": width, "trainable_parameters": count_parameters(model.head)[0]})


def _finetune_stage(model, ds, idx, pre, tc, run, extra, device, progress) -> dict:
    unfrozen = model.freeze(tc.unfreeze)
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    groups = [{"params": list(model.head.parameters()), "lr": tc.lr}]
    if backbone:
        groups.append({"params": backbone, "lr": tc.lr * tc.backbone_lr_ratio})
    out = run.path / "finetune"
    cfg = tc.stage_config("finetune")
    train_t, val_t = tensors_for(ds, idx["train"], device), tensors_for(ds, idx["val"], device)
    t0 = time.perf_counter()
    state = fit(model, train_t, val_t, cfg, pre, out, extra, resume=_last(out, device), progress=progress,
                param_groups=groups)
    seconds = time.perf_counter() - t0
    model.load_state_dict(load_checkpoint(out / "best.pt", map_location=device)["model"])
    model.to(memory_format=torch.contiguous_format)
    logits = predict_logits(model, tensors_for(ds, idx["test"], device), pre, 256, False, False, cfg.tta)
    return _stage_result("finetune", out, ds, idx, logits.softmax(1).cpu().numpy(), state, cfg, {
        "seconds": seconds, "unfrozen_blocks": unfrozen, "blocks": len(model.blocks()),
        "trainable_parameters": count_parameters(model)[1], "backbone_lr": tc.lr * tc.backbone_lr_ratio})


def _stage_result(name, out: Path, ds, idx, proba, state, cfg, info) -> dict:
    y_true = ds.labels[idx["test"]]
    ev = evaluate(y_true, proba.argmax(1), proba, ds.class_names, seed=cfg.seed)
    info = {**info, "best_epoch": state.best_epoch, "epochs_run": state.epoch, "best_val_acc": state.best_val_acc,
            "train_seconds": sum(h["seconds"] for h in state.history)}
    ev.save(out, extra={"stage": name, name: info})
    history_files(out, state.history)
    return {"evaluation": ev, "proba": proba, "info": info, "dir": out, "history": state.history}


def _finish(run, ds, split, idx, stages, model, tc, plan) -> dict:
    # Model selection on validation only: the stage whose best epoch scored higher there.
    chosen = max(stages, key=lambda s: (stages[s]["info"]["best_val_acc"], s == "finetune"))
    src = stages[chosen]["dir"] / ("model.pt" if chosen == "features" else "best.pt")
    atomic_write_bytes(run.path / "best.pt", src.read_bytes())
    ev = stages[chosen]["evaluation"]
    proba = stages[chosen]["proba"]
    y_true = ds.labels[idx["test"]]
    summary = {name: {"accuracy": st["evaluation"].accuracy, "macro_f1": st["evaluation"].metrics["macro_avg"]["f1"],
                      **st["info"]} for name, st in stages.items()}
    paths = ev.save(run.path, extra={"chosen_stage": chosen, "stages": summary, "weights": plan.weights})
    run.write_predictions([ds.ids[i] for i in idx["test"]], y_true, proba.argmax(1), proba, ds.class_names)
    rows = "\n".join(
        f"| {name}{' (chosen)' if name == chosen else ''} | {s['best_val_acc']:.4f} | {s['accuracy']:.4f} | "
        f"{s['macro_f1']:.4f} | {s['epochs_run']} | {s.get('feature_seconds', 0) + s['train_seconds']:.1f} s |"
        for name, s in summary.items())
    table = ("| stage | validation acc | test acc | test macro F1 | epochs | time |\n|---|---|---|---|---|---|\n" + rows)
    pre = Preprocessing(**load_checkpoint(run.path / "best.pt")["preprocessing"])
    contract = (f"Backbone `{tc.backbone}` with weights {plan.weights}. Images are stored at "
                f"{'x'.join(map(str, pre.image_size))}x{pre.channels}, resized to {'x'.join(map(str, pre.model_size))}"
                f"{', grayscale replicated to 3 channels' if pre.input_channels else ''}, scaled to [0, 1] and "
                f"normalised with mean {[round(v, 3) for v in pre.mean]}, std {[round(v, 3) for v in pre.std]} "
                f"(from {pre.source}). The contract is saved in best.pt; predict, export and evaluate reuse it.")
    notes = []
    if "features" in stages:
        f = summary["features"]
        cached = ", ".join(f"{s}: {'cache' if hit else 'computed'}" for s, hit in f["features_from_cache"].items())
        head = tc.stage_config("head")
        notes.append(f"Frozen features ({f['feature_width']} per image; {cached}) took {f['feature_seconds']:.1f} s; "
                     f"the head ({f['trainable_parameters']:,} parameters) trained in {f['head_seconds']:.1f} s "
                     f"({head.optimizer} lr {head.lr:g}, {head.schedule} schedule, batch {head.batch_size}, "
                     f"head augment {tc.head_augment}, test-time augmentation {tc.tta}). "
                     "Curves: `features/curves.png`.")
    if "finetune" in stages:
        f = summary["finetune"]
        notes.append(f"Fine-tuning unfroze {f['unfrozen_blocks']} of {f['blocks']} backbone blocks "
                     f"({f['trainable_parameters']:,} trainable parameters), backbone lr {f['backbone_lr']:g}, head lr "
                     f"{tc.lr:g}, BatchNorm statistics {tc.bn}, augment {tc.augment}. Curves: `finetune/curves.png`.")
    notes.append("Each stage's full report: " + ", ".join(f"`{name}/`" for name in stages) + ".")
    report = run.write_report(f"Transfer learning: {tc.backbone} on {ds.name}", [
        ("Data", split_summary(ds, split)),
        ("Preprocessing contract", contract),
        ("Stages (test scored once per stage; the chosen stage is picked on validation)",
         table + "\n\n" + "\n\n".join(notes)),
        (f"Test results of the chosen stage ({chosen})",
         f"```\n{ev.text()}```\n\n![confusion matrix](confusion_matrix.png)"),
    ])
    return {"run_dir": run.path, "report": report, "evaluation": ev, "chosen_stage": chosen, "stages": summary,
            **paths}
