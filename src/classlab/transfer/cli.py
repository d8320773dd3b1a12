"""``classlab transfer``: the command-line face of ``classlab.transfer.run_transfer``."""

from __future__ import annotations

import argparse

EXAMPLE = ("examples:\n  classlab transfer cifar10-images.zip --backbone mobilenet_v2 --mode both --image-size 96 --dense 128 \\\n"
           "      --max-train 10000 --max-eval 2000        # the decks' laptop setting\n"
           "  classlab transfer cifar10-images.zip --mode features --image-size 96 --dense 128 --batch-size 32 \\\n"
           "      --max-train 10000 --max-eval 2000 --schedule cosine --head-augment flip --tta flip  # frozen: 75%\n"
           "  classlab transfer fashion-mnist --data-dir ../shared/data --backbone runs/<mnist run> --mode features\n"
           "  classlab transfer photos/ --backbone resnet18 --weights resnet18-f37072fd.pth --unfreeze last:2\n"
           "  classlab transfer --resume runs/<killed transfer run>")


def cmd_transfer(args, options) -> None:
    from ..errors import ClasslabError
    from . import TransferConfig, run_transfer

    values = {k: getattr(args, k) for k in TRANSFER_FLAGS if getattr(args, k) is not None}
    if args.resume:
        if values:
            raise ClasslabError(f"--resume continues a run with its saved options; drop "
                                f"{', '.join('--' + k.replace('_', '-') for k in values)}")
        result = run_transfer(None, None, resume=args.resume)
    else:
        opts = options(args)
        opts.image_size = None  # --image-size is the backbone's input size here, resized on the device
        result = run_transfer(opts, TransferConfig(backbone=args.backbone, **values), args.runs_dir)
    print(result["evaluation"].text())
    for name, s in result["stages"].items():
        print(f"{name:9} validation {s['best_val_acc']:.4f}  test {s['accuracy']:.4f}  macro F1 {s['macro_f1']:.4f}"
              f"{'  (chosen)' if name == result['chosen_stage'] else ''}")
    print(f"report: {result['report']}")


TRANSFER_FLAGS = ("weights", "mode", "image_size", "gray", "dense", "dropout", "head_epochs", "finetune_epochs", "lr",
                  "backbone_lr_ratio", "unfreeze", "bn", "batch_size", "optimizer", "weight_decay", "label_smoothing",
                  "augment", "head_augment", "schedule", "early_stopping", "device", "precision", "seed", "tta")


def _transfer_args(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("transfer learning (--image-size is the backbone's input size, resized on the device)")
    t.add_argument("--backbone", default="mobilenet_v2", help="mobilenet_v2 (default), resnet18, resnet50, vgg16, "
                   "efficientnet_b0, any torchvision classification model, or a classlab run directory")
    t.add_argument("--weights", help="weights file (default: the torch hub cache, then a download); 'random' for none")
    t.add_argument("--mode", help="features (frozen backbone, cached), finetune, or both (default)")
    t.add_argument("--gray", help="grayscale input: replicate to 3 channels (default) or sum the first conv's filters")
    t.add_argument("--dense", type=int, help="hidden units in the head (default: none, a linear head)")
    t.add_argument("--dropout", type=float, help="dropout before the output layer (default 0.2)")
    t.add_argument("--head-epochs", type=int, help="epochs on cached features (default 5)")
    t.add_argument("--finetune-epochs", type=int, help="epochs of fine-tuning (default 5)")
    t.add_argument("--lr", type=float, help="head learning rate (default 1e-3)")
    t.add_argument("--backbone-lr-ratio", type=float, help="backbone lr = lr x this while fine-tuning (default 0.1)")
    t.add_argument("--unfreeze", help="all (default) or last:N backbone blocks while fine-tuning")
    t.add_argument("--bn", help="BatchNorm statistics while fine-tuning: frozen (default) or train")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--optimizer", help="sgd, nesterov, adam (default), adamw, rmsprop")
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--label-smoothing", type=float)
    t.add_argument("--augment", help="fine-tuning augmentation (default flip-crop)")
    t.add_argument("--head-augment", help="features stage: none (default) or flip (the mirror images' features "
                   "cached too; each epoch trains on one of the pair per image)")
    t.add_argument("--schedule", help="learning-rate schedule of both stages: constant, step, cosine, onecycle "
                   "(default: constant for the head, cosine for fine-tuning)")
    t.add_argument("--early-stopping", type=int, metavar="PATIENCE")
    t.add_argument("--tta", nargs="?", const="flip", help="flip: score and predict each image and its mirror image, "
                                                          "averaged (features: mirrored features cached too)")
    t.add_argument("--precision", help="fine-tuning precision: auto, bf16, fp32")
    t.add_argument("--device", help="auto, cpu, cuda, mps")
    t.add_argument("--resume", metavar="RUN", help="continue a killed transfer run (each stage from its last.pt)")


def add_command(add, data_args, options) -> None:
    """``add(name, help, func)`` makes a subparser; ``data_args`` / ``options`` are cli.py's data flags."""
    p = add("transfer", "Transfer learning: a pretrained backbone, a head on cached features, fine-tuning.",
            lambda args: cmd_transfer(args, options))
    data_args(p)
    _transfer_args(p)
