"""``classlab transfer``: its flags are TransferConfig's fields."""

from __future__ import annotations

from dataclasses import replace

from .common import Command, add_config_flags, add_data_flags, data_options, given_flags


def configure(p) -> None:
    from ..backbones.config import TransferConfig

    add_data_flags(p)
    t = p.add_argument_group("transfer learning (--image-size is the backbone's input size, resized on the device; "
                             "default: the weights' own, or 160 for images of at most 64 px)")
    add_config_flags(t, TransferConfig)
    t.add_argument("--resume", metavar="RUN", help="continue a killed transfer run (each stage from its last.pt)")


def run(args) -> None:
    from ..backbones.config import TransferConfig
    from ..commands.transfer import run_transfer
    from ..errors import ClasslabError

    values = given_flags(args, TransferConfig)
    if args.resume:
        shared = {k: v for k, v in (("image_size", args.image_size), ("seed", args.seed)) if v is not None}
        if values or shared:
            raise ClasslabError(f"--resume continues a run with its saved options; drop "
                                f"{', '.join('--' + k.replace('_', '-') for k in {**values, **shared})}")
        result = run_transfer(None, None, resume=args.resume)
    else:
        opts = data_options(args)
        tc = TransferConfig(**values, image_size=opts.image_size, seed=opts.seed)
        # --image-size is the backbone's input size: images are stored as they are and resized on the device
        result = run_transfer(replace(opts, image_size=None), tc, args.runs_dir)
    print(result.evaluation.text())
    for name, s in result.details["stages"].items():
        val = "-" if s["best_val_acc"] is None else f"{s['best_val_acc']:.4f}"
        print(f"{name:9} validation {val:>6}  test {s['accuracy']:.4f}  macro F1 {s['macro_f1']:.4f}"
              f"{'  (chosen)' if name == result.details['chosen_stage'] else ''}")
    print(f"report: {result.report}")


COMMANDS = {"transfer": Command(
    "Transfer learning: a pretrained backbone, a head on cached features, fine-tuning.", configure, run,
    "examples:\n  classlab transfer cifar10-images.zip --backbone mobilenet_v2 --mode both --image-size 96 --dense 128 \\\n"
    "      --max-train 10000 --max-eval 2000        # the decks' laptop setting\n"
    "  classlab transfer cifar10-images.zip --mode features --image-size 96 --dense 128 --batch-size 32 \\\n"
    "      --max-train 10000 --max-eval 2000 --schedule cosine --head-augment flip --tta flip  # frozen: 75%\n"
    "  classlab transfer fashion-mnist --data-dir ../shared/data --backbone runs/<mnist run> --mode features\n"
    "  classlab transfer photos/ --backbone resnet18 --weights resnet18-f37072fd.pth --unfreeze last:2\n"
    "  classlab transfer --resume runs/<killed transfer run>")}
